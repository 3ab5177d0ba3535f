"""`dgm bench scale`: memory and responsiveness of one operator replica under load.

The design's bar: "one operator replica holds 100 agents and 5,000 candidates under
200 MiB RSS without lag". This benchmark builds that load on the dev cluster (or on
$KUBECONFIG with --existing) and measures it:

* N DGMAgents (agent-000..), each with its own ConfigMap and a Deployment with
  ``replicas: 0`` (the dev node runs pods as host processes; 100 long-running agent pods
  would swamp a small machine and add nothing the operator looks at), a large
  ``improvementIntervalMinutes`` (no proposals on their own) and ``archive.maxCandidates``
  above the per-agent count (nothing is pruned). Each agent's baseline is one short toy
  evaluation Job (``toy_agent.TOY_BENCH``), run by the operator once it starts; or, with
  ``--baselines seed`` (the default above 100 agents: a thousand baseline Jobs do not fit a
  2-core machine), it is SEEDED: the revision-1 snapshot and a measured baseline are written
  into the agent's status before the operator starts, as a previous run of the operator
  would have left them, and the output says so.
* M ImprovementCandidates spread over the agents, created *before* the operator starts and
  set through the status subresource to a terminal phase (Rejected/InsufficientImprovement
  with a score, some Failed), so the operator's first look sees them finished and no
  evaluation Job runs for them.

Before the operator starts, a short background window counts what the API server serves
without it. Then it starts `dgm run` as a subprocess, waits for the initial listing (every
agent has its baseline and counts its whole archive), and over a measurement window at
rest samples the operator's RSS (VmRSS of the process and its children, /proc) and CPU
time, the API server's request counters (all clients, and those on the resources the
operator uses, against the background window), and the operator's own read and write
counters. "Without lag" is measured under that load, watch-observed on one monotonic
clock: candidate created -> its Job created, Job finished -> terminal phase (as
`dgm bench lifecycle`), `dgm.io/propose` annotation -> the operator's new candidate; and the
agents' schedule keeping pace: the resync passes it started in the window against the
agents' due rate (agents / resync period), and how late they started
(`dgm_agent_pass_lag_seconds`).

A benchmark, not a test: nothing here asserts a number.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

from dgm_operator.controller.jobs import is_finished
from dgm_operator.api.constants import (AGENTS, ANNOTATION_PROPOSE, CANDIDATES, FINAL_PHASES, GROUP, LABEL_AGENT,
                                        VERSION)

from ..toy_agent import toy_objects

LABEL_BENCH = f"{GROUP}/bench"
BASELINE_ACCURACY = 0.5
SEED_ABOVE = 100  # agents: above this many, --baselines auto seeds them
# what the operator reads and writes (the API server's counters of these, at rest, are mostly its own)
OPERATOR_RESOURCES = {"dgmagents", "improvementcandidates", "jobs", "configmaps", "deployments", "pods", "events",
                      "networkpolicies", "kopfpeerings", "clusterkopfpeerings"}


# ================================================================ pure helpers
def agent_names(n: int) -> list[str]:
    width = max(3, len(str(n - 1)))
    return [f"agent-{i:0{width}d}" for i in range(n)]


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` items over ``parts`` buckets, the first ones one larger when it does not divide."""
    if parts <= 0:
        return []
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def agent_objects(namespace: str, name: str, *, max_candidates: int) -> list[dict]:
    """ConfigMap, Deployment (replicas 0) and DGMAgent of one bench agent, from the toy agent."""
    cm, dep, agent = copy.deepcopy(toy_objects(namespace, settings={"accuracy": BASELINE_ACCURACY},
                                               max_concurrent=4, max_candidates=max_candidates))
    config = f"{name}-config"
    cm["metadata"]["name"] = config
    dep["metadata"]["name"] = name
    dep["spec"]["replicas"] = 0
    dep["spec"]["selector"] = {"matchLabels": {"app": name}}
    pod = dep["spec"]["template"]
    pod["metadata"]["labels"] = {"app": name}
    pod["spec"]["volumes"][0]["configMap"]["name"] = config
    agent["metadata"]["name"] = name
    spec = agent["spec"]
    spec["target"] = {"deployment": name, "container": "agent", "configMap": config}
    spec["policy"]["improvementIntervalMinutes"] = 10 ** 6  # no proposals unless asked
    spec["policy"]["autoApply"] = False
    return [cm, dep, agent]


