"""`DevCluster`: etcd + kube-apiserver + kube-controller-manager and a node, as detached
processes recorded under a state directory.

The node (``node=``):
- ``"real"`` (the default): containerd + runc, a kubelet, kube-scheduler, bridge CNI,
  kube-proxy and kube-router's firewall (realnode.py). Every pod runs in a real container.
  Needs root; the API server listens on the node's bridge address so pods reach it.
- ``"process"``: the old fallback for hosts without root (node.py): pods run as host
  processes, without any isolation. Never the default.
- ``"none"`` (or False): the control plane alone, on loopback.

Layout of the state directory::

    cluster.json              pids, ports, binary dir (written as processes start)
    admin.kubeconfig          cluster-admin credentials (embedded certificates)
    controller-manager.kubeconfig
    pki/                      CA, serving/client certificates, service-account keys
    etcd-data/
    etcd.log  kube-apiserver.log  kube-controller-manager.log  node.log
    pods/<uid>/               the local node's pod directories (see node.py)

Development only: the admin credentials are in the state directory. With the real node the
API server listens on the pods' bridge (an address of this machine only); pods cannot reach
beyond this machine (hoststate.install_guard).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import binaries, clusterdns, hoststate, procs, realnode
from .certs import b64, ensure_node_pki, ensure_pki

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
NODE_NAME = "dgm-local-node"
# stop order for `down`: the node's components first, then the control plane
STOP_ORDER = ("kube-router", "kube-proxy", "kubelet", "kube-scheduler", "cluster-dns", "node", "containerd",
              "kube-controller-manager", "kube-apiserver", "etcd")
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager")
NODE_MODES = ("real", "process", "none")


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


def _running_real_node(state_dir: Path) -> str | None:
    """Why another real node is in the way on this machine (None when nothing is): a running
    one, or one that was never brought down (its state directory still records it)."""
    stale = []
    for marker in Path("/run").glob("dgm-dev-*/state-dir"):
        try:
            other = Path(marker.read_text().strip())
            rec = json.loads((other / "cluster.json").read_text())
        except (OSError, ValueError):
            continue
        if other == state_dir:
            continue
        for name in ("containerd", "kubelet", "kube-apiserver"):
            pid = rec.get("pids", {}).get(name)
            if pid and procs.is_alive(pid) and str(other) in procs.cmdline(pid):
                return (f"another dev cluster with a real node runs in {other} (one per machine: the bridge and "
                        f"the firewall are global); stop it with `dgm dev-cluster down --state-dir {other}`")
        stale.append(str(other))
    for other_dir in stale:
        # Its processes are gone (a killed test run, a session that ended): bring it down,
        # which undoes what it changed on the host from its own record, instead of refusing.
        try:
            DevCluster(other_dir, log=lambda msg: None).down()
        except Exception as exc:  # noqa: BLE001 - reported below with the way to clean up
            return (f"a dev cluster with a real node was not brought down in {other_dir} and cleaning it up "
                    f"failed ({exc}); clean up with `dgm dev-cluster down --state-dir {other_dir}`")
    if realnode.BRIDGE in hoststate.interfaces():
        return (f"the bridge {realnode.BRIDGE} exists (a real node without its state directory?); "
                f"`ip link delete {realnode.BRIDGE}` if nothing uses it")
    return None


class DevCluster:
    def __init__(self, state_dir: str | os.PathLike = ".dev-cluster", *, bin_dir: str | os.PathLike | None = None,
                 apiserver_port: int | None = None, etcd_port: int | None = None, node: bool | str = "real",
                 log=None):
        self.state_dir = Path(state_dir).absolute()
        self._bin_dir = Path(bin_dir) if bin_dir else None
        self.apiserver_port = apiserver_port
        self.etcd_port = etcd_port
        mode = {True: "real", False: "none", None: "none"}.get(node, node)  # type: ignore[call-overload]
        if mode not in NODE_MODES:
            raise ValueError(f"node must be one of {', '.join(NODE_MODES)}, not {node!r}")
        self.node_mode = mode
        self.with_node = mode != "none"
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
        recorded = rec.get("pids", {})
        for name in reversed(STOP_ORDER):
            if name not in recorded and name not in CONTROL_PLANE:
                continue
            pid = recorded.get(name)
            alive = bool(pid) and procs.is_alive(pid) and str(self.state_dir) in procs.cmdline(pid)
            out[name] = ComponentStatus(name, pid, alive, self.log_path(name))
        return out

    def running(self) -> bool:
        st = self.status()
        return all(s.alive for s in st.values() if s.pid) and all(st[c].alive for c in CONTROL_PLANE)

    @property
    def host(self) -> str:
        """The address the API server listens on (the node's bridge address with the real node)."""
        return self._record().get("host") or (realnode.NODE_IP if self.node_mode == "real" else "127.0.0.1")

    def readyz(self, timeout: float = 2.0) -> str | None:
        """The body of /readyz, or None if the apiserver does not answer."""
        rec = self._record()
        port = rec.get("ports", {}).get("apiserver")
        if not port:
            return None
        try:
            with urllib.request.urlopen(f"https://{self.host}:{port}/readyz", context=self._ssl(), timeout=timeout) as r:
                return r.read().decode()
        except Exception:
            return None

    def _ssl(self) -> ssl.SSLContext:
        pki = self.state_dir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    # ----- up
    def up(self, timeout: float = 180.0) -> "DevCluster":
        t0 = time.monotonic()
        if self.record_path.exists() and any(s.alive for s in self.status().values()):
            if self.running() and self.readyz():
                self._log(f"dev cluster already running in {self.state_dir}")
                return self
            raise DevClusterError(None, f"a partly running dev cluster exists in {self.state_dir}; "
                                        f"run `dgm dev-cluster down --state-dir {self.state_dir}` first")
        bins = binaries.check_all(self.bin_dir)
        real = self.node_mode == "real"
        if real:
            try:
                realnode.ensure_host_deps(self._log)
                realnode.check_binaries(self.bin_dir)
                in_the_way = _running_real_node(self.state_dir)
                if in_the_way:
                    raise DevClusterError("node", in_the_way)
                images = realnode.find_images(log=self._log)
            except realnode.NodeSetupError as e:
                raise DevClusterError(e.component, str(e)) from e
            except binaries.BinaryError as e:
                raise DevClusterError(e.component, str(e)) from e
        ports = {
            "etcd": self._port("etcd", self.etcd_port, "--etcd-port"),
            "apiserver": self._port("kube-apiserver", self.apiserver_port, "--apiserver-port"),
        }
        ports["etcdPeer"] = procs.free_port()
        host = realnode.NODE_IP if real else "127.0.0.1"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pki = ensure_pki(self.state_dir / "pki", SERVICE_IP, extra_ips=(realnode.NODE_IP,) if real else ())
        server = f"https://{host}:{ports['apiserver']}"
        self._write_kubeconfig(self.kubeconfig, server, "admin")
        cm_kubeconfig = self.state_dir / "controller-manager.kubeconfig"
        self._write_kubeconfig(cm_kubeconfig, server, "controller-manager")
        rec = {"binDir": str(self.bin_dir), "ports": ports, "pids": {}, "nodeName": NODE_NAME,
               "node": self.node_mode, "host": host}
        lay = realnode.NodeLayout(self.state_dir, NODE_NAME, self.bin_dir)
        if real:
            for name in ("kubelet", "kubeletHealthz", "scheduler", "kubeProxyHealthz", "kubeProxyMetrics",
                         "kubeRouterHealth"):
                ports[name] = procs.free_port()
            # what the node changes outside the state directory, recorded before it does
            rec["host0"] = hoststate.snapshot()
            rec["socketDir"] = str(lay.sockets)
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
                "--bind-address", host, "--advertise-address", host,
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
        }
        if real:
            # the kubelet's identity, kubelet-to-API and API-to-kubelet certificates; the
            # `kubernetes` Service's endpoints point at the bridge address (lease reconciler)
            commands["kube-apiserver"] += [
                "--kubelet-client-certificate", str(pki.crt("apiserver-kubelet-client")),
                "--kubelet-client-key", str(pki.key("apiserver-kubelet-client")),
                "--kubelet-certificate-authority", str(pki.ca_crt),
                "--kubelet-preferred-address-types", "InternalIP,Hostname,ExternalIP",
                "--enable-admission-plugins", "NodeRestriction",
            ]
            ensure_node_pki(pki, NODE_NAME, realnode.NODE_IP)
            for who, cert in (("kubelet", "kubelet-client"), ("kube-scheduler", "kube-scheduler"),
                              ("kube-proxy", "kube-proxy"), ("kube-router", "kube-router")):
                self._write_kubeconfig(lay.kubeconfig(who), server, cert)
            realnode.write_configs(lay, pki.dir, ports)
            commands.update(realnode.commands(lay, ports))
            commands["cluster-dns"] = [
                sys.executable, "-m", "dgm_dev.devcluster.clusterdns", "--listen", f"{realnode.NODE_IP}:53",
                "--server", server, "--ca", str(pki.ca_crt), "--cert", str(pki.crt("admin")),
                "--key", str(pki.key("admin")), "--state-dir", str(sd)]
        else:
            commands["kube-apiserver"] += ["--endpoint-reconciler-type", "none"]
            commands["node"] = [
                sys.executable, "-m", "dgm_dev.devcluster.node",
                "--kubeconfig", str(self.kubeconfig), "--state-dir", str(sd), "--node-name", NODE_NAME,
            ]
        try:
            if real:
                self._up_real(t0, timeout, commands, rec, lay, images)
            else:
                order = list(CONTROL_PLANE) + (["node"] if self.with_node else [])
                for name in order:
                    self._start(name, commands[name], rec)
                self._wait(t0, timeout)
        except BaseException:
            self._log("dev cluster: start failed, stopping what was started")
            self._teardown(rec)
            raise
        self._log(f"dev cluster up in {time.monotonic() - t0:.1f}s ({self.state_dir}, node: {self.node_mode})")
        return self

    def _up_real(self, t0: float, timeout: float, commands: dict, rec: dict, lay, images: Path) -> None:
        deadline = t0 + timeout
        try:
            hoststate.write_sysctl("net.ipv4.ip_forward", "1")
            hoststate.create_bridge(realnode.BRIDGE, f"{realnode.NODE_IP}/{realnode.POD_CIDR.split('/')[1]}")
            hoststate.install_guard(realnode.BRIDGE, realnode.SERVICE_CIDR)
        except OSError as e:
            raise DevClusterError("node", f"node network: {e}") from e
        try:
            realnode.mount_containerd_root(lay)
        except realnode.NodeSetupError as e:
            raise DevClusterError(e.component, str(e)) from e
        for name in ("containerd", *CONTROL_PLANE):
            self._start(name, commands[name], rec)
        # the images go into containerd while the API server starts
        self._wait_socket("containerd", lay.containerd_socket, deadline)
        t_img = time.monotonic()
        importer = subprocess.Popen(
            [str(lay.bin_dir / "ctr"), "--address", str(lay.containerd_socket), "-n", "k8s.io",
             "images", "import", str(images)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            self._wait_ready(deadline)
            self._wait_for("kube-controller-manager", "/api/v1/namespaces/default/serviceaccounts/default", deadline)
            for name in ("cluster-dns", "kubelet", "kube-scheduler", "kube-proxy"):
                self._start(name, commands[name], rec)
            self._wait_for("kubelet", f"/api/v1/nodes/{NODE_NAME}", deadline, ready_node=True)
            self._kubectl_apply(realnode.KUBE_ROUTER_RBAC, "kube-router")
            self._start("kube-router", commands["kube-router"], rec)
            ports = rec["ports"]
            self._wait_http("kube-proxy", f"http://127.0.0.1:{ports['kubeProxyHealthz']}/healthz", deadline)
            self._wait_http("kube-router", f"http://127.0.0.1:{ports['kubeRouterHealth']}/healthz", deadline)
            self._wait_dns(deadline)
            out, _ = importer.communicate(timeout=max(5.0, deadline - time.monotonic() + 120))
        except BaseException:
            if importer.poll() is None:
                importer.kill()
                importer.wait()
            raise
        if importer.returncode != 0:
            raise DevClusterError("images", f"ctr images import {images} failed:\n{out[-2000:]}",
                                  self.log_path("containerd"))
        self._log(f"dev cluster: images imported in {time.monotonic() - t_img:.1f}s ({images.name})")

    def _wait_ready(self, deadline: float) -> None:
        t0 = time.monotonic()
        while True:
            self._check_alive()
            if self.readyz(timeout=1) == "ok":
                break
            if time.monotonic() > deadline:
                raise DevClusterError("kube-apiserver", f"kube-apiserver not ready in time; see "
                                                        f"{self.log_path('kube-apiserver')} and {self.log_path('etcd')}",
                                      self.log_path("kube-apiserver"))
            time.sleep(0.1)
        self._log(f"dev cluster: /readyz ok after {time.monotonic() - t0:.1f}s")

    def _wait_dns(self, deadline: float) -> None:
        name = "kubernetes.default.svc.cluster.local"
        query = clusterdns.query(name)
        while True:
            self._check_alive()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.5)
                try:
                    s.sendto(query, (realnode.NODE_IP, 53))
                    reply = s.recv(512)
                    if clusterdns.answer_count(reply) >= 1:
                        return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                log = self.log_path("cluster-dns")
                raise DevClusterError("cluster-dns", f"cluster-dns does not answer for {name}; see {log}:\n"
                                                     f"{_tail(log)}", log)
            time.sleep(0.1)

    def _wait_socket(self, component: str, path: Path, deadline: float) -> None:
        while not path.is_socket():
            self._check_alive()
            if time.monotonic() > deadline:
                log = self.log_path(component)
                raise DevClusterError(component, f"{component}: no socket {path} in time; see {log}:\n{_tail(log)}",
                                      log)
            time.sleep(0.05)

    def _wait_http(self, component: str, url: str, deadline: float) -> None:
        while True:
            self._check_alive()
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            if time.monotonic() > deadline:
                log = self.log_path(component)
                raise DevClusterError(component, f"{component} not healthy ({url}) in time; see {log}:\n{_tail(log)}",
                                      log)
            time.sleep(0.1)

    def _kubectl_apply(self, manifest: str, component: str) -> None:
        proc = subprocess.run([str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), "apply",
                               "--server-side", "-f", "-"], input=manifest, capture_output=True, text=True,
                              timeout=60)
        if proc.returncode != 0:
            raise DevClusterError(component, f"{component}: cannot apply its RBAC: {proc.stderr.strip()}")

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
        if name in ("node", "cluster-dns"):
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
                with urllib.request.urlopen(f"https://{self.host}:{port}{path}", context=ctx, timeout=2) as r:
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
    def _stop(self, rec: dict, names) -> list[str]:
        """Stop the recorded processes among ``names``, in that order; returns those still alive."""
        left = []
        for name in names:
            pid = rec.get("pids", {}).get(name)
            if not pid:
                continue
            p = self._procs.get(name)
            if p is None and str(self.state_dir) not in procs.cmdline(pid):
                continue  # not ours (pid reused) or already gone
            procs.terminate(pid, grace=8.0 if name in ("node", "kubelet") else 5.0)
            if p is not None:
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            if procs.is_alive(pid):
                left.append(name)
        return left

    def _teardown(self, rec: dict) -> list[str]:
        """Stop everything `up` started and, with the real node, undo what it changed on the
        host (hoststate.cleanup); returns the components that could not be stopped."""
        real = rec.get("node") == "real"
        t0 = time.monotonic()

        def step(what: str) -> None:
            if real:
                self._log(f"dev cluster: down: {what} ({time.monotonic() - t0:.1f}s)")
        left = self._stop(rec, ("kube-router", "kube-proxy", "kubelet", "kube-scheduler", "cluster-dns", "node"))
        step("node agents stopped")
        socket_dir = rec.get("socketDir")
        if real:
            lay = realnode.NodeLayout(self.state_dir, rec.get("nodeName", NODE_NAME),
                                      Path(rec.get("binDir") or self.bin_dir))
            pid = rec.get("pids", {}).get("containerd")
            if pid and procs.is_alive(pid) and lay.containerd_socket.is_socket():
                realnode.remove_all_containers(lay)
                step("containers removed")
        left += self._stop(rec, ("containerd", *reversed(CONTROL_PLANE)))
        step("containerd and the control plane stopped")
        # anything else still carrying the state dir in its command line (pods of the process
        # node, containerd's shims)
        for d in filter(None, (str(self.state_dir), socket_dir)):
            for pid in procs.pids_mentioning(d + os.sep) + procs.pids_mentioning(d + " "):
                procs.terminate(pid, grace=2.0, group=False)
        if real and "host0" in rec:
            hoststate.cleanup(rec["host0"], bridge=realnode.BRIDGE,
                              dirs=[d for d in (str(self.state_dir), socket_dir) if d])
            if socket_dir:
                shutil.rmtree(socket_dir, ignore_errors=True)
            step("host state restored")
        return left

    def down(self, keep: bool = False) -> None:
        rec = self._record()
        left = self._teardown(rec)
        if left:
            raise DevClusterError(left[0], f"could not stop: {', '.join(left)}")
        if not keep and self.state_dir.exists():
            shutil.rmtree(self.state_dir, ignore_errors=True)
        elif rec:
            rec["pids"] = {}
            self._save(rec)
        if rec.get("node") == "real" and "host0" in rec:
            dirs = [d for d in (str(self.state_dir), rec.get("socketDir")) if d]
            remaining = hoststate.leftovers(rec["host0"], dirs=dirs, gone=dirs[1:] if keep else dirs)
            if remaining:
                raise DevClusterError("node", "`down` left these behind:\n  - " + "\n  - ".join(remaining))

    def leftovers(self) -> list[str]:
        """What a real node left on the host (needs the state directory's record; `down`
        runs the same check itself before it removes the directory)."""
        rec = self._record()
        if "host0" not in rec:
            return []
        dirs = [d for d in (str(self.state_dir), rec.get("socketDir")) if d]
        return hoststate.leftovers(rec["host0"], dirs=dirs, gone=dirs[1:])

    def pids(self) -> dict[str, int]:
        return dict(self._record().get("pids", {}))
