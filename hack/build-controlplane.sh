#!/usr/bin/env bash
# Builds the dev cluster's control plane (etcd, kube-apiserver, kube-controller-manager,
# kubectl) from the pinned Go modules in controlplane/, through the Go module proxy only.
# Output goes to a cache directory outside the repo, keyed by the pinned versions and the
# hash of the build modules; a finished build is reused. Prints the directory on stdout.
#
#   KUBEBUILDER_ASSETS=/dir   use existing binaries there and build nothing
#   DGM_CACHE_DIR=/dir        cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/dgm-operator)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cp_dir="$here/controlplane"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

log() { printf '[controlplane] %s\n' "$*" >&2; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  for b in etcd kube-apiserver kube-controller-manager kubectl; do
    [ -x "$KUBEBUILDER_ASSETS/$b" ] || { log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable '$b'"; exit 1; }
  done
  log "using existing binaries from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "$KUBEBUILDER_ASSETS"; exit 0
fi

k8s_version=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$cp_dir/kube/go.mod")
etcd_version=$(awk '$1=="require" && $2=="go.etcd.io/etcd/server/v3" {print $3}' "$cp_dir/etcd/go.mod")
[ -n "$k8s_version" ] && [ -n "$etcd_version" ] || { log "cannot read pinned versions from controlplane/*/go.mod"; exit 1; }
key=$(cat "$cp_dir"/kube/go.mod "$cp_dir"/kube/go.sum "$cp_dir"/etcd/go.mod "$cp_dir"/etcd/go.sum "$0" | sha256sum | cut -c1-12)
cache_root=${DGM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dgm-operator}
out="$cache_root/controlplane/k8s-$k8s_version-etcd-$etcd_version-$key"

if [ -f "$out/.complete" ]; then
  log "reusing $out (kubernetes $k8s_version, etcd $etcd_version)"
  echo "$out"; exit 0
fi

command -v go >/dev/null || { log "the Go toolchain is required (go not on PATH)"; exit 1; }
mkdir -p "$out.tmp"
start=$(date +%s)
minor=${k8s_version#v1.}; minor=${minor%%.*}
ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld="$ld -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

log "[1/3] downloading modules (kubernetes $k8s_version, etcd $etcd_version)"
(cd "$cp_dir/kube" && go mod download) >&2
(cd "$cp_dir/etcd" && go mod download) >&2
log "[2/3] building etcd $etcd_version"
(cd "$cp_dir/etcd" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" .) >&2
log "[3/3] building kube-apiserver, kube-controller-manager, kubectl $k8s_version (slow on a cold cache: about 10-20 min on 2 cores)"
(cd "$cp_dir/kube" && go build -trimpath -ldflags "$ld" -o "$out.tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl) >&2
"$out.tmp/kube-apiserver" --version >&2
"$out.tmp/etcd" --version | head -1 >&2
rm -rf "$out" && mv "$out.tmp" "$out" && touch "$out/.complete"
log "built in $(( $(date +%s) - start ))s into $out"
echo "$out"
