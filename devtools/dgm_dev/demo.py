"""`dgm demo`: from a fresh clone to an agent improving itself, in one command.

Builds or reuses the control plane, starts a dev cluster, installs the CRDs, starts the
operator, deploys the quickstart's sample agent, then drives improvement cycles (one
proposal at a time through the `dgm.io/propose` annotation, so the demo does not wait for
the agent's interval), shows a safety rejection, an apply and a rollback, prints a summary
and writes an HTML report. The dev cluster runs pods as host processes: see the README.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from dgm_operator.api import constants
from dgm_operator.plugin import report

from . import paths

NS = "dgm-quickstart"
AGENT = "sample-agent"


class Demo:
    def __init__(self, kubeconfig: str, bin_dir: str, out):
        self.env = dict(os.environ, KUBECONFIG=kubeconfig, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        self.kubectl_bin = str(Path(bin_dir) / "kubectl")
        self.out = out
        self.seen: dict[str, tuple] = {}

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        proc = subprocess.run([self.kubectl_bin, *args], input=input, capture_output=True, text=True, env=self.env)
        if check and proc.returncode:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def get(self, kind: str, name: str | None = None) -> Any:
        args = ["get", kind] + ([name] if name else []) + ["-n", NS, "-o", "json"]
        data = json.loads(self.kubectl(*args))
        return data if name else data["items"]

    def apply_docs(self, *paths: Path) -> None:
        docs = [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d]
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))

    def wait(self, what: str, fn, timeout: float = 180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.progress()
            value = fn()
            if value:
                return value
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}")

    def progress(self) -> None:
        """Print each candidate's phase changes as they happen."""
        for c in self.get(constants.CANDIDATES):
            st = c.get("status") or {}
            key = (st.get("phase"), st.get("reason"))
            name = c["metadata"]["name"]
            if self.seen.get(name) == key or not st.get("phase"):
                continue
            self.seen[name] = key
            score = (st.get("validation") or {}).get("improvementScore")
            score_text = "" if score is None else f"score {score:+.4f}"
            parent = (c.get("spec") or {}).get("parent") or "baseline"
            self.say(f"  {time.strftime('%H:%M:%S')}  {name:<22} {st['phase']:<10} {score_text:<14} "
                     f"parent {parent:<20} {st.get('reason', '')}")

    def agent(self) -> dict:
        return self.get(constants.AGENTS, AGENT)


def wait_terminal(demo: Demo, path: Path) -> None:
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    demo.wait(name, lambda: (demo.get(constants.CANDIDATES, name).get("status") or {}).get("phase") in constants.DECIDED_PHASES)


