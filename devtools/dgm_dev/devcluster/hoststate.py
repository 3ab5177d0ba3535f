"""What the real node changes on the host outside its state directory, how `down` undoes
it, and `leftovers()`: the check that nothing is left (used by `down` itself and by tests).

The real node (realnode.py) needs root and touches global state that no configuration moves
into the state directory:

- a Linux bridge for the pods (and their veths), the node's address on it;
- sysctls: net.ipv4.ip_forward (pods are routed), and the kernel tunables the kubelet sets
  at start (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops, ...);
- nftables: kube-proxy's tables, the guard table of this module (pods never reach beyond
  this machine), and the iptables-nft rules and ipsets of kube-router's firewall;
- cgroups: the kubelet's ``kubepods`` hierarchy in every controller;
- paths the kubelet, containerd and the CNI plugins hard-code: /var/lib/kubelet/device-plugins,
  /var/log/containers, /var/lib/cni, /run/containerd/s (shim sockets), /var/run/netns;
- mounts (overlay root file systems, tmpfs volumes, netns bind mounts) under the state and
  socket directories.

`snapshot()` records the host before `up`; `cleanup()` removes what the node made (never what
existed before); `leftovers()` compares the host with a snapshot and lists the differences.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from . import procs

# sysctls the node changes (and restores)
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    # set by the kubelet at start (container_manager_linux.go setupKernelTunables)
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
# paths hard-coded by the kubelet, containerd's shims and the CNI plugins
HOST_PATHS = (
    "/var/lib/kubelet",
    "/var/lib/kubelet/device-plugins",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/run/containerd",
    "/var/run/netns",
    "/opt/containerd",
)
# nft tables the node's components create (family, name)
NODE_NFT_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"), ("ip", "dgm-dev-guard"))
# kube-router's firewall: its ipsets (pkg/controllers/netpol)
KUBE_ROUTER_IPSET = re.compile(r"^(inet6:)?(KUBE-SRC-|KUBE-DST-|kube-router-)")
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"


def run(*cmd: str, input: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(cmd), input=input, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as e:
        return subprocess.CompletedProcess(list(cmd), 127, "", str(e))
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(list(cmd), 124, "", f"timed out after {timeout}s: {e}")


# ----- sysctls
def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctl(name: str) -> str | None:
    try:
        return _sysctl_path(name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    _sysctl_path(name).write_text(f"{value}\n")


# ----- network
def interfaces() -> dict[str, str | None]:
    """Network interfaces of the host netns -> the bridge they are attached to (or None)."""
    out = {}
    for dev in Path("/sys/class/net").iterdir():
        master = dev / "master"
        out[dev.name] = master.resolve().name if master.exists() else None
    return out


def create_bridge(name: str, address_cidr: str) -> None:
    """The pods' bridge with the node's address, created before the API server binds to it
    (the CNI bridge plugin then reuses it)."""
    if name not in interfaces():
        _check(run("ip", "link", "add", name, "type", "bridge"), f"create the bridge {name}")
    addrs = run("ip", "-o", "-4", "addr", "show", "dev", name).stdout
    if address_cidr.split("/")[0] + "/" not in addrs:
        _check(run("ip", "addr", "add", address_cidr, "dev", name), f"address {address_cidr} on {name}")
    _check(run("ip", "link", "set", name, "up"), f"bring {name} up")


def delete_bridge(name: str) -> None:
    for dev, master in interfaces().items():
        if master == name:
            run("ip", "link", "delete", dev)
    if name in interfaces():
        run("ip", "link", "delete", name, "type", "bridge")


def install_guard(bridge: str, service_cidr: str) -> None:
    """An nft table of our own: pod traffic never leaves this machine (the dev cluster's pods
    have no business outside it, and a sandbox that escapes its NetworkPolicy still stays
    local), and a packet still addressed to a Service IP after kube-proxy's DNAT (no
    endpoints, or kube-proxy not synced yet) is dropped instead of following the default route."""
    rules = f"""