def finished_candidate(namespace: str, agent: str, index: int, rng: random.Random,
                       created_at: str = "2025-01-01T00:00:00Z") -> tuple[dict, dict]:
    """(body, status) of a candidate that has already been evaluated: about 90% Rejected
    (InsufficientImprovement, with metrics and a score), the rest Failed. The status is
    shaped like the operator's own, so the objects weigh what real ones weigh."""
    name = f"{agent}-c{index:03d}"
    accuracy = round(rng.uniform(0.0, BASELINE_ACCURACY), 4)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ImprovementCandidate",
            "metadata": {"name": name, "namespace": namespace, "labels": {LABEL_AGENT: agent, LABEL_BENCH: "preloaded"}},
            "spec": {"agentRef": agent, "improvementType": "ParameterTuning",
                     "description": f"settings.json: accuracy -> {accuracy}",
                     "changes": {"settings.json": json.dumps({"accuracy": accuracy})}}}
    cond = lambda t, s, r, m: {"type": t, "status": s, "reason": r, "message": m,  # noqa: E731
                               "observedGeneration": 1, "lastTransitionTime": created_at}
    safety = cond("SafetyChecked", "True", "SafetyPassed", "safety score 1.00 >= threshold 0.70 (0 findings)")
    job = f"{name}-eval-full"
    if rng.random() < 0.9:
        score = round((accuracy - BASELINE_ACCURACY) / BASELINE_ACCURACY, 4)
        metric = lambda v: [{"name": "accuracy", "value": v, "timestamp": created_at}]  # noqa: E731
        status = {"phase": "Rejected", "reason": "InsufficientImprovement",
                  "message": f"improvement {score:+.4f} < minImprovement 0.0100",
                  "conditions": [safety, cond("Evaluated", "True", "EvaluationSucceeded", f"stage full: Job {job}")],
                  "safety": {"score": 1.0, "findings": []},
                  "validation": {"jobName": job, "stage": "full", "stagesPassed": ["full"],
                                 "metricsBefore": metric(BASELINE_ACCURACY), "metricsAfter": metric(accuracy),
                                 "stageResults": [{"name": "full", "metrics": metric(accuracy), "improvementScore": score}],
                                 "improvementScore": score, "repeats": 1, "durationSeconds": 1.0,
                                 "tests": {"passed": 1}, "startedAt": created_at, "finishedAt": created_at}}
    else:
        status = {"phase": "Failed", "reason": "EvaluationFailed", "message": f"Job {job} failed: exit code 1",
                  "conditions": [safety, cond("Evaluated", "False", "EvaluationFailed", f"Job {job} failed")],
                  "safety": {"score": 1.0, "findings": []},
                  "validation": {"jobName": job, "stage": "full", "stagesPassed": [], "repeats": 1,
                                 "startedAt": created_at, "finishedAt": created_at}}
    return body, status


def seeded_status(agent: str, image: str, accuracy: float = BASELINE_ACCURACY,
                  when: str = "2025-01-01T00:00:00Z") -> dict:
    """The status a previous run of the operator leaves on a ready agent: revision 1 (its
    snapshot ConfigMap is created alongside) and the baseline of revision 1, measured."""
    metrics = [{"name": "accuracy", "value": accuracy, "timestamp": when}]
    return {"revisions": [{"revision": 1, "snapshot": f"{agent}-rev-1", "image": image, "appliedAt": when}],
            "currentRevision": 1,
            "baseline": {"revision": 1, "metrics": metrics, "stages": [{"name": "full", "metrics": metrics}],
                         "score": 0.0, "jobName": f"{agent}-baseline-r1-full", "measuredAt": when}}


def snapshot_configmap(namespace: str, agent: str, data: dict) -> dict:
    """The revision-1 snapshot of a seeded agent, as the operator makes it."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "immutable": True,
            "metadata": {"name": f"{agent}-rev-1", "namespace": namespace,
                         "labels": {LABEL_AGENT: agent, f"{GROUP}/revision": "1", f"{GROUP}/role": "revision",
                                    "app.kubernetes.io/managed-by": "dgm-operator"}},
            "data": dict(data)}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def dist(values: list[float]) -> dict[str, Any]:
    return {"p50": pct(values, 0.5), "p95": pct(values, 0.95), "max": max(values) if values else None, "n": len(values)}


def parse_proc_status(text: str) -> dict[str, int]:
    """VmRSS/VmHWM/... (kB) of a /proc/<pid>/status text."""
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key.startswith("Vm") and rest.strip().endswith("kB"):
            out[key] = int(rest.split()[0])
    return out


def parse_proc_stat_cpu(text: str) -> int:
    """utime + stime (clock ticks) of a /proc/<pid>/stat text (the comm field may hold spaces)."""
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def rss_summary(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """Steady state (median), peak, first/last and the growth rate (MiB per minute, least
    squares) of (seconds, MiB) samples."""
    if not samples:
        return {"n": 0}
    ts, vs = [t for t, _ in samples], [v for _, v in samples]
    slope = 0.0
    if len(samples) > 1 and max(ts) > min(ts):
        mt, mv = statistics.fmean(ts), statistics.fmean(vs)
        slope = sum((t - mt) * (v - mv) for t, v in samples) / sum((t - mt) ** 2 for t in ts) * 60
    return {"steady_mib": round(statistics.median(vs), 1), "peak_mib": round(max(vs), 1),
            "first_mib": round(vs[0], 1), "last_mib": round(vs[-1], 1),
            "growth_mib_per_min": round(slope, 2), "n": len(samples), "seconds": round(ts[-1] - ts[0], 1)}


def histogram_quantile(buckets: dict[float, float], q: float) -> float | None:
    """The ``q`` quantile of a Prometheus histogram from its cumulative buckets
    ({upper bound: count}, +Inf included), as PromQL's histogram_quantile does it: linear
    inside the bucket that holds it."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return bounds[-1]