def run_demo(demo: Demo, cycles: int, report_path: Path) -> dict:
    qs = paths.repo_file("examples", "quickstart")
    demo.say("== installing CRDs and the quickstart agent")
    demo.kubectl("apply", "--server-side", "-f", str(paths.crds_file()))
    demo.kubectl("wait", "--for=condition=Established", "crd/dgmagents.dgm.io", "crd/improvementcandidates.dgm.io")
    demo.apply_docs(qs / "namespace.yaml")
    demo.wait("the default service account", lambda: demo.kubectl("get", "sa", "default", "-n", NS, check=False))
    demo.apply_docs(qs / "configmap.yaml", qs / "deployment.yaml", qs / "dgmagent.yaml")
    demo.say("== measuring the baseline (revision 1)")
    st = demo.wait("the baseline", lambda: (demo.agent().get("status") or {}).get("baseline", {}).get("metrics") and demo.agent()["status"])
    baseline = {m["name"]: m["value"] for m in st["baseline"]["metrics"]}
    demo.say("  baseline: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(baseline.items())))
    demo.say("== an unsafe candidate, as a person or CI might submit it")
    demo.apply_docs(qs / "candidate-unsafe.yaml")
    wait_terminal(demo, qs / "candidate-unsafe.yaml")
    demo.say(f"== {cycles} improvement cycles: the operator selects a parent (dgm), proposes, evaluates, applies")
    for i in range(cycles):
        before = {c["metadata"]["name"] for c in demo.get(constants.CANDIDATES)}
        demo.kubectl("annotate", constants.AGENTS, AGENT, "-n", NS, f"{constants.ANNOTATION_PROPOSE}=demo-{i}-{time.time()}", "--overwrite")
        new = demo.wait("a proposal", lambda: {c["metadata"]["name"] for c in demo.get(constants.CANDIDATES)} - before)
        (name,) = new
        demo.wait(name, lambda: (demo.get(constants.CANDIDATES, name).get("status") or {}).get("phase") in constants.DECIDED_PHASES)
    demo.say("== a hand-written candidate (tf-idf retrieval: more accurate, slower), scored like any other "
             "against the current revision with the agent's metric weights")
    demo.apply_docs(qs / "candidate-good.yaml")
    wait_terminal(demo, qs / "candidate-good.yaml")
    agent = demo.agent()
    current = agent["status"]["currentRevision"]
    if current > 1:
        demo.say(f"== rolling back revision {current} (kubectl annotate dgma {AGENT} {constants.ANNOTATION_ROLLBACK}=previous@...)")
        demo.kubectl("annotate", constants.AGENTS, AGENT, "-n", NS, f"{constants.ANNOTATION_ROLLBACK}=previous@{time.time()}", "--overwrite")
        demo.wait("the rollback", lambda: demo.agent()["status"]["currentRevision"] < current)
        demo.wait("the re-measured baseline", lambda: (demo.agent()["status"].get("baseline") or {}).get("metrics"))
        demo.progress()
    agent = demo.agent()
    candidates = demo.get(constants.CANDIDATES)
    report_path.write_text(report.render_html(agent, candidates))
    return {"agent": agent, "candidates": candidates, "baseline": baseline}


def summary(result: dict) -> str:
    agent, candidates = result["agent"], result["candidates"]
    st = agent["status"]
    scores = [((c.get("status") or {}).get("validation") or {}).get("improvementScore") for c in candidates]
    scores = [s for s in scores if s is not None]
    best = max(candidates, key=lambda c: ((c.get("status") or {}).get("validation") or {}).get("improvementScore", -1e9))
    best_after = {m["name"]: m["value"] for m in ((best.get("status") or {}).get("validation") or {}).get("metricsAfter") or []}
    lines = ["", "== summary",
             f"  baseline accuracy {result['baseline'].get('accuracy', float('nan')):.3f} -> best candidate "
             f"{best['metadata']['name']} accuracy {best_after.get('accuracy', float('nan')):.3f} "
             f"(score {max(scores) if scores else float('nan'):+.4f})",
             "  candidates by phase: " + ", ".join(f"{k} {v}" for k, v in report.phase_counts(candidates).items()),
             "  revisions:"]
    for r in st.get("revisions") or []:
        mark = "  <- current" if r["revision"] == st.get("currentRevision") else ""
        score = "" if r.get("score") is None else f"score {r['score']:+.4f}"
        rolled = "rolled back" if r.get("rolledBackAt") else ""
        lines.append(f"    {r['revision']:>3}  {r.get('candidate') or '(original files)':<24} {score:<14}{rolled}{mark}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dgm demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=12, help="operator proposals to run (default 12)")
    parser.add_argument("--keep", action="store_true", help="leave the dev cluster and operator running")
    parser.add_argument("--report", default="dgm-demo-report.html", help="HTML report path")
    parser.add_argument("--state-dir", default=None, help="dev cluster state (default: a temporary directory)")
    args = parser.parse_args(argv)
    from .devcluster import DevCluster

    started = time.monotonic()
    state = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="dgm-demo-")) / "state"
    print("== starting the dev cluster (control plane built from Go modules on first use)", flush=True)
    cluster = DevCluster(state)
    cluster.up()
    op = None
    try:
        demo = Demo(str(cluster.kubeconfig), str(cluster.bin_dir), sys.stdout)
        log = open(state / "operator.log", "w")
        op = subprocess.Popen([sys.executable, "-m", "dgm_operator.cli", "run", "-n", NS, "--liveness", "",
                               "--metrics-port", "0"], env=demo.env, stdout=log, stderr=subprocess.STDOUT)
        print(f"== operator started (log: {state / 'operator.log'})", flush=True)
        result = run_demo(demo, args.cycles, Path(args.report))
        print(summary(result))
        print(f"\n  report: {Path(args.report).resolve()}")
        print(f"  wall time: {time.monotonic() - started:.0f}s")
    finally:
        if args.keep:
            print(f"\n  kept running: export KUBECONFIG={cluster.kubeconfig}; operator pid {op.pid if op else '-'};"
                  f" stop with: kill {op.pid if op else ''}; dgm dev-cluster down --state-dir {state}")
        else:
            if op is not None:
                op.terminate()
                try:
                    op.wait(15)
                except subprocess.TimeoutExpired:
                    op.kill()
            cluster.down()
    return 0
