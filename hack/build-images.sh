#!/usr/bin/env bash
# Builds the dev cluster's images locally, without a registry, and saves them as one
# docker-archive that the node imports with `ctr -n k8s.io images import`:
#
#   dgm-operator:dev      the operator (Dockerfile target `operator`, entrypoint `dgm run`), also
#                         tagged with the chart's appVersion, the chart's default tag
#   dgm-sample-agent:dev  the sample agent, an A2A server (target `sample-agent`), also tagged
#                         with the appVersion: an image candidate's tag in the tests
#   dgm-grader:dev        `dgm grade` with the sample agent's task suite (target `grader`)
#   dgm-pause:dev         the pod sandbox image: one static binary (controlplane/pause)
#   dgm-base:dev          the base itself (user root; its layer is shared, so it costs nothing):
#                         what the tests use for an image whose user is root
#
# The names are stored as docker.io/library/NAME:dev, which is how Kubernetes spells the short
# names, so pods use `image: dgm-operator:dev` with imagePullPolicy Never or IfNotPresent.
#
# Steps, each cached under $DGM_CACHE_DIR/images (default ~/.cache/dgm-operator/images):
#   1. a Debian bookworm base (mmdebstrap: python3, python3-venv, ca-certificates), keyed by
#      its package list, mirrors and this script; imported into podman as localhost/dgm-base;
#   2. podman build of the Dockerfile with BASE_IMAGE set to that base; the host's CA bundle
#      is a build secret for the pip step only;
#   3. podman save of the three images into dgm-images-<key>.tar, keyed by the base, the
#      Dockerfile, image-constraints.txt, the package sources and the pause binary.
# Prints the directory holding the archive (its name is in the file `current` there).
#
#   BASE_IMAGE=python:3.11-slim   use that base instead of building one (needs a registry)
#   DGM_DEBIAN_MIRROR=URL         Debian mirror for the base (default http://deb.debian.org/debian)
#   DGM_CACHE_DIR=/dir            cache root
#
# podman runs with a containers.conf and storage.conf of its own under the cache directory
# (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF): explicit nofile/nproc ulimits (raising rlimits is
# not permitted here), cgroupfs, the host network for build steps (no CNI bridge left behind).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[images] %s\n' "$*" >&2; }

cache_root=${DGM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dgm-operator}
out="$cache_root/images"
mkdir -p "$out"

for tool in podman; do
  command -v "$tool" >/dev/null || { log "$tool is missing: run 'sudo bash hack/install-node-deps.sh images'"; exit 1; }
done

# --- podman configuration (never /etc)
# Limits the containers may have: root here lacks CAP_SYS_RESOURCE, so they must not exceed
# our own hard limits, and conmon caps nproc at kernel.pid_max.
nofile="$(ulimit -Hn):$(ulimit -Hn)"
nproc=$(ulimit -Hu); pid_max=$(cat /proc/sys/kernel/pid_max)
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; } && nproc=$pid_max
nproc="$nproc:$nproc"
pconf="$out/podman"
mkdir -p "$pconf"
cat >"$pconf/containers.conf.tmp" <<EOF
# written by hack/build-images.sh
[containers]
default_ulimits = ["nofile=$nofile", "nproc=$nproc"]
netns = "host"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
EOF
mv "$pconf/containers.conf.tmp" "$pconf/containers.conf"
cat >"$pconf/storage.conf.tmp" <<EOF
# written by hack/build-images.sh
[storage]
driver = "overlay"
graphroot = "$pconf/storage"
runroot = "$pconf/run"
EOF
mv "$pconf/storage.conf.tmp" "$pconf/storage.conf"
export CONTAINERS_CONF="$pconf/containers.conf" CONTAINERS_STORAGE_CONF="$pconf/storage.conf"