def parse_histogram(text: str, metric: str, where: dict[str, str] | None = None) -> dict[float, float]:
    """Cumulative bucket counts ({le: count}) of ``metric``, summed over the series that
    match ``where``."""
    out: dict[float, float] = {}
    prefix = metric + "_bucket{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels, _, value = line[len(prefix):].rpartition("} ")
        parts = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels))
        if where and any(parts.get(k) != v for k, v in where.items()):
            continue
        le = float("inf") if parts.get("le") == "+Inf" else float(parts.get("le", "nan"))
        out[le] = out.get(le, 0.0) + float(value)
    return out


def schedule_pace(passes: dict[str, float], agents: int, resync: float, seconds: float,
                  lag_buckets: dict[float, float]) -> dict[str, Any]:
    """Whether the agents' schedule keeps pace at rest: resync passes per second started in
    the window against what ``agents`` agents with a ``resync`` period owe (a ratio well
    below 1 means it lags), with the lag's p50/p95 from its histogram (bucket deltas)."""
    rate = passes.get("resync", 0.0) / seconds if seconds > 0 else 0.0
    due = agents / resync if resync > 0 else 0.0
    return {"passes": {k: int(v) for k, v in sorted(passes.items())},
            "resync_per_s": round(rate, 3), "resync_due_per_s": round(due, 3),
            "ratio": round(rate / due, 3) if due else None,
            "lag_p50_s": histogram_quantile(lag_buckets, 0.5), "lag_p95_s": histogram_quantile(lag_buckets, 0.95)}


def parse_prometheus(text: str, metric: str, keys: tuple[str, ...]) -> dict[str, float]:
    """Sum of ``metric`` samples grouped by the given label keys ("v1 v2 ..." -> value)."""
    out: dict[str, float] = {}
    prefix = metric + "{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels, _, value = line[len(prefix):].rpartition("} ")
        parts = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels))
        key = " ".join(parts.get(k, "") for k in keys)
        out[key] = out.get(key, 0.0) + float(value)
    return out


def diff_counters(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] - before.get(k, 0.0) > 0}


# ================================================================ the cluster side
def _proc_tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except OSError:
            pass
    return out


class Sampler(threading.Thread):
    """RSS (MiB, the process tree) and CPU seconds of the operator every ``every`` seconds."""

    def __init__(self, pid: int, every: float = 2.0):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float, float]] = []  # (monotonic, rss MiB, cpu seconds)
        self.hwm_kib = 0
        self.stop = threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        rss, cpu = 0, 0
        for p in _proc_tree(self.pid):
            try:
                st = parse_proc_status(Path(f"/proc/{p}/status").read_text())
                cpu += parse_proc_stat_cpu(Path(f"/proc/{p}/stat").read_text())
            except (OSError, ValueError):
                continue
            rss += st.get("VmRSS", 0)
            if p == self.pid:
                self.hwm_kib = max(self.hwm_kib, st.get("VmHWM", 0))
        if rss:
            self.samples.append((time.monotonic(), rss / 1024, cpu / self.tick))

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.every)

    def between(self, t0: float, t1: float) -> list[tuple[float, float, float]]:
        return [s for s in self.samples if t0 <= s[0] <= t1]


