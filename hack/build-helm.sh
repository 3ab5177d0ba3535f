#!/usr/bin/env bash
# Builds helm from the pinned Go module in controlplane/helm (helm.sh/helm/v3), through
# the Go module proxy only. Output goes to a cache directory outside the repo, keyed by
# the pinned version and the hash of the build module; a finished build is reused.
# Prints the path of the helm binary on stdout; progress goes to stderr.
#
#   DGM_HELM=/path/to/helm    use that binary and build nothing
#   DGM_CACHE_DIR=/dir        cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/dgm-operator)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mod_dir="$here/controlplane/helm"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

log() { printf '[helm] %s\n' "$*" >&2; }

if [ -n "${DGM_HELM:-}" ]; then
  [ -x "$DGM_HELM" ] || { log "DGM_HELM=$DGM_HELM is not an executable"; exit 1; }
  log "using existing helm from DGM_HELM=$DGM_HELM"
  echo "$DGM_HELM"; exit 0
fi

helm_version=$(awk '$1=="require" && $2=="helm.sh/helm/v3" {print $3}' "$mod_dir/go.mod")
[ -n "$helm_version" ] || { log "cannot read the pinned helm version from controlplane/helm/go.mod"; exit 1; }
key=$(cat "$mod_dir/go.mod" "$mod_dir/go.sum" "$0" | sha256sum | cut -c1-12)
cache_root=${DGM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dgm-operator}
out="$cache_root/helm/$helm_version-$key"

if [ -f "$out/.complete" ] && [ -x "$out/helm" ]; then
  log "reusing $out/helm (helm $helm_version)"
  echo "$out/helm"; exit 0
fi

command -v go >/dev/null || { log "the Go toolchain is required (go not on PATH)"; exit 1; }
rm -rf "$out.tmp" && mkdir -p "$out.tmp"
start=$(date +%s)

log "[1/2] downloading modules (helm $helm_version)"
(cd "$mod_dir" && go mod download) >&2
# Same version stamps as helm's own Makefile: `helm version` reports the pin, and the
# default capabilities (helm template, helm lint) follow the client-go helm was built with.
client_go=$(cd "$mod_dir" && go list -m -f '{{.Version}}' k8s.io/client-go)
k8s_minor=${client_go#v0.}; k8s_minor=${k8s_minor%%.*}
ld="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
ld="$ld -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ld="$ld -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done
log "[2/2] building helm $helm_version (about 2-4 min on 2 cores with a cold cache)"
(cd "$mod_dir" && go build -trimpath -ldflags "$ld" -o "$out.tmp/helm" helm.sh/helm/v3/cmd/helm) >&2
"$out.tmp/helm" version --short >&2
rm -rf "$out" && mv "$out.tmp" "$out" && touch "$out/.complete"
log "built in $(( $(date +%s) - start ))s into $out"
echo "$out/helm"
