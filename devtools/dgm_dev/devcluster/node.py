"""The dev cluster's local node: a Python process that acts as a kubelet (and scheduler)
for development. NOT ISOLATION: it runs each container's ``command`` + ``args`` as a plain
host process of the user running the node, with the host's filesystem and network.

What it does:

* registers Node ``dgm-local-node`` (Ready, capacity cpu/memory/pods) and heartbeats it
  (NodeStatus and a Lease in ``kube-node-lease``) so the node-lifecycle controller leaves it
  alone;
* binds every pending pod without ``nodeName`` (default scheduler) to itself through the
  pods/binding subresource; there is no real scheduling (nodeSelector, affinity, taints and
  resources are ignored);
* runs the containers of pods bound to it: no image is pulled, so a container without
  ``command`` fails (reason ``NoCommand``). PATH is the container env's PATH, else the
  node's PATH with the directory of ``sys.executable`` first (so ``python`` and ``dgm`` of the
  venv resolve). ``env``/``envFrom`` are resolved (values, configMap/secret keys, fieldRef);
* materialises configMap, secret, downwardAPI, projected (incl. service-account tokens) and
  emptyDir volumes into ``<state>/pods/<uid>/volumes/<name>/`` (hostPath maps to itself),
  and maps container paths to host paths by rewriting each volumeMount's ``mountPath``
  prefix in command, args, env values and workingDir (the program's own hard-coded paths
  are NOT rewritten);
* the termination log (``terminationMessagePath``, default ``/dev/termination-log``) is a
  host file, given as env ``DGM_TERMINATION_LOG`` and rewritten in command/args/env; its
  first 4096 bytes become ``state.terminated.message`` (FallbackToLogsOnError honoured);
* container stdout+stderr go to ``<state>/pods/<uid>/logs/<container>.log``
  (``kubectl logs``/``exec``/``port-forward`` are unsupported: there is no kubelet API);
* writes pod status (phase, conditions, containerStatuses, restartCount, CrashLoopBackOff
  with exponential backoff for restartPolicy Always/OnFailure); running containers count as
  ready at once (probes are not run); ``activeDeadlineSeconds`` is enforced;
* on deletion kills the container process groups (SIGTERM, SIGKILL after the grace period,
  capped at a few seconds) and deletes the pod with grace period 0, as the kubelet does.

NOT enforced: securityContext, resource requests/limits, runtimeClassName, NetworkPolicies,
hostNetwork/ports (every pod's IP is 127.0.0.1), probes, lifecycle hooks, sidecar
semantics of restartable init containers. Every pod runs as the node's own user.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from . import podspec
from .procs import terminate

log = logging.getLogger("dgm.node")

HEARTBEAT_SECONDS = 10
LEASE_SECONDS = 40
MAX_GRACE_SECONDS = 3.0
# a container counts as ready once its process has survived this long (there are no probes;
# without this, a container that exits at once would look ready for an instant and let a
# Deployment rollout progress)
READY_AFTER_SECONDS = 1.0
HOST_IP = "127.0.0.1"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str) -> float:
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


def _json(resp) -> dict:
    data = resp.data
    return json.loads(data) if data else {}


class Container:
    """One container's run state inside a PodWorker."""

    def __init__(self, spec: dict, init: bool = False):
        self.spec = spec
        self.name = spec["name"]
        self.init = init
        self.proc: subprocess.Popen | None = None
        self.restart_count = 0
        self.started_at: str | None = None
        self.started_mono = 0.0
        self.terminated: dict | None = None  # current terminated state (final or before restart)
        self.last_terminated: dict | None = None
        self.next_start: float | None = None  # monotonic time of a pending (re)start
        self.final = False
        self.exit_code: int | None = None
        self.waiting: tuple[str, str] = ("ContainerCreating", "")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.terminated is None

    def ready(self) -> bool:
        return (not self.init and self.running()
                and time.monotonic() - self.started_mono >= READY_AFTER_SECONDS)

    def status(self) -> dict:
        st: dict = {"name": self.name, "image": self.spec.get("image", ""), "imageID": "",
                    "restartCount": self.restart_count, "ready": False, "started": False}
        if self.proc is not None and self.proc.returncode is None and self.terminated is None:
            st["state"] = {"running": {"startedAt": self.started_at}}
            st["ready"] = self.ready()
            st["started"] = True
            st["containerID"] = f"dgm://{self.proc.pid}"
        elif self.terminated is not None and (self.final or self.next_start is None):
            st["state"] = {"terminated": self.terminated}
        else:
            reason, msg = self.waiting
            st["state"] = {"waiting": {"reason": reason, **({"message": msg} if msg else {})}}
        if self.last_terminated:
            st["lastState"] = {"terminated": self.last_terminated}
        return st


