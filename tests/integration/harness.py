"""The operator harness of the integration tests: `Env` (kubectl helpers and polling on
one namespace), `Operator` (`dgm run` as a subprocess) and candidate manifests. The
fixtures built on them (`crds`, `env`, `operator`) live in conftest.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from polling import wait_for

REPO = Path(__file__).resolve().parents[2]


def candidate(namespace: str, name: str, settings: dict | None = None, **spec) -> dict:
    body = {"agentRef": "toy", "improvementType": "ParameterTuning", "description": f"test {name}",
            "expectedImprovement": 0.1, "riskLevel": 0.1, **spec}
    if settings is not None:
        body["changes"] = {"settings.json": json.dumps(settings)}
    return {"apiVersion": "dgm.io/v1alpha1", "kind": "ImprovementCandidate",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


class Env:
    def __init__(self, cluster, namespace):
        self.cluster, self.ns = cluster, namespace

    def apply(self, *objs):
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))

    def get(self, kind, name):
        out = self.cluster.kubectl("get", kind, name, "-n", self.ns, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def list(self, kind, selector=None):
        args = ["get", kind, "-n", self.ns, "-o", "json"] + (["-l", selector] if selector else [])
        return json.loads(self.cluster.kubectl(*args).stdout)["items"]

    def wait(self, what, fn, timeout=90, interval=0.25):
        return wait_for(what, fn, timeout, interval)

    def phase(self, name):
        obj = self.get("improvementcandidates", name)
        return ((obj or {}).get("status") or {}).get("phase")

    def wait_phase(self, name, *phases, timeout=120):
        def check():
            obj = self.get("improvementcandidates", name)
            st = (obj or {}).get("status") or {}
            return obj if st.get("phase") in phases else None
        return self.wait(f"{name} in {phases}", check, timeout)

    def agent_status(self, agent="toy"):
        return (self.get("dgmagents", agent) or {}).get("status") or {}

    def wait_ready(self, agent="toy", timeout=120):
        def ready():
            st = ((self.get("dgmagents", agent) or {}).get("status") or {})
            return st if any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or []) else None
        return self.wait(f"agent {agent} Ready", ready, timeout)

    def rollout_done(self, deployment, revision):
        def done():
            d = self.get("deployment", deployment)
            ann = d["spec"]["template"]["metadata"].get("annotations") or {}
            st = d.get("status") or {}
            return (ann.get("dgm.io/revision") == str(revision) and st.get("observedGeneration", 0) >= d["metadata"]["generation"]
                    and st.get("updatedReplicas") == 1 and st.get("availableReplicas") == 1 and st.get("replicas") == 1)
        return self.wait(f"deployment {deployment} at revision {revision}", done, 120)


class Operator:
    """`dgm run` as a subprocess watching one namespace; kill() is SIGKILL. With ``peering``
    it is one replica of several (kopf peering through the KopfPeering of that name)."""

    def __init__(self, cluster, namespace, log_path, *, peering: str | None = None):
        self.cluster, self.ns, self.log_path, self.peering = cluster, namespace, log_path, peering
        self.proc = None
        self.start_env: dict[str, str] = {}
        self.metrics_port, self.readiness_port = free_port(), free_port()

    def start(self):
        # agents' status follows their candidates within 1 s (5 s by default): quicker tests
        env = dict(self.cluster.env, DGM_POKE_SECONDS="1", **self.start_env)
        log = open(self.log_path, "a")
        args = [sys.executable, "-m", "dgm_operator.cli", "run", "-n", self.ns, "--liveness", "",
                "--metrics-port", str(self.metrics_port),
                "--readiness", f"http://127.0.0.1:{self.readiness_port}/readyz"]
        if self.peering:
            args += ["--peering", self.peering]
        self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def readiness(self) -> dict | None:
        """The readiness answer ({"ready": ..., "role": ...}), None while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.readiness_port}/readyz", timeout=2) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 503: alive, not the replica that acts
            return json.loads(exc.read())
        except OSError:
            return None

    def writes(self) -> float:
        """The API writes it sent so far (dgm_api_writes_total)."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("dgm_api_writes_total{"))

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
