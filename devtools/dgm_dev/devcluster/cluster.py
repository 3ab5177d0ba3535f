"""`DevCluster`: etcd + kube-apiserver + kube-controller-manager (+ the local node) on
loopback, as detached processes recorded under a state directory.

Layout of the state directory::

    cluster.json              pids, ports, binary dir (written as processes start)
    admin.kubeconfig          cluster-admin credentials (embedded certificates)
    controller-manager.kubeconfig
    pki/                      CA, serving/client certificates, service-account keys
    etcd-data/
    etcd.log  kube-apiserver.log  kube-controller-manager.log  node.log
    pods/<uid>/               the local node's pod directories (see node.py)

Development only: everything listens on 127.0.0.1, the admin credentials are in the state
directory, and the local node runs pods as host processes without isolation.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import binaries, procs
from .certs import b64, ensure_pki

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
NODE_NAME = "dgm-local-node"
# stop order for `down`
STOP_ORDER = ("node", "kube-controller-manager", "kube-apiserver", "etcd")


class DevClusterError(RuntimeError):
    """A failure attributable to one component; the message names it and its log."""

    def __init__(self, component: str | None, message: str, log: Path | None = None):
        super().__init__(message)
        self.component = component
        self.log = log


@dataclass
class ComponentStatus:
    name: str
    pid: int | None
    alive: bool
    log: Path


def _tail(path: Path, lines: int = 15) -> str:
    try:
        data = path.read_bytes()[-6000:].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


class DevCluster:
    def __init__(self, state_dir: str | os.PathLike = ".dev-cluster", *, bin_dir: str | os.PathLike | None = None,
                 apiserver_port: int | None = None, etcd_port: int | None = None, node: bool = True,
                 log=None):
        self.state_dir = Path(state_dir).absolute()
        self._bin_dir = Path(bin_dir) if bin_dir else None
        self.apiserver_port = apiserver_port
        self.etcd_port = etcd_port
        self.with_node = node
        self._log = log or (lambda msg: print(msg, file=sys.stderr))
        self._procs: dict[str, subprocess.Popen] = {}

    # ----- paths
    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def record_path(self) -> Path:
        return self.state_dir / "cluster.json"

    def log_path(self, component: str) -> Path:
        return self.state_dir / f"{component}.log"

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            rec = self._record()
            self._bin_dir = Path(rec["binDir"]) if rec.get("binDir") else binaries.find_bin_dir()
        return self._bin_dir

    def _record(self) -> dict:
        try:
            return json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, rec: dict) -> None:
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec, indent=2))
        tmp.replace(self.record_path)

    # ----- status
    def status(self) -> dict[str, ComponentStatus]:
        rec = self._record()
        out = {}
        for name in reversed(STOP_ORDER):
            pid = rec.get("pids", {}).get(name)
            alive = bool(pid) and procs.is_alive(pid) and str(self.state_dir) in procs.cmdline(pid)
            out[name] = ComponentStatus(name, pid, alive, self.log_path(name))
        return out

    def running(self) -> bool:
        st = self.status()
        return all(st[c].alive for c in ("etcd", "kube-apiserver", "kube-controller-manager"))

    def readyz(self, timeout: float = 2.0) -> str | None:
        """The body of /readyz, or None if the apiserver does not answer."""
        rec = self._record()
        port = rec.get("ports", {}).get("apiserver")
        if not port:
            return None
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=self._ssl(), timeout=timeout) as r:
                return r.read().decode()
        except Exception:
            return None

    def _ssl(self) -> ssl.SSLContext:
        pki = self.state_dir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    # ----- up
    def up(self, timeout: float = 90.0) -> "DevCluster":
        t0 = time.monotonic()
        if self.record_path.exists() and any(s.alive for s in self.status().values()):
            if self.running() and self.readyz():
                self._log(f"dev cluster already running in {self.state_dir}")
                return self
            raise DevClusterError(None, f"a partly running dev cluster exists in {self.state_dir}; "
                                        f"run `dgm dev-cluster down --state-dir {self.state_dir}` first")
        bins = binaries.check_all(self.bin_dir)
        ports = {
            "etcd": self._port("etcd", self.etcd_port, "--etcd-port"),
            "apiserver": self._port("kube-apiserver", self.apiserver_port, "--apiserver-port"),
        }
        ports["etcdPeer"] = procs.free_port()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pki = ensure_pki(self.state_dir / "pki", SERVICE_IP)
        server = f"https://127.0.0.1:{ports['apiserver']}"
        self._write_kubeconfig(self.kubeconfig, server, "admin")
        cm_kubeconfig = self.state_dir / "controller-manager.kubeconfig"
        self._write_kubeconfig(cm_kubeconfig, server, "controller-manager")
        rec = {"binDir": str(self.bin_dir), "ports": ports, "pids": {}, "nodeName": NODE_NAME}
        self._save(rec)
        sd = self.state_dir
        commands = {
            "etcd": [
                str(bins["etcd"]), "--name", "dgm-dev", "--data-dir", str(sd / "etcd-data"),
                "--listen-client-urls", f"http://127.0.0.1:{ports['etcd']}",
                "--advertise-client-urls", f"http://127.0.0.1:{ports['etcd']}",
                "--listen-peer-urls", f"http://127.0.0.1:{ports['etcdPeer']}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{ports['etcdPeer']}",
                "--initial-cluster", f"dgm-dev=http://127.0.0.1:{ports['etcdPeer']}",
                "--unsafe-no-fsync", "--log-level", "warn",
            ],
            "kube-apiserver": [
                str(bins["kube-apiserver"]),
                "--etcd-servers", f"http://127.0.0.1:{ports['etcd']}",
                "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
                "--secure-port", str(ports["apiserver"]),
                "--cert-dir", str(sd / "pki" / "apiserver-generated"),
                "--tls-cert-file", str(pki.crt("apiserver")), "--tls-private-key-file", str(pki.key("apiserver")),
                "--client-ca-file", str(pki.ca_crt),
                "--authorization-mode", "Node,RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(pki.sa_pub),
                "--service-account-signing-key-file", str(pki.sa_key),
                "--service-cluster-ip-range", SERVICE_CIDR,
                "--allow-privileged=true", "--profiling=false",
                "--enable-priority-and-fairness=false",
                "--endpoint-reconciler-type", "none",
                "--v", "1",
            ],
            "kube-controller-manager": [
                str(bins["kube-controller-manager"]),
                "--kubeconfig", str(cm_kubeconfig),
                "--leader-elect=false", "--secure-port", "0",
                "--controllers", "*",
                "--service-account-private-key-file", str(pki.sa_key),
                "--root-ca-file", str(pki.ca_crt),
                "--cluster-signing-cert-file", str(pki.ca_crt),
                "--cluster-signing-key-file", str(pki.ca_key),
                "--use-service-account-credentials=false",
                "--concurrent-deployment-syncs", "5",
                "--v", "1",
            ],
            "node": [
                sys.executable, "-m", "dgm_dev.devcluster.node",
                "--kubeconfig", str(self.kubeconfig), "--state-dir", str(sd), "--node-name", NODE_NAME,
            ],
        }
        order = ["etcd", "kube-apiserver", "kube-controller-manager"] + (["node"] if self.with_node else [])
        try:
            for name in order:
                self._start(name, commands[name], rec)
            self._wait(t0, timeout)
        except BaseException:
            self._log("dev cluster: start failed, stopping what was started")
            self._stop_all(rec)
            raise
        self._log(f"dev cluster up in {time.monotonic() - t0:.1f}s ({self.state_dir})")
        return self

    def _port(self, component: str, wanted: int | None, flag: str) -> int:
        if wanted:
            if not procs.port_free(wanted):
                raise DevClusterError(component, f"{component}: port 127.0.0.1:{wanted} ({flag}) is already in use; "
                                                 f"choose another or omit {flag} to pick a free port")
            return wanted
        return procs.free_port()

    def _start(self, name: str, cmd: list[str], rec: dict) -> None:
        log = self.log_path(name)
        env = dict(os.environ)
        if name == "node":
            # the node must import this package even when run outside an installed venv
            pkg_root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(log, "ab") as f:
            try:
                p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                     start_new_session=True, close_fds=True, cwd=self.state_dir, env=env)
            except OSError as e:
                raise DevClusterError(name, f"{name}: cannot start {cmd[0]}: {e}", log) from e
        self._procs[name] = p
        rec["pids"][name] = p.pid
        self._save(rec)

    def _check_alive(self) -> None:
        for name, p in self._procs.items():
            if p.poll() is not None:
                log = self.log_path(name)
                raise DevClusterError(
                    name,
                    f"{name} exited with code {p.returncode} during start; see its log {log}:\n{_tail(log)}",
                    log,
                )

    def _wait(self, t0: float, timeout: float) -> None:
        deadline = t0 + timeout
        while True:
            self._check_alive()
            if self.readyz(timeout=1) == "ok":
                break
            if time.monotonic() > deadline:
                raise DevClusterError("kube-apiserver", f"kube-apiserver not ready after {timeout:.0f}s; see "
                                             f"{self.log_path('kube-apiserver')} and {self.log_path('etcd')}",
                                      self.log_path("kube-apiserver"))
            time.sleep(0.1)
        self._log(f"dev cluster: /readyz ok after {time.monotonic() - t0:.1f}s")
        # the controller manager is up once it created the default service account
        self._wait_for("kube-controller-manager", "/api/v1/namespaces/default/serviceaccounts/default", deadline)
        if self.with_node:
            self._wait_for("node", f"/api/v1/nodes/{NODE_NAME}", deadline, ready_node=True)

    def _wait_for(self, component: str, path: str, deadline: float, ready_node: bool = False) -> None:
        port = self._record()["ports"]["apiserver"]
        ctx = self._ssl()
        while True:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=ctx, timeout=2) as r:
                    obj = json.loads(r.read())
                if not ready_node or any(c.get("type") == "Ready" and c.get("status") == "True"
                                         for c in obj.get("status", {}).get("conditions", [])):
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                log = self.log_path(component)
                raise DevClusterError(component, f"{component} did not become ready in time; see {log}:\n{_tail(log)}", log)
            time.sleep(0.1)

    def _write_kubeconfig(self, path: Path, server: str, who: str) -> None:
        pki = self.state_dir / "pki"
        cfg = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "dgm-dev", "cluster": {"server": server,
                                                          "certificate-authority-data": b64(pki / "ca.crt")}}],
            "users": [{"name": who, "user": {"client-certificate-data": b64(pki / f"{who}.crt"),
                                             "client-key-data": b64(pki / f"{who}.key")}}],
            "contexts": [{"name": "dgm-dev", "context": {"cluster": "dgm-dev", "user": who}}],
            "current-context": "dgm-dev",
        }
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)

    # ----- down
    def _stop_all(self, rec: dict) -> list[str]:
        """Stop recorded processes in STOP_ORDER; returns the names still alive."""
        left = []
        for name in STOP_ORDER:
            pid = rec.get("pids", {}).get(name)
            if not pid:
                continue
            p = self._procs.get(name)
            if p is None and str(self.state_dir) not in procs.cmdline(pid):
                continue  # not ours (pid reused) or already gone
            procs.terminate(pid, grace=8.0 if name == "node" else 5.0)
            if p is not None:
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            if procs.is_alive(pid):
                left.append(name)
        # anything else still carrying the state dir in its command line (e.g. pods the node left)
        for pid in procs.pids_mentioning(str(self.state_dir) + os.sep) + procs.pids_mentioning(str(self.state_dir) + " "):
            procs.terminate(pid, grace=2.0, group=False)
        return left

    def down(self, keep: bool = False) -> None:
        rec = self._record()
        left = self._stop_all(rec)
        if left:
            raise DevClusterError(left[0], f"could not stop: {', '.join(left)}")
        if not keep and self.state_dir.exists():
            shutil.rmtree(self.state_dir, ignore_errors=True)
        elif rec:
            rec["pids"] = {}
            self._save(rec)

    def pids(self) -> dict[str, int]:
        return dict(self._record().get("pids", {}))