class PodWorker(threading.Thread):
    def __init__(self, node: "LocalNode", pod: dict):
        super().__init__(daemon=True, name=f"pod-{pod['metadata']['name']}")
        self.node = node
        self.pod = pod
        meta = pod["metadata"]
        self.uid, self.ns, self.name = meta["uid"], meta["namespace"], meta["name"]
        self.dir = node.state_dir / "pods" / self.uid
        self.cond = threading.Condition()
        self.stop_reason: str | None = None
        self.grace = MAX_GRACE_SECONDS
        spec = pod["spec"]
        self.policy = spec.get("restartPolicy", "Always")
        self.inits = [Container(c, init=True) for c in spec.get("initContainers") or []]
        self.containers = [Container(c) for c in spec.get("containers") or []]
        self.start_time: str | None = pod.get("status", {}).get("startTime")
        self.phase = "Pending"
        self.reason = self.message = None
        self.initialized = not self.inits
        self.conditions: dict[str, dict] = {}
        self._last_status: str | None = None
        self.ending = False

    # ----- control from the node
    def request_stop(self, reason: str, grace: float | None = None) -> None:
        with self.cond:
            if self.stop_reason is None:
                self.stop_reason = reason
                if grace is not None:
                    self.grace = max(0.0, min(grace, MAX_GRACE_SECONDS))
            self.cond.notify_all()

    def _notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    # ----- main loop
    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod %s/%s: worker failed", self.ns, self.name)
            self._kill_all()
        finally:
            self.node.worker_done(self)

    def _run(self) -> None:
        self.start_time = self.start_time or now()
        self._cond("PodScheduled", True)
        self._cond("Initialized", self.initialized)
        self._cond("ContainersReady", False, "ContainersNotReady")
        self._cond("Ready", False, "ContainersNotReady")
        self.deadline = None
        ads = self.pod["spec"].get("activeDeadlineSeconds")
        if ads is not None:
            self.deadline = time.monotonic() - (time.time() - parse_time(self.start_time)) + float(ads)
        self._write_status()
        # volumes (retried while a referenced object is missing)
        delay = 0.5
        while True:
            try:
                self.mounts = self._materialise()
                break
            except podspec.MissingReference as e:
                for c in self.inits + self.containers:
                    c.waiting = ("ContainerCreating", f"volume: {e}")
                self._write_status()
                if self._sleep(delay):
                    return self._finish_stopped()
                delay = min(delay * 2, 5)
        for group in ([c] for c in self.inits):
            if not self._run_group(group, init=True):
                return
        self.initialized = True
        self._cond("Initialized", True)
        self._run_group(self.containers, init=False)

    def _sleep(self, seconds: float) -> bool:
        """Wait; True if a stop was requested."""
        with self.cond:
            if self.stop_reason is None:
                self.cond.wait(seconds)
            return self.stop_reason is not None

    def _run_group(self, group: list[Container], init: bool) -> bool:
        """Run containers until all are final (True if they all succeeded) or the pod ends."""
        for c in group:
            c.next_start = time.monotonic()
        while True:
            with self.cond:
                if self.stop_reason is not None:
                    self._finish_stopped()
                    return False
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.ending = True
                self._kill_all()
                self._collect(group, init)
                self.phase, self.reason = "Failed", "DeadlineExceeded"
                self.message = "Pod was active on the node longer than the specified deadline"
                self._write_status(final=True)
                return False
            t = time.monotonic()
            for c in group:
                if c.next_start is not None and c.next_start <= t and not c.final:
                    self._start(c)
            self._collect(group, init)
            if init and group[0].final and group[0].exit_code != 0:
                self.phase, self.reason = "Failed", None
                self._write_status(final=True)
                return False
            if all(c.final for c in group):
                if init:
                    return True
                self.phase = podspec.pod_phase(self.policy, [c.exit_code for c in group])
                self._write_status(final=True)
                return self.phase == "Succeeded"
            if not init:
                self.phase = "Running" if any(c.proc is not None or c.terminated for c in group) else "Pending"
            self._write_status()
            waits = [c.next_start - time.monotonic() for c in group if c.next_start is not None and not c.final]
            waits += [c.started_mono + READY_AFTER_SECONDS - time.monotonic() + 0.01
                      for c in group if c.running() and not c.ready() and not init]
            if self.deadline is not None:
                waits.append(self.deadline - time.monotonic())
            timeout = max(0.0, min(waits)) if waits else None
            with self.cond:
                if self.stop_reason is None and not any(
                        c.proc is not None and c.proc.poll() is not None for c in group):
                    self.cond.wait(timeout if timeout is None or timeout > 0 else 0.001)

    def _collect(self, group: list[Container], init: bool) -> None:
        for c in group:
            if c.proc is None or c.terminated is not None or c.proc.poll() is None:
                continue
            self._record_exit(c, c.proc.returncode, getattr(c.proc, "message", None), getattr(c.proc, "reason", None))
            c.proc = None
            policy = "OnFailure" if init and self.policy == "Always" else self.policy
            if podspec.should_restart(policy, c.exit_code) and self.stop_reason is None and not self.ending:
                c.restart_count += 1
                wait = podspec.backoff(c.restart_count) if c.exit_code != 0 or not init else 0
                if time.monotonic() - c.started_mono > 60:
                    wait = 1.0
                c.next_start = time.monotonic() + wait
                c.waiting = ("CrashLoopBackOff",
                             f"back-off {wait:.0f}s restarting failed container={c.name} pod={self.name}")
                c.last_terminated, c.terminated = c.terminated, None
            else:
                c.final = True

    def _record_exit(self, c: Container, rc: int | None, message: str | None = None, reason: str | None = None) -> None:
        if rc is None:
            rc = 137
        exit_code = rc if rc >= 0 else 128 - rc
        spec = c.spec
        if message is None:
            message = podspec.termination_message(
                self._termlog(c), spec.get("terminationMessagePolicy"), exit_code, self._logfile(c))
        c.exit_code = exit_code
        c.terminated = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": c.started_at or now(),
            "finishedAt": now(),
            "containerID": f"dgm://{c.proc.pid}" if c.proc is not None and c.proc.pid else "",
        }
        if rc < 0:
            c.terminated["signal"] = -rc
        if message:
            c.terminated["message"] = message

    # ----- processes
    def _termlog(self, c: Container) -> Path:
        return self.dir / "termination" / f"{c.name}.log"

    def _logfile(self, c: Container) -> Path:
        return self.dir / "logs" / f"{c.name}.log"

    def _start(self, c: Container) -> None:
        c.next_start = None
        c.terminated = None
        spec = c.spec
        termlog = self._termlog(c)
        termlog.parent.mkdir(parents=True, exist_ok=True)
        termlog.write_bytes(b"")
        logfile = self._logfile(c)
        logfile.parent.mkdir(parents=True, exist_ok=True)
        mapping = {m["mountPath"]: host for m, host in self.mounts.get(c.name, [])}
        mapping[spec.get("terminationMessagePath") or podspec.TERMINATION_LOG_DEFAULT] = str(termlog)
        rewrite = podspec.PathMap(mapping)
        try:
            env = self.node.container_env(spec, self.pod)
        except (podspec.MissingReference, ValueError) as e:
            c.started_at = now()
            self._fail_start(c, "CreateContainerConfigError", str(e))
            return
        env = {k: rewrite(v) for k, v in env.items()}
        env["PATH"] = podspec.process_path(env, os.environ.get("PATH", ""), os.path.dirname(sys.executable))
        env["DGM_TERMINATION_LOG"] = str(termlog)
        argv = [podspec.expand(a, env) for a in (spec.get("command") or [])]
        args = [podspec.expand(a, env) for a in (spec.get("args") or [])]
        c.started_at = now()
        if not argv:
            self._fail_start(c, "NoCommand",
                             "the dgm local node runs containers as host processes and cannot use the image's "
                             "entrypoint: set `command` in the container spec")
            return
        argv = [rewrite(a) for a in argv + args]
        wd = rewrite(spec.get("workingDir") or "")
        cwd = wd if wd and os.path.isdir(wd) else str(self.dir)
        exe = argv[0]
        if "/" not in exe:
            found = shutil.which(exe, path=env["PATH"])
            if not found:
                self._fail_start(c, "StartError", f"executable {exe!r} not found in PATH={env['PATH']}")
                return
            argv[0] = found
        try:
            with open(logfile, "ab") as out:
                c.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        except OSError as e:
            self._fail_start(c, "StartError", f"cannot start {argv[0]}: {e}")
            return
        c.started_mono = time.monotonic()
        log.info("pod %s/%s: container %s started pid %d: %r", self.ns, self.name, c.name, c.proc.pid, argv)
        threading.Thread(target=self._reap, args=(c.proc,), daemon=True).start()

    def _fail_start(self, c: Container, reason: str, message: str) -> None:
        log.info("pod %s/%s: container %s: %s: %s", self.ns, self.name, c.name, reason, message)
        # collected like an exit by _collect, through a stand-in for the process
        c.proc = _Finished(128, reason, message)

    def _reap(self, proc: subprocess.Popen) -> None:
        proc.wait()
        self._notify()

    def _kill_all(self) -> None:
        procs = [c.proc for c in self.inits + self.containers if c.proc is not None and c.proc.poll() is None]
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        end = time.monotonic() + self.grace
        for p in procs:
            try:
                p.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in procs:
            terminate(p.pid, grace=0.0)
            try:
                os.killpg(p.pid, signal.SIGKILL)  # stragglers left in the group
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def _finish_stopped(self) -> None:
        self._kill_all()
        for c in self.inits + self.containers:
            if c.proc is not None and c.terminated is None:
                self._record_exit(c, c.proc.returncode)
                c.proc = None
                c.final = True

    # ----- volumes
    def _materialise(self) -> dict[str, list[tuple[dict, str]]]:
        """Create the volumes; returns container name -> [(volumeMount, host path)]."""
        vol_root = self.dir / "volumes"
        hosts: dict[str, str] = {}
        for v in self.pod["spec"].get("volumes") or []:
            name = v["name"]
            target = vol_root / name
            if "hostPath" in v:
                hosts[name] = v["hostPath"]["path"]
                continue
            hosts[name] = str(target)
            if "emptyDir" in v:
                target.mkdir(parents=True, exist_ok=True)
            elif "configMap" in v or "secret" in v or "downwardAPI" in v or "projected" in v:
                self._write_volume(v, target)
            else:
                log.warning("pod %s/%s: volume %s of an unsupported type is an empty directory",
                            self.ns, self.name, name)
                target.mkdir(parents=True, exist_ok=True)
        out: dict[str, list[tuple[dict, str]]] = {}
        for c in (self.pod["spec"].get("initContainers") or []) + (self.pod["spec"].get("containers") or []):
            lst = []
            for m in c.get("volumeMounts") or []:
                host = hosts.get(m["name"])
                if host is None:
                    continue
                if m.get("subPath"):
                    host = os.path.join(host, m["subPath"])
                lst.append((m, host))
            out[c["name"]] = lst
        return out

    def _write_volume(self, v: dict, target: Path) -> None:
        files: dict[str, tuple[bytes, int | None]] = {}
        mode = None
        if "configMap" in v or "secret" in v:
            files, mode = self._source_files(v), (v.get("configMap") or v.get("secret")).get("defaultMode")
        elif "downwardAPI" in v:
            files, mode = self._downward(v["downwardAPI"].get("items") or []), v["downwardAPI"].get("defaultMode")
        else:
            proj = v["projected"]
            mode = proj.get("defaultMode")
            for src in proj.get("sources") or []:
                if "configMap" in src or "secret" in src:
                    files.update(self._source_files(src))
                elif "downwardAPI" in src:
                    files.update(self._downward(src["downwardAPI"].get("items") or []))
                elif "serviceAccountToken" in src:
                    files[src["serviceAccountToken"]["path"]] = (self.node.sa_token(self.pod, src["serviceAccountToken"]), None)
                elif "clusterTrustBundle" in src:
                    continue
        if target.exists():
            shutil.rmtree(target)
        podspec.write_files(target, files, mode)

    def _source_files(self, src: dict) -> dict[str, tuple[bytes, int | None]]:
        kind = "configMap" if "configMap" in src else "secret"
        ref = src[kind]
        name = ref.get("name") or ref.get("secretName")
        optional = bool(ref.get("optional"))
        data = self.node.get_bytes(kind, self.ns, name)
        if data is None:
            if optional:
                return {}
            raise podspec.MissingReference(f"{kind} {name!r} not found")
        return podspec.project(data, ref.get("items"), optional, f"{kind} {name!r}")

    def _downward(self, items: list[dict]) -> dict[str, tuple[bytes, int | None]]:
        out = {}
        for it in items:
            if "fieldRef" in it:
                out[it["path"]] = (podspec.field_value(self.pod, it["fieldRef"]["fieldPath"], self.node.name).encode(),
                                   it.get("mode"))
        return out

    # ----- status
    def _cond(self, kind: str, ok: bool, reason: str | None = None) -> None:
        old = self.conditions.get(kind)
        status = "True" if ok else "False"
        if old and old["status"] == status:
            return
        c = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": now()}
        if reason and not ok:
            c["reason"] = reason
        self.conditions[kind] = c

    def _write_status(self, final: bool = False) -> None:
        ready = bool(self.containers) and all(c.ready() for c in self.containers)
        if final:
            ready = False
        self._cond("ContainersReady", ready, "PodCompleted" if final else "ContainersNotReady")
        self._cond("Ready", ready, "PodCompleted" if final else "ContainersNotReady")
        status = {
            "phase": self.phase,
            "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}],
            "podIP": HOST_IP, "podIPs": [{"ip": HOST_IP}],
            "startTime": self.start_time,
            "qosClass": self.pod.get("status", {}).get("qosClass", "BestEffort"),
            "conditions": [self.conditions[k] for k in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.inits:
            status["initContainerStatuses"] = [c.status() for c in self.inits]
        if self.reason:
            status["reason"] = self.reason
        if self.message:
            status["message"] = self.message
        text = json.dumps(status, sort_keys=True)
        if text == self._last_status:
            return
        self._last_status = text
        self.node.patch_pod_status(self.ns, self.name, self.uid, status)


class _Finished:
    """Stands in for a process that could not be started."""

    def __init__(self, rc: int, reason: str, message: str):
        self.returncode = rc
        self.reason = reason
        self.message = message
        self.pid = 0

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        return self.returncode


class LocalNode:
    def __init__(self, kubeconfig: str, state_dir: str, name: str):
        self.name = name
        self.state_dir = Path(state_dir).absolute()
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        cfg.connection_pool_maxsize = 64
        self.server = urlparse(cfg.host)
        self.api = client.ApiClient(cfg)
        self.watch_api = client.ApiClient(cfg)
        self.v1 = client.CoreV1Api(self.api)
        self.coord = client.CoordinationV1Api(self.api)
        self.lock = threading.Lock()
        self.workers: dict[str, PodWorker] = {}
        self.done: set[str] = set()
        self.deleting: set[str] = set()
        self.stop = threading.Event()
        self.base_env = {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER")
                         if k in os.environ}
        self.base_env["KUBERNETES_SERVICE_HOST"] = self.server.hostname or HOST_IP
        self.base_env["KUBERNETES_SERVICE_PORT"] = str(self.server.port or 443)

    # ----- API helpers
    def get_bytes(self, kind: str, ns: str, name: str) -> dict[str, bytes] | None:
        try:
            if kind == "configMap":
                return podspec.configmap_bytes(_json(self.v1.read_namespaced_config_map(name, ns, _preload_content=False)))
            return podspec.decode_secret(_json(self.v1.read_namespaced_secret(name, ns, _preload_content=False)).get("data"))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _str_data(self, kind: str, ns: str, name: str) -> dict[str, str] | None:
        data = self.get_bytes(kind, ns, name)
        return None if data is None else {k: v.decode(errors="replace") for k, v in data.items()}

    def container_env(self, spec: dict, pod: dict) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        base = dict(self.base_env)
        base["HOSTNAME"] = pod["spec"].get("hostname") or pod["metadata"]["name"]
        return podspec.resolve_env(spec, pod, lambda n: self._str_data("configMap", ns, n),
                                   lambda n: self._str_data("secret", ns, n), base=base, node_name=self.name)

    def sa_token(self, pod: dict, src: dict) -> bytes:
        meta = pod["metadata"]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [src["audience"]] if src.get("audience") else None,
                         "expirationSeconds": src.get("expirationSeconds", 3600),
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}}
        try:
            r = self.v1.create_namespaced_service_account_token(
                pod["spec"].get("serviceAccountName") or "default", meta["namespace"], body, _preload_content=False)
            return _json(r).get("status", {}).get("token", "").encode()
        except ApiException as e:
            log.warning("token request for %s/%s failed: %s", meta["namespace"], meta["name"], e.status)
            return b""

    def patch_pod_status(self, ns: str, name: str, uid: str, status: dict) -> None:
        body = {"metadata": {"uid": uid}, "status": status}
        try:
            self.v1.patch_namespaced_pod_status(name, ns, body, _preload_content=False,
                                                _content_type="application/merge-patch+json")
        except ApiException as e:
            if e.status not in (404, 409, 422):
                log.warning("status of %s/%s: %s %s", ns, name, e.status, e.reason)
            elif e.status == 422:
                log.warning("status of %s/%s rejected: %s", ns, name, e.body)

    # ----- node registration and heartbeats
    def _node_status(self) -> dict:
        t = now()
        cond = lambda kind, status, reason, msg: {  # noqa: E731
            "type": kind, "status": status, "reason": reason, "message": msg,
            "lastHeartbeatTime": t, "lastTransitionTime": self.started}
        mem = 0
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1])
        except OSError:
            pass
        cap = {"cpu": str(os.cpu_count() or 1), "memory": f"{mem}Ki", "pods": "110", "ephemeral-storage": "100Gi"}
        return {
            "capacity": cap, "allocatable": cap,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "dgm local node"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "dgm local node"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "dgm local node"),
                cond("Ready", "True", "KubeletReady", "dgm local node runs pods as host processes (no isolation)"),
            ],
            "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": self.name}],
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": platform.release(),
                         "osImage": "dgm local node", "containerRuntimeVersion": "dgm-host-process://0.1",
                         "kubeletVersion": "v0.0.0-dgm", "kubeProxyVersion": "", "operatingSystem": "linux",
                         "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())},
        }

    def register(self, timeout: float = 90.0) -> None:
        self.started = now()
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": {
                    "kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": self._node_status()["nodeInfo"]["architecture"],
                    "dgm.dev/local-node": "true"}},
                "spec": {}}
        deadline = time.monotonic() + timeout
        while True:
            try:
                try:
                    self.v1.create_node(body, _preload_content=False)
                except ApiException as e:
                    if e.status != 409:
                        raise
                self._heartbeat()
                return
            except Exception as e:  # apiserver not up yet
                if time.monotonic() > deadline or self.stop.is_set():
                    raise
                log.debug("register: %s", e)
                time.sleep(0.2)

    def _heartbeat(self) -> None:
        self.v1.patch_node_status(self.name, {"status": self._node_status()}, _preload_content=False,
                                  _content_type="application/merge-patch+json")
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS,
                          "renewTime": micro_now()}}
        try:
            self.coord.patch_namespaced_lease(self.name, "kube-node-lease", {"spec": lease["spec"]},
                                              _preload_content=False, _content_type="application/merge-patch+json")
        except ApiException as e:
            if e.status != 404:
                raise
            try:
                self.coord.create_namespaced_lease("kube-node-lease", lease, _preload_content=False)
            except ApiException as e2:
                if e2.status not in (404, 409):  # namespace not created yet: next beat
                    raise

    def heartbeat_loop(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self._heartbeat()
            except Exception as e:
                log.warning("heartbeat failed: %s", e)

    # ----- pods
    def watch_loop(self) -> None:
        v1 = client.CoreV1Api(self.watch_api)
        rv = None
        while not self.stop.is_set():
            try:
                if rv is None:
                    lst = _json(v1.list_pod_for_all_namespaces(_preload_content=False))
                    rv = lst["metadata"]["resourceVersion"]
                    seen = set()
                    for pod in lst.get("items", []):
                        seen.add(pod["metadata"]["uid"])
                        self.handle("ADDED", pod)
                    with self.lock:
                        gone = [w for uid, w in self.workers.items() if uid not in seen]
                    for w in gone:
                        w.request_stop("deleted")
                w = watch.Watch()
                for ev in w.stream(v1.list_pod_for_all_namespaces, resource_version=rv, timeout_seconds=300,
                                   allow_watch_bookmarks=True, deserialize=False):
                    obj = ev["object"]
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if ev["type"] != "BOOKMARK":
                        self.handle(ev["type"], obj)
                    if self.stop.is_set():
                        w.stop()
                        break
            except ApiException as e:
                if e.status == 410:
                    rv = None
                    continue
                log.warning("pod watch: %s", e)
                self.stop.wait(1)
            except Exception as e:
                log.warning("pod watch: %s", e)
                rv = None
                self.stop.wait(1)

    def handle(self, kind: str, pod: dict) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        uid = meta["uid"]
        node = spec.get("nodeName")
        if kind == "DELETED":
            with self.lock:
                w = self.workers.get(uid)
                self.done.discard(uid)
                self.deleting.discard(uid)
            if w:
                w.request_stop("deleted", 0)
            return
        if not node:
            if (not meta.get("deletionTimestamp") and spec.get("schedulerName", "default-scheduler") == "default-scheduler"
                    and pod.get("status", {}).get("phase", "Pending") == "Pending"):
                self.bind(pod)
            return
        if node != self.name:
            return
        if meta.get("deletionTimestamp"):
            with self.lock:
                if uid in self.deleting:
                    return
                self.deleting.add(uid)
                w = self.workers.get(uid)
            grace = meta.get("deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds", 30))
            threading.Thread(target=self._delete, args=(pod, w, grace), daemon=True).start()
            return
        with self.lock:
            if uid in self.workers or uid in self.done or self.stop.is_set():
                if uid in self.workers:
                    self.workers[uid].pod = pod
                return
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                self.done.add(uid)
                return
            w = PodWorker(self, pod)
            self.workers[uid] = w
        w.start()

    def bind(self, pod: dict) -> None:
        meta = pod["metadata"]
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"], "uid": meta["uid"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.name}}
        try:
            self.v1.create_namespaced_pod_binding(meta["name"], meta["namespace"], body, _preload_content=False)
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("bind %s/%s: %s %s", meta["namespace"], meta["name"], e.status, e.body)

    def _delete(self, pod: dict, w: PodWorker | None, grace) -> None:
        meta = pod["metadata"]
        if w is not None:
            w.request_stop("deleted", float(grace or 0))
            w.join(timeout=MAX_GRACE_SECONDS + 10)
        try:
            self.v1.delete_namespaced_pod(meta["name"], meta["namespace"], _preload_content=False,
                                          body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("delete %s/%s: %s", meta["namespace"], meta["name"], e.status)

    def worker_done(self, w: PodWorker) -> None:
        with self.lock:
            if self.workers.get(w.uid) is w:
                del self.workers[w.uid]
                self.done.add(w.uid)

    def run(self) -> int:
        self.register()
        log.info("node %s registered; state dir %s", self.name, self.state_dir)
        threading.Thread(target=self.heartbeat_loop, daemon=True, name="heartbeat").start()
        threading.Thread(target=self.watch_loop, daemon=True, name="watch").start()
        self.stop.wait()
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        log.info("stopping: killing all pod processes")
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            w.request_stop("shutdown", 1.0)
        for w in workers:
            w.join(timeout=MAX_GRACE_SECONDS + 5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dgm_dev.devcluster.node", description=__doc__.split("\n")[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--node-name", default="dgm-local-node")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    node = LocalNode(args.kubeconfig, args.state_dir, args.node_name)

    def on_signal(signum, frame):
        node.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return node.run()
    except Exception:
        log.exception("local node failed")
        node.stop.set()
        node.shutdown()
        return 1


if __name__ == "__main__":
    sys.exit(main())
