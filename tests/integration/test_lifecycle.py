"""The candidate lifecycle on the dev cluster: a real kube-apiserver and controllers, the
operator (`dgm run`) as a separate process, evaluation Jobs run by the dev node.

Most tests use a "toy" agent whose evaluation reads its metrics (and exit code, delay,
whether to print metrics at all) from `settings.json` in the candidate's workspace, so each
lifecycle branch is reached on purpose and fast. `test_quickstart_*` runs the real sample
agent and its benchmark."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

import pytest
import yaml

from dgm_dev.toy_agent import toy_objects
from dgm_operator.controller.jobs import is_finished
from harness import REPO, Operator, candidate

pytestmark = pytest.mark.integration


def jobs_of(env, cand):
    return [j["metadata"]["name"] for j in env.list("jobs", f"dgm.io/candidate={cand}")]


def test_good_candidate_is_applied_and_the_deployment_rolls(env, operator):
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.5}))
    st = env.wait_ready()
    assert st["currentRevision"] == 1
    assert [m["value"] for m in st["baseline"]["metrics"]] == [0.5]
    env.apply(candidate(env.ns, "better", {"accuracy": 0.9}))
    obj = env.wait_phase("better", "Applied", "Rejected", "Failed")
    status = obj["status"]
    assert status["phase"] == "Applied", status
    assert status["revision"] == 2
    assert status["validation"]["improvementScore"] == pytest.approx(0.8)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "SafetyChecked": "True", "Evaluated": "True", "Applied": "True"}
    live = env.get("configmap", "toy-config")["data"]
    assert json.loads(live["settings.json"]) == {"accuracy": 0.9}
    assert live["notes.txt"] == "kept as is\n"
    snapshot = env.get("configmap", "toy-rev-2")
    assert snapshot["immutable"] is True and snapshot["data"] == live
    env.rollout_done("toy", 2)
    agent = env.agent_status()
    assert agent["currentRevision"] == 2
    assert [r["revision"] for r in agent["revisions"]] == [1, 2]
    assert agent["revisions"][1]["candidate"] == "better"
    # the sandbox Job really ran with the contract's settings
    (job_name,) = jobs_of(env, "better")
    pod = env.get("job", job_name)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert env.get("networkpolicy", "dgm-sandbox-deny-egress")["spec"]["policyTypes"] == ["Ingress", "Egress"]
    events = env.list("events")
    reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "better"}
    assert {"EvaluationStarted", "ImprovementValidated", "Applied"} <= reasons
    scrape = urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=10).read().decode()
    assert f'dgm_applies_total{{agent="toy",namespace="{env.ns}"}} 1.0' in scrape
    assert f'dgm_decisions_total{{agent="toy",namespace="{env.ns}",phase="Applied",reason="Applied"}} 1.0' in scrape
    assert "dgm_evaluation_duration_seconds_count" in scrape


def test_unsafe_candidate_is_rejected_with_findings_and_no_job(env, operator):
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.5}))
    env.wait_ready()
    env.apply(candidate(env.ns, "unsafe", changes={"run.py": "import subprocess\nsubprocess.call(['sh'])\n"}))
    obj = env.wait_phase("unsafe", "Rejected", "Failed", "Applied")
    st = obj["status"]
    assert st["phase"] == "Rejected" and st["reason"] == "UnsafeChange"
    assert st["safety"]["score"] < 0.8
    rules = {f["rule"] for f in st["safety"]["findings"]}
    assert "file_not_allowed" in rules and len(st["safety"]["findings"]) >= 2
    assert jobs_of(env, "unsafe") == []
    assert env.get("configmap", "unsafe-workspace") is None


def test_failing_evaluation_and_missing_metrics_end_failed(env, operator):
    # the deadline covers a real pod's start and its egress check (a few seconds on the real node)
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.5}, timeout=15))
    env.wait_ready()
    env.apply(candidate(env.ns, "crashes", {"accuracy": 0.9, "exit": 3}),
              candidate(env.ns, "silent", {"accuracy": 0.9, "emit": False}),
              candidate(env.ns, "slow", {"accuracy": 0.9, "sleep": 60}))
    crashes = env.wait_phase("crashes", "Failed", "Applied", "Rejected")["status"]
    assert (crashes["phase"], crashes["reason"]) == ("Failed", "EvaluationFailed")
    assert "exit code 3" in crashes["message"]
    silent = env.wait_phase("silent", "Failed", "Applied", "Rejected")["status"]
    assert (silent["phase"], silent["reason"]) == ("Failed", "MetricsUnavailable")
    slow = env.wait_phase("slow", "Failed", "Applied", "Rejected")["status"]
    assert (slow["phase"], slow["reason"]) == ("Failed", "DeadlineExceeded")
    assert env.agent_status()["currentRevision"] == 1


def test_insufficient_improvement_is_rejected_but_stays_a_possible_parent(env, operator):
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.5}))
    env.wait_ready()
    # a different file set (an identical one would be a DuplicateCandidate of revision 1)
    # whose gain stays under minImprovement
    env.apply(candidate(env.ns, "same", {"accuracy": 0.502}))
    st = env.wait_phase("same", "Rejected", "Applied", "Failed")["status"]
    assert (st["phase"], st["reason"]) == ("Rejected", "InsufficientImprovement")
    # a child of a rejected (but evaluated) candidate builds on its files
    env.apply(candidate(env.ns, "child", {"accuracy": 0.7}, parent="same"))
    st = env.wait_phase("child", "Applied", "Rejected", "Failed")["status"]
    assert st["phase"] == "Applied"
    assert env.get("configmap", "child-workspace")["data"]["notes.txt"] == "kept as is\n"


def test_manual_approval_gate(env, operator):
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.5}, auto_apply=False))
    env.wait_ready()
    env.apply(candidate(env.ns, "gated", {"accuracy": 0.8}))
    env.wait("AwaitingApproval", lambda: (env.get("improvementcandidates", "gated").get("status") or {}).get("reason") == "AwaitingApproval")
    time.sleep(3)  # a few reconcile rounds: still nothing applied
    assert env.phase("gated") == "Validated"
    assert env.agent_status()["currentRevision"] == 1
    assert json.loads(env.get("configmap", "toy-config")["data"]["settings.json"]) == {"accuracy": 0.5}
    env.cluster.kubectl("patch", "improvementcandidates", "gated", "-n", env.ns, "--type=merge", "-p", '{"spec":{"approved":true}}')
    assert env.wait_phase("gated", "Applied")["status"]["revision"] == 2


def test_rollback_to_revision_restores_byte_for_byte(env, operator):
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.5}))
    env.wait_ready()
    original = env.get("configmap", "toy-config")["data"]
    env.apply(candidate(env.ns, "v2", {"accuracy": 0.9}))
    env.wait_phase("v2", "Applied")
    assert env.get("configmap", "toy-config")["data"] != original
    env.cluster.kubectl("patch", "dgmagents", "toy", "-n", env.ns, "--type=merge", "-p", '{"spec":{"rollbackToRevision":1}}')
    st = env.wait_phase("v2", "RolledBack")["status"]
    assert st["reason"] == "RollbackRequested"
    assert env.get("configmap", "toy-config")["data"] == original
    env.rollout_done("toy", 1)
    agent = env.wait("baseline re-measured", lambda: (lambda s: s if (s.get("baseline") or {}).get("metrics") else None)(env.agent_status()))
    assert agent["currentRevision"] == 1
    assert agent["revisions"][1]["rolledBackAt"]


def test_a_revision_whose_pods_fail_is_rolled_back(env, operator):
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.5}))
    env.wait_ready()
    env.apply(candidate(env.ns, "crashy", {"accuracy": 0.9, "crash": True}))
    st = env.wait_phase("crashy", "RolledBack", timeout=150)["status"]
    assert st["reason"] == "RolloutFailed"
    assert json.loads(env.get("configmap", "toy-config")["data"]["settings.json"]) == {"accuracy": 0.5}
    assert env.agent_status()["currentRevision"] == 1


def test_regression_after_apply_is_rolled_back(env, operator):
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.5}, on_regression=True))
    env.wait_ready()
    env.apply(candidate(env.ns, "fragile", {"accuracy": 0.9, "post_accuracy": 0.2}),)
    st = env.wait_phase("fragile", "RolledBack", timeout=150)["status"]
    assert st["reason"] == "Regression"
    assert env.agent_status()["currentRevision"] == 1


def test_queued_candidates_never_exceed_max_concurrent_jobs(env, operator):
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.5}, max_concurrent=2, auto_apply=False))
    env.wait_ready()
    env.apply(*[candidate(env.ns, f"q{i:02d}", {"accuracy": 0.5 + i / 100, "sleep": 0.5}) for i in range(20)])
    peak = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        jobs = [j for j in env.list("jobs", "dgm.io/candidate") if not is_finished(j)]
        peak = max(peak, len(jobs))
        phases = [((c.get("status") or {}).get("phase")) for c in env.list("improvementcandidates")]
        if all(p in ("Validated", "Rejected", "Failed") for p in phases):
            break
        time.sleep(0.2)
    assert all(p in ("Validated", "Rejected", "Failed") for p in phases), phases
    assert 1 <= peak <= 2
    assert len(env.list("jobs", "dgm.io/candidate")) == 20


def test_proposal_on_request_creates_an_owned_candidate(env, operator):
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.5}))
    env.wait_ready()
    env.cluster.kubectl("annotate", "dgmagents", "toy", "-n", env.ns, "dgm.io/propose=1")
    cand = env.wait("a proposed candidate", lambda: env.get("improvementcandidates", "toy-g1"))
    assert cand["metadata"]["labels"]["dgm.io/agent"] == "toy"
    assert cand["metadata"]["ownerReferences"][0]["kind"] == "DGMAgent"
    assert set(cand["spec"]["changes"]) == {"settings.json"}
    env.wait_phase("toy-g1", "Applied", "Rejected", "Failed", "Validated")
    time.sleep(2)
    assert [c["metadata"]["name"] for c in env.list("improvementcandidates")] == ["toy-g1"]


FAILPOINTS = ["workspace-created", "job-created", "snapshot-created", "live-configmap-applied", "agent-status-written"]


def test_operator_killed_between_writes_loses_and_duplicates_nothing(env, cluster, tmp_path):
    """SIGKILL the operator at each failpoint (between two writes of one step), restart it,
    and check the end state: no duplicate Job, no lost candidate, no double apply."""
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.1}))
    op = Operator(cluster, env.ns, tmp_path / "operator.log").start()
    env.wait_ready()
    op.stop()
    for i, point in enumerate(FAILPOINTS, start=1):
        op = Operator(cluster, env.ns, tmp_path / "operator.log")
        op.start_env = {"DGM_FAILPOINT": point}
        op.start()
        env.apply(candidate(env.ns, f"k{i}", {"accuracy": 0.1 + 0.15 * i}))
        env.wait(f"operator killed at {point}", lambda: op.proc.poll() is not None, timeout=60)
        assert op.proc.returncode == -signal.SIGKILL, f"failpoint {point} not reached"
        op = Operator(cluster, env.ns, tmp_path / "operator.log").start()
        st = env.wait_phase(f"k{i}", "Applied", "Rejected", "Failed")["status"]
        assert (st["phase"], st["revision"]) == ("Applied", i + 1), (point, st)
        op.stop()
    assert_nothing_lost_or_duplicated(env)


def assert_nothing_lost_or_duplicated(env) -> None:
    """After one candidate k1..kN per failpoint: each revision exactly once, one Job per
    candidate, no candidate lost or added, the live ConfigMap equal to the last snapshot."""
    agent = env.agent_status()
    revisions = agent["revisions"]
    assert [r["revision"] for r in revisions] == list(range(1, len(FAILPOINTS) + 2))
    assert [r.get("candidate") for r in revisions[1:]] == [f"k{i}" for i in range(1, len(FAILPOINTS) + 1)]
    assert agent["currentRevision"] == len(FAILPOINTS) + 1
    snapshots = env.list("configmaps", "dgm.io/role=revision")
    assert sorted(int(c["metadata"]["labels"]["dgm.io/revision"]) for c in snapshots) == [r["revision"] for r in revisions]
    for i in range(1, len(FAILPOINTS) + 1):
        assert jobs_of(env, f"k{i}") == [f"k{i}-eval-full"]
    assert sorted(c["metadata"]["name"] for c in env.list("improvementcandidates")) == [
        f"k{i}" for i in range(1, len(FAILPOINTS) + 1)]
    live = env.get("configmap", "toy-config")["data"]
    assert live == env.get("configmap", f"toy-rev-{len(FAILPOINTS) + 1}")["data"]


def quickstart_objects(namespace: str) -> dict[str, list[dict]]:
    """The quickstart's YAML, moved into the test's namespace."""
    out: dict[str, list[dict]] = {}
    for path in sorted((REPO / "examples" / "quickstart").glob("*.yaml")):
        if path.name in ("namespace.yaml", "kustomization.yaml"):
            continue
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        for d in docs:
            d["metadata"]["namespace"] = namespace
        out[path.stem] = docs
    return out


def test_quickstart_sample_agent_improves_and_the_unsafe_candidate_is_rejected(env, operator):
    objs = quickstart_objects(env.ns)
    env.apply(*objs["configmap"], *objs["deployment"], *objs["dgmagent"])
    st = env.wait_ready(agent="sample-agent")
    baseline = {m["name"]: m["value"] for m in st["baseline"]["metrics"]}
    assert set(baseline) == {"accuracy", "response_time", "error_rate"}
    env.apply(*objs["candidate-good"], *objs["candidate-unsafe"])
    good_name = objs["candidate-good"][0]["metadata"]["name"]
    unsafe_name = objs["candidate-unsafe"][0]["metadata"]["name"]
    unsafe = env.wait_phase(unsafe_name, "Rejected", "Failed", "Applied")["status"]
    assert unsafe["reason"] == "UnsafeChange" and unsafe["safety"]["findings"]
    good = env.wait_phase(good_name, "Applied", "Rejected", "Failed")["status"]
    assert good["phase"] == "Applied", good
    assert good["validation"]["stagesPassed"] == ["quick", "full"]
    after = {m["name"]: m["value"] for m in good["validation"]["metricsAfter"]}
    assert after["accuracy"] > baseline["accuracy"]
    live = env.get("configmap", "sample-agent-config")["data"]
    assert live["config.yaml"] == objs["candidate-good"][0]["spec"]["changes"]["config.yaml"]
    env.rollout_done("sample-agent", good["revision"])
    out = env.cluster.kubectl("get", "candidates", "-n", env.ns).stdout
    assert good_name in out and "Applied" in out and "Rejected" in out


def test_retention_prunes_the_oldest_rejected_leaves_and_keeps_live_revisions(env, operator):
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.5}, max_candidates=3))
    env.wait_ready()
    env.apply(candidate(env.ns, "live", {"accuracy": 0.9}))
    env.wait_phase("live", "Applied")
    for i in range(1, 5):
        env.apply(candidate(env.ns, f"r{i}", {"accuracy": 0.9, "note": i}))
        assert env.wait_phase(f"r{i}", "Rejected", "Applied", "Failed")["status"]["reason"] == "InsufficientImprovement"
    left = env.wait("retention", lambda: (lambda names: names if len(names) <= 3 else None)(
        sorted(c["metadata"]["name"] for c in env.list("improvementcandidates"))))
    assert left == ["live", "r3", "r4"]
    assert env.agent_status()["archive"]["size"] == 3
