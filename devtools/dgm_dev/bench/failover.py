"""`dgm bench failover`: how long two replicas of the operator take to hand over.

On the dev cluster (or $KUBECONFIG with --existing), two `dgm run --peering` processes
share one KopfPeering: the first acts, the second stands by. Each round:

1. a candidate whose evaluation takes a few seconds is created, and once it is Testing
2. the active replica is killed (SIGKILL by default: no goodbye, its peering record
   has to expire);
3. a probe candidate is created at once.

It then stamps, on one monotonic clock:

* kill -> the standby's /readyz answers 200 (it acts): the handover;
* kill -> the probe's evaluation Job exists (the service is back);
* kill -> the in-flight candidate decided.

A new standby is started before the next round. Checks that nothing was lost or duplicated
(one Job per candidate, every candidate decided) are reported, not asserted: this is a
benchmark. The integration test tests/integration/test_failover.py asserts them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from dgm_operator.api.constants import AGENTS, API_VERSION, CANDIDATES, DECIDED_PHASES, GROUP, VERSION

from ..toy_agent import toy_objects
from .scale import _established

PEERING = "dgm-bench"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replica:
    def __init__(self, ns: str, env: dict[str, str], log_dir: Path, name: str, lifetime: int) -> None:
        self.name, self.port = name, _port()
        self.log_path = log_dir / f"{ns}-{name}.log"
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dgm_operator.cli", "run", "-n", ns, "--liveness", "", "--metrics-port", "0",
             "--readiness", f"http://127.0.0.1:{self.port}/readyz", "--peering", PEERING],
            env=dict(env, DGM_PEERING_LIFETIME=str(lifetime)), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def role(self) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as resp:
                return str(json.loads(resp.read())["role"])
        except urllib.error.HTTPError as exc:
            return str(json.loads(exc.read())["role"])
        except OSError:
            return None

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)


def _wait(what: str, fn: Any, timeout: float, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _dist(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"p50": round(statistics.median(values), 3), "max": round(max(values), 3),
            "min": round(min(values), 3), "n": len(values)}


def run(args: argparse.Namespace, kubeconfig: str, repo_crds: Path, peering_crds: Path) -> dict[str, Any]:
    from kubernetes import client, config

    env = dict(os.environ, KUBECONFIG=kubeconfig)
    kubectl = ["kubectl"]
    ns = f"failover-{int(time.time())}"
    api = config.new_client_from_config(config_file=kubeconfig)
    custom, batch = client.CustomObjectsApi(api), client.BatchV1Api(api)
    for crds in (repo_crds, peering_crds):
        subprocess.run(kubectl + ["apply", "--server-side", "--force-conflicts", "-f", str(crds)], env=env,
                       check=True, capture_output=True)
    _established(kubectl, env, "crd/improvementcandidates.dgm.io", "crd/dgmagents.dgm.io", "crd/kopfpeerings.kopf.dev")
    subprocess.run(kubectl + ["create", "namespace", ns], env=env, check=True, capture_output=True)
    while subprocess.run(kubectl + ["get", "sa", "default", "-n", ns], env=env, capture_output=True).returncode:
        time.sleep(0.1)
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING, "namespace": ns}}
    items = [peering, *toy_objects(ns, settings={"accuracy": 0.5}, max_concurrent=4, auto_apply=False)]
    subprocess.run(kubectl + ["apply", "-f", "-"], env=env, check=True, capture_output=True,
                   input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}).encode())
    log_dir = Path(args.log_dir or tempfile.gettempdir())
    replicas: list[Replica] = []

    def start(name: str) -> Replica:
        replica = Replica(ns, env, log_dir, name, args.lifetime)
        replicas.append(replica)
        return replica

    def phase(name: str) -> str | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, CANDIDATES, name)
        return (obj.get("status") or {}).get("phase")

    def create(name: str, settings: dict[str, Any]) -> None:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, CANDIDATES, {
            "apiVersion": API_VERSION, "kind": "ImprovementCandidate", "metadata": {"name": name, "namespace": ns},
            "spec": {"agentRef": "toy", "improvementType": "ParameterTuning", "description": "bench failover",
                     "changes": {"settings.json": json.dumps(settings)}}})

    def job_exists(name: str) -> bool:
        return bool(batch.list_namespaced_job(ns, label_selector=f"dgm.io/candidate={name}").items)

    res: dict[str, Any] = {"namespace": ns, "rounds": args.rounds, "lifetime_seconds": args.lifetime,
                           "signal": args.signal}
    handover, to_job, to_decided, rounds = [], [], [], []
    try:
        active = start("r0")
        _wait("the first replica acts", lambda: active.role() == "active", 90)
        _wait("the agent's baseline", lambda: ((custom.get_namespaced_custom_object(
            GROUP, VERSION, ns, AGENTS, "toy").get("status") or {}).get("baseline") or {}).get("metrics"), 180, 0.5)
        standby = start("r1")
        _wait("the second replica stands by", lambda: standby.role() == "standby", 90)
        sig = signal.SIGKILL if args.signal == "kill" else signal.SIGTERM
        for i in range(args.rounds):
            inflight, probe = f"inflight-{i}", f"probe-{i}"
            create(inflight, {"accuracy": 0.4, "sleep": args.eval_seconds})
            _wait(f"{inflight} Testing", lambda: phase(inflight) == "Testing", 60)
            time.sleep(args.kill_after)
            t_kill = time.monotonic()
            active.signal(sig)
            create(probe, {"accuracy": 0.4})
            t_ready = _wait("the standby acts", lambda: standby.role() == "active" and time.monotonic(), 120, 0.02)
            t_job = _wait(f"{probe}'s Job", lambda: job_exists(probe) and time.monotonic(), 120, 0.05)
            t_done = _wait(f"{inflight} decided", lambda: phase(inflight) in DECIDED_PHASES and time.monotonic(),
                           180, 0.1)
            handover.append(t_ready - t_kill)
            to_job.append(t_job - t_kill)
            to_decided.append(t_done - t_kill)
            print(f"[{time.strftime('%H:%M:%S')}] round {i + 1}: handover {t_ready - t_kill:.2f}s, probe Job after "
                  f"{t_job - t_kill:.2f}s, in-flight candidate decided after {t_done - t_kill:.2f}s",
                  file=sys.stderr, flush=True)
            rounds.append({"inflight": inflight, "probe": probe})
            active.proc.wait(20)
            active, standby = standby, start(f"r{i + 2}")
            _wait("a new standby", lambda: standby.role() == "standby", 90)
        _wait("every candidate decided", lambda: all(phase(c) in DECIDED_PHASES
                                                     for r in rounds for c in r.values()), 180, 0.5)
        jobs: dict[str, int] = {}
        for r in rounds:
            for c in r.values():
                jobs[c] = len(batch.list_namespaced_job(ns, label_selector=f"dgm.io/candidate={c}").items)
        res["jobs_per_candidate"] = sorted(set(jobs.values()))
        res["all_decided"] = True
    finally:
        for replica in replicas:
            replica.stop()
        res["logs"] = str(log_dir / f"{ns}-r*.log")
        if not args.keep_namespace:
            subprocess.run(kubectl + ["delete", "namespace", ns, "--wait=false"], env=env, capture_output=True)
    res["handover"] = _dist(handover)
    res["kill_to_probe_job"] = _dist(to_job)
    res["kill_to_inflight_decided"] = _dist(to_decided)
    return res


def render(res: dict[str, Any]) -> str:
    out = [f"{res['rounds']} rounds, two replicas (kopf peering, lifetime {res['lifetime_seconds']}s), "
           f"the active one killed with SIG{res['signal'].upper()} while a candidate is Testing (seconds)"]
    for key, label in (("handover", "kill -> standby ready (acts)"),
                       ("kill_to_probe_job", "kill -> a new candidate's Job"),
                       ("kill_to_inflight_decided", "kill -> in-flight candidate decided")):
        r = res.get(key) or {}
        if r.get("n"):
            out.append(f"  {label:<38} p50 {r['p50']:.2f}  min {r['min']:.2f}  max {r['max']:.2f}  (n={r['n']})")
    out.append(f"  Jobs per candidate: {res.get('jobs_per_candidate')} (1 = none duplicated); every candidate "
               f"decided: {res.get('all_decided', False)}")
    out.append("  goal: failover within 30 s")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dgm bench failover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lifetime", type=int, default=20, help="DGM_PEERING_LIFETIME of the replicas (seconds)")
    parser.add_argument("--signal", choices=("kill", "term"), default="kill",
                        help="how the active replica dies: SIGKILL (its record expires) or SIGTERM (it says goodbye)")
    parser.add_argument("--eval-seconds", type=float, default=4.0, help="how long the in-flight evaluation takes")
    parser.add_argument("--kill-after", type=float, default=0.5, help="seconds after Testing to kill the active one")
    parser.add_argument("--log-dir", default=None)
    parser.add_argument("--keep-namespace", action="store_true")
    parser.add_argument("--existing", action="store_true", help="use the cluster of $KUBECONFIG (kubectl on PATH)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from ..paths import crds_file, repo_file
    from ..devcluster import cluster_for_benchmark
    peering_crds = repo_file("crds", "peering.kopf.dev.yaml")  # kopf's, not generated from the models
    with cluster_for_benchmark(args.existing, "dgm-bench-failover-") as kubeconfig:
        res = run(args, kubeconfig, crds_file(), peering_crds)
    print(json.dumps(res, indent=2) if args.json else render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