class Watcher(threading.Thread):
    """Watch-observed times of candidates (first seen, terminal) and Jobs (added, finished).
    Lists once and then follows the resourceVersion, so it does not re-list thousands of
    objects every few seconds."""

    def __init__(self, api, namespace: str, kind: str):
        super().__init__(daemon=True)
        self.api, self.ns, self.kind = api, namespace, kind
        self.times: dict[str, float] = {}
        self.phases: dict[str, str] = {}
        self.stop = False

    def run(self) -> None:
        from kubernetes import client, watch
        from kubernetes.client.rest import ApiException
        if self.kind == "candidates":
            fn = client.CustomObjectsApi(self.api).list_namespaced_custom_object
            args = (GROUP, VERSION, self.ns, CANDIDATES)
        else:
            fn, args = client.BatchV1Api(self.api).list_namespaced_job, (self.ns,)
        rv = None
        while not self.stop:
            try:
                if rv is None:
                    listed = fn(*args, limit=1)
                    rv = (listed["metadata"] if isinstance(listed, dict) else
                          self.api.sanitize_for_serialization(listed)["metadata"])["resourceVersion"]
                w = watch.Watch()
                for ev in w.stream(fn, *args, resource_version=rv, timeout_seconds=60, allow_watch_bookmarks=True):
                    obj = ev["object"]
                    obj = obj if isinstance(obj, dict) else self.api.sanitize_for_serialization(obj)
                    rv = obj["metadata"].get("resourceVersion") or rv
                    if ev["type"] == "BOOKMARK":
                        continue
                    now, name = time.monotonic(), obj["metadata"]["name"]
                    if self.kind == "candidates":
                        self.times.setdefault("seen:" + name, now)
                        phase = (obj.get("status") or {}).get("phase")
                        if phase in FINAL_PHASES:
                            self.times.setdefault("terminal:" + name, now)
                        if phase in FINAL_PHASES or phase == "Validated":
                            self.times.setdefault("settled:" + name, now)
                            self.phases[name] = phase
                    else:
                        self.times.setdefault("added:" + name, now)
                        if is_finished(obj):
                            self.times.setdefault("done:" + name, now)
                    if self.stop:
                        break
            except ApiException as exc:
                if exc.status == 410:
                    rv = None
                else:
                    time.sleep(0.5)
            except Exception:  # a dropped connection: resume from rv
                time.sleep(0.2)

    def wait_for(self, key: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while key not in self.times and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.times.get(key)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _apiserver_requests(api) -> dict[str, float]:
    """apiserver_request_total by 'VERB resource[/subresource]' (needs access to /metrics)."""
    try:
        headers = {}
        token = (api.configuration.api_key or {}).get("authorization") or (api.configuration.api_key or {}).get("BearerToken")
        if token:
            headers["Authorization"] = token
        resp = api.rest_client.request("GET", api.configuration.host + "/metrics", headers=headers,
                                       _request_timeout=30)
        data = resp.read() if hasattr(resp, "read") else resp.data
        text = (data or b"").decode() if isinstance(data, bytes) else (data or "")
    except Exception as exc:  # noqa: BLE001 - optional: the numbers are left out
        _log(f"API server /metrics not readable: {exc}")
        return {}
    raw = parse_prometheus(text, "apiserver_request_total", ("verb", "resource", "subresource"))
    return {" ".join(k.split()[:1] + ["/".join(k.split()[1:])]): v for k, v in raw.items()}


def _operator_metrics(port: int) -> str:
    try:
        return str(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())
    except OSError:
        return ""


def _operator_writes(port: int) -> dict[str, float]:
    return parse_prometheus(_operator_metrics(port), "dgm_api_writes_total", ("verb", "kind"))


def seed_baselines(custom: Any, kubectl: list[str], env: dict[str, str], ns: str, agents: list[str],
                   threads: int) -> None:
    """Each agent's revision-1 snapshot and measured baseline, written before the operator
    starts (see the module's docstring)."""
    cm, dep, _ = toy_objects(ns, settings={"accuracy": BASELINE_ACCURACY})
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    snapshots = [snapshot_configmap(ns, a, cm["data"]) for a in agents]
    for i in range(0, len(snapshots), 150):
        subprocess.run(kubectl + ["apply", "-f", "-"], env=env, check=True, capture_output=True,
                       input=json.dumps({"apiVersion": "v1", "kind": "List", "items": snapshots[i:i + 150]}).encode())

    def one(agent: str) -> None:
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, AGENTS, agent,
                                                     {"status": seeded_status(agent, image)})

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, agents))


