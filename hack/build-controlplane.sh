#!/usr/bin/env bash
# Builds the dev cluster's binaries from the pinned Go modules in controlplane/, through the
# Go module proxy only, and prints the directory that holds them all:
#
#   part         module                    binaries
#   etcd         controlplane/etcd         etcd
#   kube         controlplane/kube         kube-apiserver kube-controller-manager kubectl
#   kube-node    controlplane/kube         kubelet kube-scheduler kube-proxy
#   containerd   controlplane/containerd   containerd containerd-shim-runc-v2 ctr
#   kube-router  controlplane/kube-router  kube-router (only its firewall controller is used)
#   pause        controlplane/pause        pause (the pod sandbox image's one binary)
#
# Each part is cached on its own, keyed by its pinned version and the hash of its module
# (go.mod, go.sum, *.go) and of this script, so changing one pin rebuilds one part. The
# printed directory holds hard links to every part's binaries and is keyed by all of them.
# Progress goes to stderr.
#
#   KUBEBUILDER_ASSETS=/dir   take etcd, kube-apiserver, kube-controller-manager and kubectl
#                             from there (an envtest set); the node's parts are still built
#   DGM_CACHE_DIR=/dir        cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/dgm-operator)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cp_dir="$here/controlplane"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

log() { printf '[controlplane] %s\n' "$*" >&2; }

cache_root=${DGM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dgm-operator}
script_hash=$(sha256sum "$0" | cut -c1-64)

# version MODULE_DIR GO_MODULE: the version a build module pins
version() { awk -v m="$2" '$1=="require" && $2==m {print $3}' "$cp_dir/$1/go.mod"; }
# module_key MODULE_DIR: hash of the build module's inputs and of this script
module_key() {
  (cd "$cp_dir/$1" && cat go.mod $(ls go.sum *.go 2>/dev/null); echo "$script_hash") | sha256sum | cut -c1-12
}

k8s_version=$(version kube k8s.io/kubernetes)
etcd_version=$(version etcd go.etcd.io/etcd/server/v3)
containerd_version=$(version containerd github.com/containerd/containerd/v2)
kube_router_version=$(version kube-router github.com/cloudnativelabs/kube-router/v2)
for v in k8s_version etcd_version containerd_version kube_router_version; do
  [ -n "${!v}" ] || { log "cannot read the pinned version ($v) from controlplane/*/go.mod"; exit 1; }
done

minor=${k8s_version#v1.}; minor=${minor%%.*}
k8s_ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ld="$k8s_ld -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  k8s_ld="$k8s_ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# Each part: name|module dir|version|binaries|go packages|extra go build flags
parts=()
if [ -z "${KUBEBUILDER_ASSETS:-}" ]; then
  parts+=("etcd|etcd|$etcd_version|etcd|.|")
  parts+=("kube|kube|$k8s_version|kube-apiserver kube-controller-manager kubectl|k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl|")
fi
parts+=("kube-node|kube|$k8s_version|kubelet kube-scheduler kube-proxy|k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy|")
parts+=("containerd|containerd|$containerd_version|containerd containerd-shim-runc-v2 ctr|github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/ctr|CGO_ENABLED=0")
parts+=("kube-router|kube-router|$kube_router_version|kube-router|github.com/cloudnativelabs/kube-router/v2/cmd/kube-router|CGO_ENABLED=0")
parts+=("pause|pause|v0|pause|.|CGO_ENABLED=0")

ldflags_for() {
  case $1 in
    etcd) echo "-s -w" ;;
    kube|kube-node) echo "$k8s_ld" ;;
    containerd) echo "-s -w -X github.com/containerd/containerd/v2/version.Version=$containerd_version -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2" ;;
    kube-router) echo "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$kube_router_version -X github.com/cloudnativelabs/kube-router/v2/pkg/version.BuildDate=1970-01-01T00:00:00Z" ;;
    *) echo "-s -w" ;;
  esac
}
tags_for() { [ "$1" = containerd ] && echo "no_btrfs no_devmapper no_zfs" || true; }

# The assembled directory's key covers every part's key (and the envtest directory, if any).
part_dirs=()
for p in "${parts[@]}"; do
  IFS='|' read -r name mod ver _ <<<"$p"
  part_dirs+=("$cache_root/controlplane/parts/$name-$ver-$(module_key "$mod")")
done
key=$( (printf '%s\n' "${part_dirs[@]}"; echo "${KUBEBUILDER_ASSETS:-}") | sha256sum | cut -c1-12)
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  out="$cache_root/controlplane/envtest-node-$k8s_version-$key"
else
  out="$cache_root/controlplane/k8s-$k8s_version-etcd-$etcd_version-$key"
fi

if [ -f "$out/.complete" ]; then
  log "reusing $out (kubernetes $k8s_version, etcd $etcd_version, containerd $containerd_version, kube-router $kube_router_version)"
  echo "$out"; exit 0
fi

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  for b in etcd kube-apiserver kube-controller-manager kubectl; do
    [ -x "$KUBEBUILDER_ASSETS/$b" ] || { log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable '$b'"; exit 1; }
  done
  log "control plane from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS; building the node's parts"
fi

command -v go >/dev/null || { log "the Go toolchain is required (go not on PATH)"; exit 1; }
start=$(date +%s)
n=${#parts[@]}; i=0
for idx in "${!parts[@]}"; do
  IFS='|' read -r name mod ver bins pkgs env <<<"${parts[$idx]}"
  dir=${part_dirs[$idx]}
  i=$((i + 1))
  if [ -f "$dir/.complete" ]; then
    log "[$i/$n] $name $ver: cached ($dir)"
    continue
  fi
  t0=$(date +%s)
  slow=""
  [ "$name" = kube ] && slow=" (slow on a cold cache: about 10-20 min on 2 cores)"
  log "[$i/$n] $name $ver: building $bins$slow"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  (cd "$cp_dir/$mod" && go mod download) >&2
  # shellcheck disable=SC2086  # word splitting of the package list and env is intended
  (cd "$cp_dir/$mod" && env $env go build -trimpath -tags "$(tags_for "$name")" -ldflags "$(ldflags_for "$name")" \
      -o "$dir.tmp/" $pkgs) >&2
  for b in $bins; do
    [ -x "$dir.tmp/$b" ] || { log "$name: $b was not produced in $dir.tmp"; exit 1; }
  done
  rm -rf "$dir" && mv "$dir.tmp" "$dir" && touch "$dir/.complete"
  log "[$i/$n] $name $ver: built in $(( $(date +%s) - t0 ))s"
done

rm -rf "$out.tmp" && mkdir -p "$out.tmp"
for idx in "${!parts[@]}"; do
  IFS='|' read -r _ _ _ bins _ _ <<<"${parts[$idx]}"
  for b in $bins; do
    ln -f "${part_dirs[$idx]}/$b" "$out.tmp/$b" 2>/dev/null || cp -p "${part_dirs[$idx]}/$b" "$out.tmp/$b"
  done
done
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  for b in etcd kube-apiserver kube-controller-manager kubectl; do ln -s "$KUBEBUILDER_ASSETS/$b" "$out.tmp/$b"; done
fi
cat >"$out.tmp/VERSIONS" <<EOF
kubernetes $k8s_version
etcd $etcd_version
containerd $containerd_version
kube-router $kube_router_version
EOF
"$out.tmp/kube-apiserver" --version >&2
"$out.tmp/kubelet" --version >&2
"$out.tmp/containerd" --version >&2
rm -rf "$out" && mv "$out.tmp" "$out" && touch "$out/.complete"
log "done in $(( $(date +%s) - start ))s: $out"
echo "$out"