hash_files() { (cd "$here" && find "$@" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -path '*.egg-info/*' -print0 \
  | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12; }
script_hash=$(sha256sum "$0" | cut -c1-12)
start=$(date +%s)
# podman (cgroupfs) leaves an empty libpod_parent cgroup behind; remove it if it was not there
had_libpod_cgroup=0
[ -d /sys/fs/cgroup/memory/libpod_parent ] || [ -d /sys/fs/cgroup/libpod_parent ] && had_libpod_cgroup=1
cleanup_cgroups() {
  [ "$had_libpod_cgroup" = 1 ] && return 0
  find /sys/fs/cgroup -depth -type d -path '*/libpod_parent*' -exec rmdir {} \; 2>/dev/null || true
}
trap cleanup_cgroups EXIT

# --- 1. base image
if [ -n "${BASE_IMAGE:-}" ]; then
  base=$BASE_IMAGE
  log "[1/4] base: $base (BASE_IMAGE)"
else
  command -v mmdebstrap >/dev/null || { log "mmdebstrap is missing: run 'sudo bash hack/install-node-deps.sh images', or set BASE_IMAGE to a Python 3.11 image"; exit 1; }
  mirror=${DGM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
  security=${DGM_DEBIAN_SECURITY_MIRROR:-${mirror%/debian}/debian-security}
  pkgs="python3,python3-venv,ca-certificates"
  base_recipe="mmdebstrap-v1 variant=apt excludes=man,doc,locale"  # change it when the recipe below changes
  base_key=$(printf '%s\n' "$mirror" "$security" "$pkgs" "$base_recipe" | sha256sum | cut -c1-12)
  base_tar="$out/debian-bookworm-$base_key.tar"
  base="localhost/dgm-base:bookworm-$base_key"
  if [ ! -f "$base_tar" ]; then
    log "[1/4] base: mmdebstrap bookworm ($pkgs), about a minute"
    t0=$(date +%s)
    mmdebstrap --variant=apt --format=tar --include="$pkgs" \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
      bookworm "$base_tar.tmp" \
      "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main" >&2
    mv "$base_tar.tmp" "$base_tar"
    log "[1/4] base: built in $(( $(date +%s) - t0 ))s ($(du -h "$base_tar" | cut -f1))"
  else
    log "[1/4] base: cached ($base_tar)"
  fi
  if ! podman image exists "$base"; then
    podman import --quiet "$base_tar" "$base" >/dev/null
    log "[1/4] base: imported into podman as $base"
  fi
fi

# --- the pause binary (controlplane/pause: no dependencies, seconds to build)
pause_key=$(cd "$here/controlplane/pause" && cat go.mod *.go | sha256sum | cut -c1-12)
pause_bin="$out/pause-$pause_key"
if [ ! -x "$pause_bin" ]; then
  command -v go >/dev/null || { log "the Go toolchain is required to build the pause binary"; exit 1; }
  (cd "$here/controlplane/pause" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$pause_bin.tmp" .) >&2
  mv "$pause_bin.tmp" "$pause_bin"
fi

# --- the archive's key: everything that goes into the images
src_key=$(hash_files Dockerfile .dockerignore image-constraints.txt pyproject.toml README.md operator devtools \
  charts/dgm-operator/Chart.yaml)
key=$(printf '%s\n' "$base" "$src_key" "$pause_key" "$script_hash" | sha256sum | cut -c1-12)
archive="$out/dgm-images-$key.tar"
if [ -f "$archive" ]; then
  log "reusing $archive"
  echo "$(basename "$archive")" >"$out/current"
  echo "$out"; exit 0
fi

# --- 2. the Dockerfile's targets
# RUN steps get both limits explicitly (a --ulimit flag replaces all of containers.conf's)
ulimits=(--ulimit "nofile=$nofile" --ulimit "nproc=$nproc")
secret=()
for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
  if [ -s "$ca" ]; then secret=(--secret "id=ca_bundle,src=$ca"); break; fi
done
build() {  # build TARGET NAME
  local t0; t0=$(date +%s)
  podman build --quiet --network=host --layers "${ulimits[@]}" --build-arg "BASE_IMAGE=$base" "${secret[@]}" \
    --target "$1" -t "docker.io/library/$2:dev" -f "$here/Dockerfile" "$here" >&2
  log "built $2:dev (target $1) in $(( $(date +%s) - t0 ))s"
}
log "[2/4] podman build: operator"
build operator dgm-operator
log "[3/4] podman build: sample agent, grader"
build sample-agent dgm-sample-agent
build grader dgm-grader

# --- the pause image: the static binary alone
pctx="$out/pause-context"
rm -rf "$pctx" && mkdir -p "$pctx"
cp "$pause_bin" "$pctx/pause"
printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$pctx/Containerfile"
podman build --quiet --network=host "${ulimits[@]}" -t docker.io/library/dgm-pause:dev -f "$pctx/Containerfile" "$pctx" >&2
rm -rf "$pctx"

# --- 4. one archive for the node (layers shared by the two Python images are stored once)
log "[4/4] saving the images to $archive"
rm -f "$archive.tmp"
app_version=$(awk -F'"' '/^appVersion:/ {print $2}' "$here/charts/dgm-operator/Chart.yaml")
podman tag docker.io/library/dgm-operator:dev "docker.io/library/dgm-operator:${app_version:-dev}"
# the sample agent under a second name too: an image candidate of the quickstart (a change of
# tag, the same files) is evaluated and applied with it (tests/integration/test_candidate_inputs.py)
podman tag docker.io/library/dgm-sample-agent:dev "docker.io/library/dgm-sample-agent:${app_version:-dev}"
podman tag "$base" docker.io/library/dgm-base:dev
podman save --quiet --multi-image-archive --format docker-archive -o "$archive.tmp" \
  docker.io/library/dgm-operator:dev "docker.io/library/dgm-operator:${app_version:-dev}" \
  docker.io/library/dgm-sample-agent:dev "docker.io/library/dgm-sample-agent:${app_version:-dev}" \
  docker.io/library/dgm-grader:dev \
  docker.io/library/dgm-pause:dev docker.io/library/dgm-base:dev
mv "$archive.tmp" "$archive"
echo "$(basename "$archive")" >"$out/current"
# older archives of this cache are superseded
find "$out" -maxdepth 1 -name 'dgm-images-*.tar' ! -name "$(basename "$archive")" -delete
podman image prune -f >/dev/null 2>&1 || true
log "done in $(( $(date +%s) - start ))s: $archive ($(du -h "$archive" | cut -f1))"
echo "$out"