def _established(kubectl: list[str], env: dict[str, str], *crds: str, timeout: float = 120.0) -> None:
    """Wait for CRDs to be Established; a fresh API server may not serve them for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(kubectl + ["wait", "--for=condition=Established", "--timeout=30s", *crds], env=env,
                              capture_output=True, text=True)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"CRDs not Established: {proc.stderr.strip()}")
        _log(f"waiting for the CRDs: {proc.stderr.strip()}")
        time.sleep(1.0)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def run(args: argparse.Namespace, kubeconfig: str, repo_crds: Path) -> dict:
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    t_start = time.monotonic()
    env = dict(os.environ, KUBECONFIG=kubeconfig)
    kubectl = ["kubectl"]
    ns = f"scale-{int(time.time())}"
    res: dict[str, Any] = {"agents": args.agents, "candidates": args.candidates, "namespace": ns,
                           "window_seconds": args.window, "cpus": os.cpu_count(),
                           "load_at_start": _loadavg()}
    phases: dict[str, float] = {}

    api = config.new_client_from_config(config_file=kubeconfig)
    api.configuration.connection_pool_maxsize = args.threads + 4
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = args.threads + 4
    custom = client.CustomObjectsApi(api)

    subprocess.run(kubectl + ["apply", "--server-side", "-f", str(repo_crds)], env=env, check=True, capture_output=True)
    _established(kubectl, env, "crd/improvementcandidates.dgm.io", "crd/dgmagents.dgm.io")
    subprocess.run(kubectl + ["create", "namespace", ns], env=env, check=True, capture_output=True)
    while subprocess.run(kubectl + ["get", "sa", "default", "-n", ns], env=env, capture_output=True).returncode:
        time.sleep(0.1)

    # -- agents ---------------------------------------------------------------------------
    t0 = time.monotonic()
    agents = agent_names(args.agents)
    per_agent = split_evenly(args.candidates, len(agents))
    max_cands = max(50, max(per_agent, default=0) + 20)
    items = [o for a in agents for o in agent_objects(ns, a, max_candidates=max_cands)]
    for i in range(0, len(items), 150):
        subprocess.run(kubectl + ["apply", "-f", "-"], env=env, check=True, capture_output=True,
                       input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items[i:i + 150]}).encode())
    phases["create_agents"] = time.monotonic() - t0
    _log(f"{len(agents)} agents in {phases['create_agents']:.1f}s")
    seed = args.baselines == "seed" or (args.baselines == "auto" and args.agents > SEED_ABOVE)
    res["baselines"] = "seeded" if seed else "run"
    if seed:
        t0 = time.monotonic()
        seed_baselines(custom, kubectl, env, ns, agents, args.threads)
        phases["seed_baselines"] = time.monotonic() - t0
        _log(f"baselines SEEDED as status of {len(agents)} agents in {phases['seed_baselines']:.1f}s "
             "(no baseline Job runs)")
    _log(f"creating {args.candidates} finished candidates")

    # -- finished candidates, before the operator starts ----------------------------------
    t0 = time.monotonic()
    rng = random.Random(args.seed)
    work = [finished_candidate(ns, a, i, rng) for a, k in zip(agents, per_agent) for i in range(k)]
    errors: list[str] = []

    def make(item: tuple[dict, dict]) -> None:
        body, status = item
        for attempt in range(5):
            try:
                try:
                    custom.create_namespaced_custom_object(GROUP, VERSION, ns, CANDIDATES, body)
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, CANDIDATES,
                                                             body["metadata"]["name"], {"status": status})
                return
            except Exception as exc:  # noqa: BLE001 - retried, then recorded
                if attempt == 4:
                    errors.append(f"{body['metadata']['name']}: {exc}")
                time.sleep(0.5 * (attempt + 1))

    done = 0
    with ThreadPoolExecutor(args.threads) as pool:
        for _ in pool.map(make, work):
            done += 1
            if done % 1000 == 0:
                _log(f"  {done} candidates ({done / (time.monotonic() - t0):.0f}/s)")
    phases["create_candidates"] = time.monotonic() - t0
    res["candidate_create_errors"] = len(errors)
    if errors:
        _log(f"{len(errors)} candidates failed, e.g. {errors[0]}")
    _log(f"{len(work)} candidates in {phases['create_candidates']:.1f}s "
         f"({len(work) / phases['create_candidates']:.0f}/s, create + status patch each)")

    # -- the background: what the API server serves without the operator ------------------
    cands, jobs = Watcher(api, ns, "candidates"), Watcher(api, ns, "jobs")
    cands.start()
    jobs.start()
    if args.background > 0:
        b0, breq0 = time.monotonic(), _apiserver_requests(api)
        _log(f"background window without the operator: {args.background:.0f}s")
        time.sleep(args.background)
        b1, breq1 = time.monotonic(), _apiserver_requests(api)
        res["background_requests_per_s"] = {k: round(v / (b1 - b0), 3) for k, v in
                                            sorted(diff_counters(breq0, breq1).items(), key=lambda kv: -kv[1])}

    # -- the operator -----------------------------------------------------------------------
    log_path = Path(args.log_dir or tempfile.gettempdir()) / f"{ns}-operator.log"
    log = open(log_path, "w")
    port = _free_port()
    op_env = dict(env, DGM_RESYNC_SECONDS=str(args.resync))
    op = subprocess.Popen([sys.executable, "-m", "dgm_operator.cli", "run", "-n", ns, "--liveness", "",
                           "--readiness", "", "--metrics-port", str(port)], env=op_env, stdout=log,
                          stderr=subprocess.STDOUT)
    res["operator_log"] = str(log_path)
    sampler = Sampler(op.pid, every=args.sample_every)
    sampler.start()
    try:
        t_op = time.monotonic()
        _log(f"operator pid {op.pid} started; waiting for the initial listing and {len(agents)} baselines")
        want = dict(zip(agents, per_agent))
        ready: dict[str, float] = {}
        deadline = t_op + args.ready_timeout
        while len(ready) < len(agents) and time.monotonic() < deadline:
            if op.poll() is not None:
                raise RuntimeError(f"the operator exited with {op.returncode}; see {log_path}")
            listed = custom.list_namespaced_custom_object(GROUP, VERSION, ns, AGENTS)["items"]
            for a in listed:
                st = a.get("status") or {}
                name = a["metadata"]["name"]
                if name not in ready and (st.get("baseline") or {}).get("metrics") and \
                        (st.get("archive") or {}).get("size") == want.get(name):
                    ready[name] = time.monotonic() - t_op
            time.sleep(1.0)
        phases["operator_ready"] = time.monotonic() - t_op
        res["agents_ready"] = len(ready)
        res["ready_seconds"] = {"p50": pct(list(ready.values()), 0.5), "last": max(ready.values(), default=None)}
        startup = sampler.between(t_op, time.monotonic())
        res["rss_startup"] = rss_summary([(t - t_op, r) for t, r, _ in startup])
        _log(f"{len(ready)}/{len(agents)} agents ready after {phases['operator_ready']:.1f}s "
             f"(RSS now {startup[-1][1] if startup else 0:.0f} MiB, load {_loadavg()})")

        # -- quiet window: memory, CPU, the API cost of the steady state --------------------
        time.sleep(max(0.0, args.settle))
        w0 = time.monotonic()
        req0, wr0, text0 = _apiserver_requests(api), _operator_writes(port), _operator_metrics(port)
        _log(f"measuring for {args.window:.0f}s (RSS every {args.sample_every:.0f}s)")
        time.sleep(args.window)
        w1 = time.monotonic()
        req1, wr1, text1 = _apiserver_requests(api), _operator_writes(port), _operator_metrics(port)
        window = sampler.between(w0, w1)
        res["rss_window"] = rss_summary([(t - w0, r) for t, r, _ in window])
        cpu = (window[-1][2] - window[0][2]) / (window[-1][0] - window[0][0]) if len(window) > 1 else None
        res["operator_cpu_cores_window"] = round(cpu, 3) if cpu is not None else None
        per_s = lambda d: {k: round(v / (w1 - w0), 2) for k, v in sorted(d.items(), key=lambda kv: -kv[1])}  # noqa: E731
        res["apiserver_requests_per_s_window"] = per_s(diff_counters(req0, req1))
        res["operator_writes_per_s_window"] = per_s(diff_counters(wr0, wr1))
        reads = lambda t: parse_prometheus(t, "dgm_api_reads_total", ("verb", "resource"))  # noqa: E731
        res["operator_reads_per_s_window"] = per_s(diff_counters(reads(text0), reads(text1)))
        on_ours = lambda d: {k: v for k, v in d.items() if k.split()[1:2]  # noqa: E731
                             and k.split()[1].split("/")[0] in OPERATOR_RESOURCES}
        res["operator_resources_requests_window"] = on_ours(res["apiserver_requests_per_s_window"])
        res["operator_resources_requests_per_s"] = round(sum(res["operator_resources_requests_window"].values()), 3)
        res["background_operator_resources_requests_per_s"] = round(sum(
            v for k, v in (res.get("background_requests_per_s") or {}).items() if k.split()[1:2] and
            k.split()[1].split("/")[0] in OPERATOR_RESOURCES), 3)
        passes = diff_counters(parse_prometheus(text0, "dgm_agent_passes_total", ("trigger",)),
                               parse_prometheus(text1, "dgm_agent_passes_total", ("trigger",)))
        lag = diff_counters(parse_histogram(text0, "dgm_agent_pass_lag_seconds", {"trigger": "resync"}),  # type: ignore[arg-type]
                            parse_histogram(text1, "dgm_agent_pass_lag_seconds", {"trigger": "resync"}))  # type: ignore[arg-type]
        res["schedule"] = {"resync_setting": args.resync,
                           **schedule_pace(passes, len(agents), args.resync, w1 - w0, lag)}
        res["read_model"] = {k: int(v) for k, v in parse_prometheus(text1, "dgm_read_model_objects", ("kind",)).items()}
        res["load_in_window"] = _loadavg()

        # -- responsiveness under load --------------------------------------------------------
        prng = random.Random(args.seed + 1)
        created: dict[str, float] = {}
        for i in range(args.probes):
            agent = prng.choice(agents)
            name = f"probe-{i:02d}"
            body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ImprovementCandidate",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"agentRef": agent, "improvementType": "ParameterTuning", "description": "bench probe",
                             "changes": {"settings.json": json.dumps({"accuracy": 0.4})}}}
            created[name] = time.monotonic()
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, CANDIDATES, body)
            cands.wait_for("terminal:" + name, 90)
        job_of = lambda c: f"{c}-eval-full"  # noqa: E731
        to_job = [jobs.times["added:" + job_of(c)] - t for c, t in created.items() if "added:" + job_of(c) in jobs.times]
        to_phase = [cands.times["terminal:" + c] - jobs.times["done:" + job_of(c)] for c in created
                    if "terminal:" + c in cands.times and "done:" + job_of(c) in jobs.times]
        res["create_to_job"] = dist(to_job)
        res["job_done_to_phase"] = dist(to_phase)
        res["probes_terminal"] = sum(1 for c in created if "terminal:" + c in cands.times)

        propose: list[float] = []
        proposed_done: list[float] = []
        for agent in prng.sample(agents, min(args.proposals, len(agents))):
            t = time.monotonic()
            custom.patch_namespaced_custom_object(GROUP, VERSION, ns, AGENTS, agent,
                                                  {"metadata": {"annotations": {ANNOTATION_PROPOSE: str(time.time())}}})
            seen = cands.wait_for(f"seen:{agent}-g1", 60)
            if seen is not None:
                propose.append(seen - t)
                fin = cands.wait_for(f"settled:{agent}-g1", 60)
                if fin is not None:
                    proposed_done.append(fin - t)
        # g1 ends Rejected/Failed, or Validated when the proposer found a better value
        # (autoApply is off, so Validated is where it waits).
        res["propose_to_candidate"] = dist(propose)
        res["propose_to_decided"] = dist(proposed_done)
        res["proposed_phases"] = sorted(p for c, p in cands.phases.items() if c.endswith("-g1"))

        after = sampler.between(w1, time.monotonic())
        res["rss_after_probes"] = rss_summary([(t - w1, r) for t, r, _ in after])
        res["rss_peak_overall_mib"] = round(max((r for _, r, _ in sampler.samples), default=0.0), 1)
        res["vmhwm_mib"] = round(sampler.hwm_kib / 1024, 1)
        res["load_at_end"] = _loadavg()
    finally:
        sampler.stop.set()
        for w in (cands, jobs):
            if w is not None:
                w.stop = True
        op.terminate()
        try:
            op.wait(20)
        except subprocess.TimeoutExpired:
            op.kill()
        log.close()
        if not args.keep_namespace:
            subprocess.run(kubectl + ["delete", "namespace", ns, "--wait=false"], env=env, capture_output=True)
    res["phases_seconds"] = {k: round(v, 1) for k, v in phases.items()}
    res["total_seconds"] = round(time.monotonic() - t_start, 1)
    return res


def render(res: dict) -> str:
    f = lambda v, d=3: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    out = [f"{res['agents']} agents, {res['candidates']} finished candidates (namespace {res['namespace']}, "
           f"{res.get('cpus')} CPUs; load {res.get('load_at_start')} at start, {res.get('load_in_window')} in the window)"]
    if res.get("baselines") == "seeded":
        out.append("  NOTE: the agents' baselines were SEEDED as status before the operator started (revision-1 "
                   "snapshot and measured baseline); no baseline Job ran")
    ph = res.get("phases_seconds", {})
    out.append(f"  setup: agents {ph.get('create_agents', 0):.0f}s, candidates {ph.get('create_candidates', 0):.0f}s, "
               f"operator ready (all baselines + archives) {ph.get('operator_ready', 0):.0f}s "
               f"({res.get('agents_ready')}/{res['agents']} agents); total {res.get('total_seconds', 0):.0f}s")
    for key, label in (("rss_startup", "RSS startup"), ("rss_window", f"RSS quiet window ({res['window_seconds']:.0f}s)"),
                       ("rss_after_probes", "RSS during probes")):
        r = res.get(key) or {}
        if r.get("n") and key == "rss_startup":
            out.append(f"  {label:<28} peak {r['peak_mib']:.0f} MiB, {r['last_mib']:.0f} MiB once ready  (n={r['n']})")
        elif r.get("n"):
            out.append(f"  {label:<28} steady {r['steady_mib']:.0f} MiB  peak {r['peak_mib']:.0f} MiB  "
                       f"first {r['first_mib']:.0f} -> last {r['last_mib']:.0f}  growth {r['growth_mib_per_min']:+.2f} MiB/min"
                       f"  (n={r['n']})")
    out.append(f"  peak RSS overall {res.get('rss_peak_overall_mib')} MiB (VmHWM {res.get('vmhwm_mib')} MiB); "
               f"bar: < 200 MiB")
    out.append(f"  operator CPU in the quiet window: {f(res.get('operator_cpu_cores_window'), 2)} cores")
    reqs = res.get("apiserver_requests_per_s_window") or {}
    if reqs:
        out.append("  API server requests/s in the quiet window (all clients): "
                   + ", ".join(f"{k} {v}" for k, v in list(reqs.items())[:8]))
    ours, background = res.get("operator_resources_requests_per_s"), res.get("background_operator_resources_requests_per_s")
    out.append(f"  API server requests/s on the operator's resources ({', '.join(sorted(OPERATOR_RESOURCES))}), "
               f"all clients: {ours} in the window, {background} in the background window without the operator"
               + (f" -> the operator's share ~ {max(0.0, ours - background):.2f}/s" if ours is not None and
                  background is not None else "") + " (goal at rest with 100 agents: <= 1)")
    if res.get("operator_resources_requests_window"):
        out.append("    by verb and resource: " + ", ".join(
            f"{k} {v}" for k, v in list(res["operator_resources_requests_window"].items())[:12]))
    writes = res.get("operator_writes_per_s_window") or {}
    out.append("  operator writes/s in the quiet window: " + (", ".join(f"{k} {v}" for k, v in writes.items()) or "none"))
    reads = res.get("operator_reads_per_s_window") or {}
    out.append("  operator reads/s (its own client: get/list/watch) in the quiet window: "
               + (", ".join(f"{k} {v}" for k, v in reads.items()) or "none"))
    sc = res.get("schedule") or {}
    if sc:
        lag = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        out.append(f"  agent schedule (resync every {sc['resync_setting']:g}s +-20%): passes in the window "
                   f"{sc['passes']}; resync {sc['resync_per_s']}/s against {sc['resync_due_per_s']}/s due -> ratio "
                   f"{sc['ratio']}; resync lag p50 {lag(sc['lag_p50_s'])}s p95 {lag(sc['lag_p95_s'])}s")
    if res.get("read_model"):
        out.append("  read model: " + ", ".join(f"{k} {v}" for k, v in sorted(res["read_model"].items())))
    out.append("  responsiveness under load (seconds, watch-observed):")
    for key, label in (("create_to_job", "candidate created -> Job created"),
                       ("job_done_to_phase", "Job finished -> terminal phase"),
                       ("propose_to_candidate", "dgm.io/propose -> <agent>-g1 exists"),
                       ("propose_to_decided", "dgm.io/propose -> g1 decided")):
        r = res.get(key) or {}
        if r:
            out.append(f"    {label:<36} p50 {f(r['p50'])}  p95 {f(r['p95'])}  max {f(r['max'])}  (n={r['n']})")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dgm bench scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--candidates", type=int, default=5000, help="finished candidates, spread over the agents")
    parser.add_argument("--window", type=float, default=180.0, help="quiet measurement window, seconds")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds to wait after the agents are ready")
    parser.add_argument("--sample-every", type=float, default=2.0, help="RSS sampling period, seconds")
    parser.add_argument("--probes", type=int, default=10, help="new candidates created under load")
    parser.add_argument("--proposals", type=int, default=5, help="agents asked to propose (dgm.io/propose)")
    parser.add_argument("--threads", type=int, default=16, help="client threads creating the candidates")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument("--baselines", choices=("auto", "run", "seed"), default="auto",
                        help=f"run each agent's baseline Job, or seed the baselines as status (auto: seed above "
                             f"{SEED_ABOVE} agents)")
    parser.add_argument("--resync", type=float, default=60.0,
                        help="DGM_RESYNC_SECONDS for the operator (its default is 300; 60 gives every agent "
                             "three resyncs in a 180 s window, so the schedule's pace can be seen)")
    parser.add_argument("--background", type=float, default=30.0,
                        help="seconds of the API server's background traffic measured before the operator starts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-dir", default=None, help="where the operator log goes (default: the temp dir)")
    parser.add_argument("--keep-namespace", action="store_true")
    parser.add_argument("--existing", action="store_true", help="use the cluster of $KUBECONFIG (kubectl on PATH)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from ..paths import crds_file
    repo_crds = crds_file()
    from ..devcluster import cluster_for_benchmark
    with cluster_for_benchmark(args.existing, "dgm-bench-scale-") as kubeconfig:
        res = run(args, kubeconfig, repo_crds)
    print(json.dumps(res, indent=2) if args.json else render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
