"""The dev cluster's real node: containerd + runc, a kubelet with its own identity,
kube-scheduler, bridge CNI, kube-proxy (nftables) and kube-router's firewall (NetworkPolicy),
with the locally built images imported. Every pod runs in a real container.

Configuration only; `DevCluster` (cluster.py) starts and stops the processes, and
hoststate.py records and undoes what the node changes on the host.

Layout under the state directory::

    node/containerd/{root,state,config.toml}   containerd's content, snapshots, task state
    node/runc/                                  runc's state (--root)
    node/cni/net.d/  node/cni/ipam/             CNI configuration, host-local allocations
    node/kubelet/  node/kubelet.yaml            the kubelet's root directory and config
    node/pod-logs/                              container logs (podLogsDir)
    node/kube-proxy.yaml
    <name>.kubeconfig                           one identity per component

Sockets live in /run/dgm-dev-<hash> (a unix socket path must stay under 108 bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from .binaries import BinaryError, repo_root

NODE_COMPONENTS = ("containerd", "containerd-shim-runc-v2", "ctr", "kubelet", "kube-scheduler", "kube-proxy",
                   "kube-router")
BRIDGE = "dgm0"
POD_CIDR = "10.244.0.0/24"
NODE_IP = "10.244.0.1"  # the node's address on the bridge: the pods' gateway, and where the API server listens
SERVICE_CIDR = "10.96.0.0/16"
# the pod sandbox image (hack/build-images.sh); Kubernetes spells short names docker.io/library/...
PAUSE_IMAGE = "docker.io/library/dgm-pause:dev"
IMAGES = ("dgm-operator:dev", "dgm-sample-agent:dev", "dgm-grader:dev", "dgm-pause:dev", "dgm-base:dev")
# the kubelet's pids limit per pod: the sandbox builder sets none (Kubernetes has no pod field)
POD_PIDS_LIMIT = 512
# host tools the node runs (hack/install-node-deps.sh installs them)
HOST_TOOLS = {
    "runc": "the OCI runtime of containerd's runc shim",
    "iptables": "kube-router's firewall rules",
    "ipset": "kube-router's address sets",
    "nft": "kube-proxy's nftables mode and the guard table",
    "ip": "the pods' bridge",
}
CNI_PLUGINS = ("bridge", "host-local")
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")

KUBE_ROUTER_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "dgm-dev:kube-router"}
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, nodes, endpoints]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "dgm-dev:kube-router"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "dgm-dev:kube-router"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:kube-router"}
"""


class NodeSetupError(RuntimeError):
    """Something the real node needs is missing; the message says what and how to get it."""

    def __init__(self, component: str | None, message: str):
        super().__init__(message)
        self.component = component


def socket_dir(state_dir: Path) -> Path:
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:10]
    return Path("/run") / f"dgm-dev-{digest}"


def cni_bin_dir() -> str | None:
    for d in CNI_BIN_DIRS:
        if all(os.access(os.path.join(d, p), os.X_OK) for p in CNI_PLUGINS):
            return d
    return None


def missing_host_deps() -> list[str]:
    """What this host lacks for the real node, each with the reason."""
    out = []
    if os.geteuid() != 0:
        out.append("root: containerd, the kubelet, the CNI bridge and the firewall need root")
    for tool, why in HOST_TOOLS.items():
        if shutil.which(tool) is None:
            out.append(f"{tool}: {why}")
    if cni_bin_dir() is None:
        out.append(f"CNI plugins {', '.join(CNI_PLUGINS)} in {' or '.join(CNI_BIN_DIRS)}: the pods' network "
                   f"(Debian package containernetworking-plugins)")
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        out.append("br_netfilter (kernel module): bridged pod traffic must pass the firewall")
    return out