table ip dgm-dev-guard {{
  chain forward {{
    type filter hook forward priority 10; policy accept;
    iifname "{bridge}" oifname != "{bridge}" counter drop comment "pods stay on this machine"
  }}
  chain postrouting {{
    type filter hook postrouting priority 110; policy accept;
    ip daddr {service_cidr} counter drop comment "a Service IP that was not translated"
  }}
}}
"""
    run("nft", "delete", "table", "ip", "dgm-dev-guard")
    _check(run("nft", "-f", "-", input=rules), "install the nft guard table")


def nft_tables() -> set[tuple[str, str]]:
    out = run("nft", "list", "tables").stdout
    return {tuple(line.split()[1:3]) for line in out.splitlines() if line.startswith("table ")}  # type: ignore[misc]


IPTABLES = (("iptables", "filter"), ("iptables", "nat"), ("iptables", "mangle"),
            ("ip6tables", "filter"), ("ip6tables", "nat"), ("ip6tables", "mangle"))


def iptables_rules(cmd: str = "iptables", table: str = "filter") -> list[str]:
    """`iptables -S` of one table (iptables-nft here), or [] without iptables."""
    proc = run(cmd, "-w", "5", "-t", table, "-S")
    return proc.stdout.splitlines() if proc.returncode == 0 else []


def kube_chains() -> list[str]:
    """Every KUBE-* chain, as "iptables/filter/KUBE-FIREWALL" (the kubelet's canaries and
    KUBE-FIREWALL, kube-router's firewall)."""
    out = []
    for cmd, table in IPTABLES:
        for line in iptables_rules(cmd, table):
            if line.startswith("-N KUBE-"):
                out.append(f"{cmd}/{table}/{line.split()[1]}")
    return out


def remove_kube_iptables(before: set[str]) -> None:
    """Remove the KUBE-* chains that were not there before, and the jumps to them: the
    kubelet's (KUBE-FIREWALL, canaries, KUBE-IPTABLES-HINT) and kube-router's (its
    `--cleanup-config` neither removes them nor survives a host without IPVS)."""
    for cmd, table in IPTABLES:
        rules = iptables_rules(cmd, table)
        chains = [line.split()[1] for line in rules if line.startswith("-N KUBE-")
                  and f"{cmd}/{table}/{line.split()[1]}" not in before]
        if not chains:
            continue
        for line in rules:
            parts = shlex.split(line)
            if parts[:1] == ["-A"] and "-j" in parts and parts[parts.index("-j") + 1] in chains:
                run(cmd, "-w", "5", "-t", table, "-D", *parts[1:])
        for chain in chains:
            run(cmd, "-w", "5", "-t", table, "-F", chain)
        for chain in chains:
            run(cmd, "-w", "5", "-t", table, "-X", chain)


def ipsets() -> set[str]:
    proc = run("ipset", "list", "-n")
    return set(proc.stdout.split()) if proc.returncode == 0 else set()


def remove_kube_router_ipsets() -> None:
    for name in sorted(ipsets()):
        if KUBE_ROUTER_IPSET.match(name):
            run("ipset", "destroy", name)


def _table_has_rules(family: str, name: str) -> bool:
    for line in run("nft", "list", "table", family, name).stdout.splitlines():
        text = line.strip()
        if text and not text.startswith(("table ", "chain ", "}", "type ")):
            return True
    return False


def empty_iptables_tables(before: set[tuple[str, str]]) -> None:
    """iptables-nft creates `ip filter` (and friends) on first use; drop those we caused once
    they hold no rule."""
    for family, name in nft_tables() - before:
        if name in ("filter", "nat", "mangle", "raw", "security") and not _table_has_rules(family, name):
            run("nft", "delete", "table", family, name)


# ----- mounts, processes, cgroups
def _unescape(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def mounts_under(*roots: str | os.PathLike) -> list[str]:
    prefixes = [str(Path(r)) for r in roots if r]
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        point = _unescape(line.split()[4])
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            out.append(point)
    return out


def unmount_under(*roots: str | os.PathLike) -> None:
    for _ in range(5):
        points = mounts_under(*roots)
        if not points:
            return
        for point in sorted(set(points), key=lambda p: p.count("/"), reverse=True):
            if run("umount", point).returncode != 0:
                run("umount", "-l", point)


def cgroup_dirs(name: str = KUBEPODS) -> list[Path]:
    """The ``name`` cgroup in every mounted hierarchy (v1 controllers and the v2 tree)."""
    out = []
    if not CGROUP_ROOT.is_dir():
        return out
    candidates = [CGROUP_ROOT / name] + [d / name for d in CGROUP_ROOT.iterdir() if d.is_dir()]
    for c in candidates:
        if c.is_dir():
            out.append(c)
    return out


def cgroup_pids(name: str = KUBEPODS) -> set[int]:
    pids: set[int] = set()
    for top in cgroup_dirs(name):
        for procs_file in top.rglob("cgroup.procs"):
            try:
                pids.update(int(p) for p in procs_file.read_text().split())
            except OSError:
                pass
    return pids


def kill_cgroup(name: str = KUBEPODS, timeout: float = 10.0) -> None:
    """SIGKILL every process in the cgroup tree. The freezer (v1) stops a fork bomb from
    outrunning the kill; the tree is thawed once everything is marked for death."""
    freezer = CGROUP_ROOT / "freezer" / name / "freezer.state"
    frozen = False
    if freezer.exists():
        try:
            freezer.write_text("FROZEN")
            frozen = True
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    while True:
        pids = cgroup_pids(name)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if frozen:
            try:
                freezer.write_text("THAWED")
            except OSError:
                pass
            frozen = False
        if not pids or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def remove_cgroups(name: str = KUBEPODS) -> None:
    for top in cgroup_dirs(name):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass
        try:
            top.rmdir()
        except OSError:
            pass


# ----- snapshot, cleanup, leftovers
def snapshot() -> dict:
    """The host as the node will find it (recorded in cluster.json before `up` changes it)."""
    return {
        "sysctls": {n: read_sysctl(n) for n in SYSCTLS},
        "paths": {p: os.path.lexists(p) for p in HOST_PATHS},
        "cniEntries": sorted(str(p) for p in Path("/var/lib/cni").rglob("*")) if Path("/var/lib/cni").exists() else [],
        "interfaces": sorted(interfaces()),
        "nftTables": sorted(" ".join(t) for t in nft_tables()),
        "ipsets": sorted(ipsets()),
        "kubeChains": kube_chains(),
        "cgroups": [str(d) for d in cgroup_dirs()],
        "netns": sorted(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else [],
    }


def cleanup(before: dict, *, bridge: str, dirs: list[str]) -> None:
    """Undo what the node changed on the host (after its processes were stopped)."""
    kill_cgroup()
    for d in dirs:
        for pid in procs.pids_mentioning(d.rstrip("/") + "/") + procs.pids_mentioning(d.rstrip("/") + " "):
            procs.terminate(pid, grace=1.0, group=False)
    unmount_under(*dirs)
    remove_cgroups()
    delete_bridge(bridge)
    for family, name in NODE_NFT_TABLES:
        run("nft", "delete", "table", family, name)
    remove_kube_iptables(set(before.get("kubeChains", [])))
    remove_kube_router_ipsets()
    before_tables = {tuple(t.split()) for t in before.get("nftTables", [])}
    empty_iptables_tables(before_tables)  # type: ignore[arg-type]
    # paths: the CNI cache entries of our pods, then whatever did not exist before
    old_cni = set(before.get("cniEntries", []))
    if Path("/var/lib/cni").exists():
        for p in sorted(Path("/var/lib/cni").rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if str(p) not in old_cni:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
    for path in sorted(HOST_PATHS, key=len, reverse=True):
        if not before.get("paths", {}).get(path, True) and os.path.lexists(path):
            unmount_under(path)
            shutil.rmtree(path, ignore_errors=True)
    if before.get("paths", {}).get("/var/log/containers"):
        for link in Path("/var/log/containers").glob("*.log"):
            if link.is_symlink() and any(str(link.resolve(strict=False)).startswith(d) for d in dirs):
                link.unlink(missing_ok=True)
    for name, value in before.get("sysctls", {}).items():
        if value is not None and read_sysctl(name) != value:
            try:
                write_sysctl(name, value)
            except OSError:
                pass


def leftovers(before: dict, *, dirs=(), gone=(), bridge: str | None = None) -> list[str]:
    """What differs from ``before`` (a `snapshot()`), plus processes and mounts still tied to
    ``dirs`` (the state and socket directories) and any of ``gone`` that still exists: one
    line per leftover, [] when the host is clean."""
    found: list[str] = []
    for d in map(str, dirs):
        for pid in set(procs.pids_mentioning(d.rstrip("/") + "/") + procs.pids_mentioning(d.rstrip("/") + " ")):
            found.append(f"process {pid}: {procs.cmdline(pid)[:200]}")
        for point in mounts_under(d):
            found.append(f"mount {point}")
    for d in map(str, gone):
        if os.path.lexists(d):
            found.append(f"directory {d} still exists")
    for pid in sorted(cgroup_pids()):
        found.append(f"process {pid} in a {KUBEPODS} cgroup: {procs.cmdline(pid)[:200]}")
    for c in cgroup_dirs():
        if str(c) not in before.get("cgroups", []):
            found.append(f"cgroup {c}")
    now_ifaces = interfaces()
    for name in sorted(set(now_ifaces) - set(before.get("interfaces", []))):
        found.append(f"network interface {name}" + (f" (on bridge {now_ifaces[name]})" if now_ifaces[name] else ""))
    if bridge and bridge in now_ifaces and bridge in before.get("interfaces", []):
        found.append(f"bridge {bridge} existed before: not checked")
    for table in sorted({" ".join(t) for t in nft_tables()} - set(before.get("nftTables", []))):
        found.append(f"nft table {table}")
    for chain in sorted(set(kube_chains()) - set(before.get("kubeChains", []))):
        found.append(f"iptables chain {chain}")
    for name in sorted(ipsets() - set(before.get("ipsets", []))):
        found.append(f"ipset {name}")
    netns_now = sorted(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else []
    for name in sorted(set(netns_now) - set(before.get("netns", []))):
        found.append(f"network namespace /var/run/netns/{name}")
    for path, existed in before.get("paths", {}).items():
        if not existed and os.path.lexists(path):
            found.append(f"path {path} (did not exist before)")
    if Path("/var/lib/cni").exists():
        old = set(before.get("cniEntries", []))
        for p in sorted(str(p) for p in Path("/var/lib/cni").rglob("*")):
            if p not in old:
                found.append(f"path {p}")
    for name, value in before.get("sysctls", {}).items():
        now = read_sysctl(name)
        if now != value:
            found.append(f"sysctl {name} = {now} (was {value})")
    return found


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:
        raise OSError(f"cannot {what}: {' '.join(proc.args)}: {proc.stderr.strip() or proc.stdout.strip()}")
