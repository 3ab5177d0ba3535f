#!/usr/bin/env bash
# Installs, from Debian's packages, what the dev cluster's real node and the local image
# build need on this machine, and checks the kernel features they rely on. Idempotent:
# packages already installed are left alone; it prints what it installs and why.
#
#   hack/install-node-deps.sh [--check] [node|images|all]   (default: all)
#
#   node     what `dgm dev-cluster up` runs besides the binaries of `make controlplane`
#   images   what `make image` (hack/build-images.sh) uses
#   --check  install nothing: list what is missing and exit 1 if anything is
#
# Needs root (apt-get, and the node itself runs as root). Exit codes: 0 ready, 1 something
# missing (named on stderr), 2 usage.
set -euo pipefail

log() { printf '[node-deps] %s\n' "$*" >&2; }

check_only=0
what=all
for arg in "$@"; do
  case $arg in
    --check) check_only=1 ;;
    node|images|all) what=$arg ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) log "unknown argument '$arg' (use --check and one of node, images, all)"; exit 2 ;;
  esac
done

# package|command that proves it is there|why it is needed
node_pkgs=(
  "runc|runc|the OCI runtime containerd's runc shim starts every container with"
  "containernetworking-plugins|/usr/lib/cni/bridge|bridge, host-local and loopback CNI plugins: the pods' network"
  "iptables|iptables|kube-router's firewall writes NetworkPolicy rules with iptables (the nft backend)"
  "ipset|ipset|kube-router's firewall keeps the pod and policy address sets in ipsets"
  "nftables|nft|kube-proxy's nftables mode routes ClusterIP Services through the nft command"
)
image_pkgs=(
  "podman|podman|builds the Dockerfile and saves the images as archives for the node to import"
  "mmdebstrap|mmdebstrap|makes the local Debian bookworm base image where no registry is reachable"
)
case $what in
  node) want=("${node_pkgs[@]}") ;;
  images) want=("${image_pkgs[@]}") ;;
  all) want=("${node_pkgs[@]}" "${image_pkgs[@]}") ;;
esac

problems=()

# --- kernel features (nothing to install: name them and stop)
kconfig() {  # kconfig CONFIG_X: y, m or empty; "unknown" when the kernel config is not readable
  if [ -r /proc/config.gz ]; then
    zcat /proc/config.gz | awk -F= -v k="$1" '$1==k {print $2}'
  elif [ -r "/boot/config-$(uname -r)" ]; then
    awk -F= -v k="$1" '$1==k {print $2}' "/boot/config-$(uname -r)"
  else
    echo unknown
  fi
}
need_kernel() {  # need_kernel CONFIG_X "what it is for"
  local v
  v=$(kconfig "$1")
  case $v in
    y|m|unknown) ;;
    *) problems+=("kernel: $1 is not enabled ($2)") ;;
  esac
}
if [ "$what" != images ]; then
  grep -qw overlay /proc/filesystems || need_kernel CONFIG_OVERLAY_FS "overlay file system for container root file systems"
  for c in memory pids cpu; do
    if [ ! -d "/sys/fs/cgroup/$c" ] && ! grep -qw "$c" /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
      problems+=("kernel: the '$c' cgroup controller is not mounted (container $c limits)")
    fi
  done
  [ -e /proc/self/ns/net ] || problems+=("kernel: network namespaces (CONFIG_NET_NS) are missing (one per pod)")
  grep -q '^Seccomp:' /proc/self/status || problems+=("kernel: seccomp is missing (the sandbox's RuntimeDefault profile)")
  need_kernel CONFIG_VETH "veth pairs connect each pod to the bridge"
  need_kernel CONFIG_BRIDGE "the CNI bridge"
  need_kernel CONFIG_NF_TABLES "kube-proxy's nftables mode and iptables-nft"
  need_kernel CONFIG_IP_SET "kube-router's NetworkPolicy address sets"
  need_kernel CONFIG_NETFILTER_XT_SET "iptables rules that match ipsets (NetworkPolicy)"
  need_kernel CONFIG_NF_CONNTRACK "stateful NetworkPolicy and Service NAT"
  if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
    problems+=("kernel: br_netfilter is not loaded (/proc/sys/net/bridge/bridge-nf-call-iptables is missing): bridged pod traffic would bypass NetworkPolicy; run 'modprobe br_netfilter'")
  fi
fi

# --- packages
missing=()
for entry in "${want[@]}"; do
  IFS='|' read -r pkg probe why <<<"$entry"
  if [ "${probe#/}" != "$probe" ]; then [ -e "$probe" ] && continue; else command -v "$probe" >/dev/null && continue; fi
  missing+=("$entry")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$check_only" = 1 ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    for entry in "${missing[@]}"; do
      IFS='|' read -r pkg _ why <<<"$entry"
      problems+=("package $pkg is missing: $why")
    done
    if [ "$check_only" = 0 ]; then
      [ "$(id -u)" != 0 ] && problems+=("not root: cannot install packages (run this script as root)")
      command -v apt-get >/dev/null || problems+=("no apt-get: install the packages above with this system's package manager")
    fi
  else
    names=()
    for entry in "${missing[@]}"; do
      IFS='|' read -r pkg _ why <<<"$entry"
      log "installing $pkg: $why"
      names+=("$pkg")
    done
    # a fresh machine has no package lists yet; refresh them once if the first try fails
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${names[@]}" >&2; then
      log "apt-get install failed; refreshing the package lists and trying again"
      apt-get update -q >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${names[@]}" >&2
    fi
  fi
fi

if [ "$what" != images ] && [ "$(id -u)" != 0 ]; then
  problems+=("not root: the real node (containerd, kubelet, CNI, kube-proxy) needs root; without root use 'dgm dev-cluster up --node=process' (pods run as host processes, no isolation)")
fi

if [ ${#problems[@]} -gt 0 ]; then
  log "not ready:"
  for p in "${problems[@]}"; do log "  - $p"; done
  exit 1
fi
[ ${#missing[@]} -gt 0 ] && [ "$check_only" = 0 ] && log "installed: ${names[*]}"
log "ready ($what)"