def ensure_host_deps(log) -> None:
    """Install what is missing through hack/install-node-deps.sh (as root, from a checkout),
    or raise naming exactly what to install and why."""
    missing = missing_host_deps()
    if not missing:
        return
    root = repo_root()
    script = root / "hack" / "install-node-deps.sh" if root else None
    if os.geteuid() == 0 and script and script.is_file():
        log(f"dev cluster: installing what the real node needs ({'; '.join(m.split(':')[0] for m in missing)})")
        proc = subprocess.run(["bash", str(script), "node"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
        if proc.returncode == 0 and not missing_host_deps():
            return
        raise NodeSetupError(None, f"{script} failed:\n{proc.stdout[-3000:]}")
    hint = ("run `sudo bash hack/install-node-deps.sh node` in the dgm-operator checkout"
            if script else "install runc, containernetworking-plugins, iptables, ipset, nftables and iproute2")
    fallback = " Without root, `dgm dev-cluster up --node=process` runs pods as host processes (no isolation)."
    raise NodeSetupError(None, "the real node cannot start; missing:\n  - " + "\n  - ".join(missing)
                         + f"\n{hint}.{fallback}")


def find_images(env: dict[str, str] | None = None, log=None) -> Path:
    """The docker-archive of the locally built images: $DGM_IMAGES_ARCHIVE, the archive named
    by $DGM_IMAGES_DIR/current, or hack/build-images.sh run from the checkout."""
    env = os.environ if env is None else env
    if env.get("DGM_IMAGES_ARCHIVE"):
        path = Path(env["DGM_IMAGES_ARCHIVE"])
        if not path.is_file():
            raise NodeSetupError("images", f"DGM_IMAGES_ARCHIVE={path} is not a file")
        return path
    directory = env.get("DGM_IMAGES_DIR")
    if not directory:
        root = repo_root()
        if root is None:
            raise NodeSetupError("images", "no image archive: set DGM_IMAGES_DIR (the output of `make image`) "
                                           "or DGM_IMAGES_ARCHIVE")
        if log:
            log("dev cluster: building or reusing the images (hack/build-images.sh)")
        proc = subprocess.run(["bash", str(root / "hack" / "build-images.sh")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise NodeSetupError("images", f"hack/build-images.sh failed (exit {proc.returncode}):\n"
                                           f"{proc.stderr[-3000:]}")
        directory = proc.stdout.strip().splitlines()[-1]
    current = Path(directory) / "current"
    try:
        path = Path(directory) / current.read_text().strip()
    except OSError as e:
        raise NodeSetupError("images", f"{current}: {e} (run `make image`)") from e
    if not path.is_file():
        raise NodeSetupError("images", f"{path} is missing (run `make image`)")
    return path


@dataclass
class NodeLayout:
    state_dir: Path
    node_name: str
    bin_dir: Path

    @property
    def dir(self) -> Path:
        return self.state_dir / "node"

    @property
    def sockets(self) -> Path:
        return socket_dir(self.state_dir)

    @property
    def containerd_socket(self) -> Path:
        return self.sockets / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.dir / "containerd" / "config.toml"

    @property
    def kubelet_root(self) -> Path:
        return self.dir / "kubelet"

    def kubeconfig(self, who: str) -> Path:
        return self.state_dir / f"{who}.kubeconfig"


def write_configs(lay: NodeLayout, pki_dir: Path, ports: dict[str, int]) -> None:
    """containerd, CNI, kubelet and kube-proxy configuration files."""
    d = lay.dir
    for sub in ("containerd/root", "containerd/state", "containerd/opt", "runc", "cni/net.d", "cni/ipam",
                "kubelet", "pod-logs"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    lay.sockets.mkdir(mode=0o700, parents=True, exist_ok=True)
    (lay.sockets / "state-dir").write_text(str(lay.state_dir))
    cni_bin = cni_bin_dir() or CNI_BIN_DIRS[0]
    runc = shutil.which("runc") or "runc"
    lay.containerd_config.write_text(f"""\
# containerd of the dgm-operator dev cluster (written by dgm dev-cluster up)
version = 3
root = "{d / 'containerd/root'}"
state = "{d / 'containerd/state'}"

[grpc]
  address = "{lay.containerd_socket}"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d / 'containerd/opt'}"
  [plugins."io.containerd.nri.v1.nri"]
    disable = true
  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = "{PAUSE_IMAGE}"
  [plugins."io.containerd.cri.v1.runtime"]
    # root here lacks CAP_SYS_RESOURCE: without this the kubelet's OOM score adjustment makes
    # runc fail ("can't get final child's PID from pipe")
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_unprivileged_ports = false
    enable_unprivileged_icmp = false
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          BinaryName = "{runc}"
          Root = "{d / 'runc'}"
          SystemdCgroup = false
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = ["{cni_bin}"]
      conf_dir = "{d / 'cni/net.d'}"
      max_conf_num = 1
      use_internal_loopback = true
  [plugins."io.containerd.grpc.v1.cri"]
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
""")
    conflist = {
        "cniVersion": "1.0.0", "name": "dgm-dev",
        "plugins": [{
            "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
            "ipam": {"type": "host-local", "dataDir": str(d / "cni/ipam"),
                     "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                     "routes": [{"dst": "0.0.0.0/0"}]},
        }],
    }
    (d / "cni/net.d/10-dgm-dev.conflist").write_text(json.dumps(conflist, indent=2))
    kubelet = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # this host has cgroup v1: without it the kubelet 1.36 exits
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{lay.containerd_socket}",
        "address": NODE_IP, "port": ports["kubelet"],
        "healthzBindAddress": "127.0.0.1", "healthzPort": ports["kubeletHealthz"],
        "readOnlyPort": 0,
        "tlsCertFile": str(pki_dir / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki_dir / "kubelet-serving.key"),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki_dir / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(d / "pod-logs"),
        "failSwapOn": False,
        "podPidsLimit": POD_PIDS_LIMIT,
        "resolvConf": "/etc/resolv.conf",
        "clusterDomain": "cluster.local",
        "serializeImagePulls": False,
        # the images cannot be pulled again: never garbage-collect them
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        # a busy developer machine is no reason to evict
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "syncFrequency": "10s", "fileCheckFrequency": "20s",
        "nodeStatusUpdateFrequency": "5s",
        "shutdownGracePeriod": "0s",
    }
    (d / "kubelet.yaml").write_text(yaml.safe_dump(kubelet, sort_keys=False))
    proxy = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(lay.kubeconfig("kube-proxy"))},
        "hostnameOverride": lay.node_name,
        "clusterCIDR": POD_CIDR,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{ports['kubeProxyHealthz']}",
        "metricsBindAddress": f"127.0.0.1:{ports['kubeProxyMetrics']}",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # leave the host's conntrack sysctls alone
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s",
                      "udpTimeout": "0s", "udpStreamTimeout": "0s"},
    }
    (d / "kube-proxy.yaml").write_text(yaml.safe_dump(proxy, sort_keys=False))


# containerd's root (image content and unpacked snapshots, ~1 GB with the three images)
# lives on a tmpfs: this disk needs 20+ s to delete the 16,000 files of one unpacked image,
# an unmount frees them at once, and the import is faster too.
CONTAINERD_ROOT_TMPFS_SIZE = "6g"


def mount_containerd_root(lay: NodeLayout) -> None:
    root = lay.dir / "containerd/root"
    root.mkdir(parents=True, exist_ok=True)
    if not any(line.split()[4] == str(root) for line in Path("/proc/self/mountinfo").read_text().splitlines()):
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={CONTAINERD_ROOT_TMPFS_SIZE},mode=0711",
                               "dgm-dev-containerd", str(root)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise NodeSetupError("containerd", f"cannot mount a tmpfs on {root}: {proc.stderr.strip()}")


def commands(lay: NodeLayout, ports: dict[str, int]) -> dict[str, list[str]]:
    b = lay.bin_dir
    d = lay.dir
    return {
        "containerd": [str(b / "containerd"), "--config", str(lay.containerd_config), "--log-level", "warn"],
        "kubelet": [str(b / "kubelet"), "--config", str(d / "kubelet.yaml"),
                    "--kubeconfig", str(lay.kubeconfig("kubelet")), "--root-dir", str(lay.kubelet_root),
                    "--node-ip", NODE_IP, "--hostname-override", lay.node_name, "--v", "1"],
        "kube-scheduler": [str(b / "kube-scheduler"), "--kubeconfig", str(lay.kubeconfig("kube-scheduler")),
                           "--authentication-kubeconfig", str(lay.kubeconfig("kube-scheduler")),
                           "--authorization-kubeconfig", str(lay.kubeconfig("kube-scheduler")),
                           "--leader-elect=false", "--bind-address", "127.0.0.1",
                           "--secure-port", str(ports["scheduler"]),
                           "--cert-dir", str(d / "scheduler-certs"), "--v", "1"],
        "kube-proxy": [str(b / "kube-proxy"), "--config", str(d / "kube-proxy.yaml"), "--v", "1"],
        "kube-router": [str(b / "kube-router"), "--kubeconfig", str(lay.kubeconfig("kube-router")),
                        "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
                        "--run-loadbalancer=false", "--enable-cni=false", "--enable-pod-egress=false",
                        "--enable-ipv4=true", "--enable-ipv6=false",
                        "--hostname-override", lay.node_name,
                        "--service-cluster-ip-range", SERVICE_CIDR,
                        "--health-addr", "127.0.0.1", "--health-port", str(ports["kubeRouterHealth"]),
                        "--metrics-port", "0", "--v", "1"],
    }


def check_binaries(bin_dir: Path) -> None:
    for c in NODE_COMPONENTS:
        path = bin_dir / c
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BinaryError(c, f"{c}: not found at {path}; `make controlplane` builds the node's components "
                                 f"(hack/build-controlplane.sh)")


def import_images(lay: NodeLayout, archive: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(lay.bin_dir / "ctr"), "--address", str(lay.containerd_socket), "-n", "k8s.io",
                           "images", "import", "--no-unpack", str(archive)],
                          capture_output=True, text=True, timeout=timeout)


def remove_all_containers(lay: NodeLayout, timeout: float = 30) -> None:
    """Kill and delete every task and container in containerd's k8s.io namespace (the
    kubelet is stopped by then), so the shims exit and unmount the root file systems."""
    ctr = [str(lay.bin_dir / "ctr"), "--address", str(lay.containerd_socket), "-n", "k8s.io"]

    def run(*args, t=timeout):
        try:
            return subprocess.run([*ctr, *args], capture_output=True, text=True, timeout=t)
        except (subprocess.TimeoutExpired, OSError):
            return None

    tasks = run("tasks", "ls", "-q")
    ids = tasks.stdout.split() if tasks and tasks.returncode == 0 else []
    for i in ids:
        run("tasks", "kill", "-s", "SIGKILL", i, t=10)
    for i in ids:
        run("tasks", "delete", "-f", i, t=15)
    containers = run("containers", "ls", "-q")
    for i in (containers.stdout.split() if containers and containers.returncode == 0 else []):
        run("containers", "delete", i, t=15)
