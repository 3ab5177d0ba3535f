"""`dgm bench lifecycle`: decision latency of the operator on the dev cluster.

Starts a dev cluster (or uses $KUBECONFIG with --existing), installs the CRDs, runs
`dgm run` as a subprocess, and creates candidates for the toy agent one at a time. A
watcher in this process stamps, on one monotonic clock:

* candidate create call -> its evaluation Job's ADDED event   ("create -> Job")
* the Job's Complete/Failed event -> the candidate's terminal-phase event ("Job done -> phase")

and counts the operator's write requests per candidate from its `dgm_api_writes_total`.

Both include the watch delivery delay of the API server, so they are upper bounds of
what the operator itself takes. A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import socket
import tempfile
import threading
import urllib.request
import time
from pathlib import Path

from kubernetes import client, config, watch

from dgm_operator.controller.jobs import is_finished
from dgm_operator.api.constants import AGENTS, API_VERSION, CANDIDATES, DECIDED_PHASES, GROUP, VERSION

from ..toy_agent import toy_objects



def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class Watcher(threading.Thread):
    def __init__(self, api: client.ApiClient, namespace: str, plural: str | None):
        super().__init__(daemon=True)
        self.api, self.ns, self.plural = api, namespace, plural
        self.times: dict[str, float] = {}
        self.stop = False

    def run(self) -> None:
        w = watch.Watch()
        if self.plural:
            fn, args = client.CustomObjectsApi(self.api).list_namespaced_custom_object, (GROUP, VERSION, self.ns, self.plural)
        else:
            fn, args = client.BatchV1Api(self.api).list_namespaced_job, (self.ns,)
        while not self.stop:
            for ev in w.stream(fn, *args, timeout_seconds=5):
                obj = ev["object"]
                obj = obj if isinstance(obj, dict) else self.api.sanitize_for_serialization(obj)
                name, now = obj["metadata"]["name"], time.monotonic()
                if self.plural:
                    if (obj.get("status") or {}).get("phase") in DECIDED_PHASES:
                        self.times.setdefault(name, now)
                else:
                    self.times.setdefault("added:" + name, now)
                    if is_finished(obj):
                        self.times.setdefault("done:" + name, now)


def _writes(port: int) -> dict[str, float]:
    """dgm_api_writes_total by 'verb kind', scraped from the operator."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("dgm_api_writes_total{"):
            labels, value = line[len("dgm_api_writes_total{"):].split("} ")
            parts = dict(item.split("=", 1) for item in labels.split(","))
            out[f"{parts['verb'].strip(chr(34))} {parts['kind'].strip(chr(34))}"] = float(value)
    return out


def run(n: int, kubeconfig: str, repo_crds: Path) -> dict:
    env = dict(os.environ, KUBECONFIG=kubeconfig)
    kubectl = ["kubectl"]
    ns = f"bench-{int(time.time())}"
    subprocess.run(kubectl + ["apply", "--server-side", "-f", str(repo_crds)], env=env, check=True, capture_output=True)
    subprocess.run(kubectl + ["wait", "--for=condition=Established", "crd/improvementcandidates.dgm.io"], env=env, check=True, capture_output=True)
    subprocess.run(kubectl + ["create", "namespace", ns], env=env, check=True, capture_output=True)
    while subprocess.run(kubectl + ["get", "sa", "default", "-n", ns], env=env, capture_output=True).returncode:
        time.sleep(0.1)
    items = toy_objects(ns, settings={"accuracy": 0.5}, max_concurrent=n)
    subprocess.run(kubectl + ["apply", "-f", "-"], env=env, check=True, capture_output=True,
                   input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}).encode())
    log = open(Path(tempfile.gettempdir()) / f"{ns}-operator.log", "w")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    op = subprocess.Popen([sys.executable, "-m", "dgm_operator.cli", "run", "-n", ns, "--liveness", "", "--metrics-port", str(port)],
                          env=env, stdout=log, stderr=subprocess.STDOUT)
    api = config.new_client_from_config(config_file=kubeconfig)
    custom = client.CustomObjectsApi(api)
    try:
        while True:  # the agent's baseline first
            st = custom.get_namespaced_custom_object(GROUP, VERSION, ns, AGENTS, "toy").get("status") or {}
            if (st.get("baseline") or {}).get("metrics"):
                break
            time.sleep(0.2)
        cands, jobs = Watcher(api, ns, CANDIDATES), Watcher(api, ns, None)
        cands.start(); jobs.start()
        time.sleep(1.0)
        writes_before = _writes(port)
        created: dict[str, float] = {}
        for i in range(n):
            name = f"b{i:03d}"
            body = {"apiVersion": API_VERSION, "kind": "ImprovementCandidate",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"agentRef": "toy", "improvementType": "ParameterTuning", "description": "bench",
                             "changes": {"settings.json": json.dumps({"accuracy": 0.4})}}}
            created[name] = time.monotonic()
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, CANDIDATES, body)
            deadline = time.monotonic() + 60
            while name not in cands.times and time.monotonic() < deadline:
                time.sleep(0.02)
        to_job = [jobs.times[f"added:{c}-eval-full"] - t for c, t in created.items() if f"added:{c}-eval-full" in jobs.times]
        to_phase = [cands.times[c] - jobs.times[f"done:{c}-eval-full"] for c in created
                    if c in cands.times and f"done:{c}-eval-full" in jobs.times]
        cands.stop = jobs.stop = True
        time.sleep(1.0)
        writes_after = _writes(port)
        per_kind = {k: round((writes_after.get(k, 0) - writes_before.get(k, 0)) / n, 2) for k in writes_after}
        return {"candidates": n, "writes_per_candidate": per_kind,
                "writes_per_candidate_total": round(sum(per_kind.values()), 2),
                "create_to_job": {"p50": _pct(to_job, 0.5), "p95": _pct(to_job, 0.95), "max": max(to_job), "n": len(to_job)},
                "job_done_to_phase": {"p50": _pct(to_phase, 0.5), "p95": _pct(to_phase, 0.95), "max": max(to_phase), "n": len(to_phase)}}
    finally:
        op.terminate()
        op.wait(15)
        subprocess.run(kubectl + ["delete", "namespace", ns, "--wait=false"], env=env, capture_output=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dgm bench lifecycle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--existing", action="store_true", help="use the cluster of $KUBECONFIG (kubectl on PATH)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from ..paths import crds_file
    repo_crds = crds_file()
    from ..devcluster import cluster_for_benchmark
    with cluster_for_benchmark(args.existing, "dgm-bench-") as kubeconfig:
        res = run(args.candidates, kubeconfig, repo_crds)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{res['candidates']} candidates, one at a time (seconds, watch-observed)")
        for key, label in (("create_to_job", "candidate created -> Job created"),
                           ("job_done_to_phase", "Job finished -> terminal phase")):
            r = res[key]
            print(f"  {label:<34} p50 {r['p50']:.3f}  p95 {r['p95']:.3f}  max {r['max']:.3f}  (n={r['n']})")
        print(f"  API writes per candidate: {res['writes_per_candidate_total']} "
              f"({', '.join(f'{k} {v}' for k, v in sorted(res['writes_per_candidate'].items()) if v)})")
        print("  (minimum for this path, Proposed -> Testing -> Rejected: workspace ConfigMap, Job, 2 status"
              " writes = 4; with the design's Event per transition = 6)")
    return 0
