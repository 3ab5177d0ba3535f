"""Pure helpers of the reconcilers: Job and rollout states, revisions, result parsing."""

import json

from dgm_operator.api import models as api
from dgm_operator.controller import mapping
from dgm_operator.controller.evaluation import stage_baseline
from dgm_operator.controller.jobs import JobState, job_state
from dgm_operator.controller.observed import needs_attention
from dgm_operator.controller.revisions import previous_revision, rollout_state


def test_job_state():
    assert job_state(None) == (JobState.MISSING, "")
    assert job_state({"status": {}}) == (JobState.RUNNING, "")
    assert job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == (JobState.SUCCEEDED, "")
    assert job_state({"status": {"conditions": [
        {"type": "FailureTarget", "status": "True"},
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}}) == (JobState.FAILED, "DeadlineExceeded")


def test_previous_revision_skips_rolled_back_ones():
    status = api.DGMAgentStatus.model_validate({"revisions": [
        {"revision": 1}, {"revision": 2, "rolledBackAt": "2026-01-01T00:00:00Z"}, {"revision": 3}]})
    assert previous_revision(status, 3) == 1
    assert previous_revision(status, 1) is None


def deployment(revision, *, generation=2, observed=2, updated=1, available=1, replicas=1, conditions=()):
    return {"metadata": {"generation": generation},
            "spec": {"replicas": 1, "template": {"metadata": {"annotations": {"dgm.io/revision": str(revision)}}}},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available,
                       "replicas": replicas, "conditions": list(conditions)}}


def test_rollout_state():
    assert rollout_state(deployment(2), 2) == "complete"
    assert rollout_state(deployment(1), 2) == "pending"
    assert rollout_state(deployment(2, observed=1), 2) == "pending"
    assert rollout_state(deployment(2, available=0, replicas=2), 2) == "pending"
    failed = deployment(2, available=0, conditions=[{"type": "Progressing", "status": "False",
                                                     "reason": "ProgressDeadlineExceeded"}])
    assert rollout_state(failed, 2) == "failed"


def test_parse_result():
    metrics, samples, tests, error = mapping.parse_result(json.dumps(
        {"metrics": {"accuracy": 0.8, "flag": True, "name": "x"}, "samples": {"accuracy": [0.7, 0.9]}, "tests": {"n": 1}}))
    assert metrics == {"accuracy": 0.8} and samples == {"accuracy": [0.7, 0.9]} and tests == {"n": 1} and error is None
    assert mapping.parse_result(None)[0] is None
    assert mapping.parse_result("Traceback ...")[3].startswith("the termination message is not JSON")
    assert mapping.parse_result(json.dumps({"metrics": {}}))[0] is None


def test_metric_lists_round_trip():
    items = mapping.metrics_to_list({"b": 2.0, "a": 1.0}, units={"a": "s"}, when="t", samples={"a": [0.5, 1.5]})
    assert items == [{"name": "a", "value": 1.0, "timestamp": "t", "unit": "s", "context": {"samples": [0.5, 1.5]}},
                     {"name": "b", "value": 2.0, "timestamp": "t"}]
    assert mapping.metrics_from_list(items) == ({"a": 1.0, "b": 2.0}, {"a": [0.5, 1.5]})


def test_configmap_key_findings():
    findings = mapping.configmap_key_findings({"ok.yaml": "", "dir/x.py": "", "bad key": ""})
    assert sorted(f.file for f in findings) == ["bad key", "dir/x.py"]
    assert all(f.severity.value == "critical" for f in findings)


def test_each_stage_is_scored_against_the_same_stage_of_the_baseline():
    quick, full = [{"name": "accuracy", "value": 0.4}], [{"name": "accuracy", "value": 0.6}]
    baseline = api.Baseline.model_validate(
        {"metrics": full, "stages": [{"name": "quick", "metrics": quick}, {"name": "full", "metrics": full}]})

    def values(items):
        return [m.to_wire() for m in items]
    assert values(stage_baseline(baseline, "quick")) == quick
    assert values(stage_baseline(baseline, "full")) == full
    assert values(stage_baseline(baseline, "postapply")) == full
    assert values(stage_baseline(api.Baseline.model_validate({"metrics": full}), "quick")) == full
    assert stage_baseline(None, "quick") is None


def test_needs_attention():
    def cand(phase=None, reason=None):
        return {"status": {k: v for k, v in (("phase", phase), ("reason", reason)) if v}}
    assert needs_attention({}) and needs_attention(cand("Proposed", "Queued")) and needs_attention(cand("Testing"))
    assert needs_attention(cand("Validated", "AwaitingApproval"))
    assert needs_attention(cand("Applied", "Applied")) and needs_attention(cand("Applied", "Verifying"))
    assert not needs_attention(cand("Applied", "Verified")) and not needs_attention(cand("Applied", "RolloutComplete"))
    for phase in ("Rejected", "Failed", "RolledBack"):
        assert not needs_attention(cand(phase))


def test_the_default_proposal_seed_is_the_same_in_every_process():
    import subprocess
    import sys
    code = "from dgm_operator.controller.proposals import stable_seed; print(stable_seed('uid-1'))"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert len(runs) == 1 and int(runs.pop()) > 0
