"""Every branch of the two reconcilers, driven through the dict-backed FakeKube (the
project's own Kube interface; the integration tests cover the real API server)."""

from __future__ import annotations

import json

import pytest

from fakekube import FakeKube

from dgm_operator.controller.kubeapi import ContainerEnd

from dgm_operator.api import constants
from dgm_operator.controller import names
from dgm_operator.controller.reconciler import Reconciler

NS = "ns"
GOOD = json.dumps({"accuracy": 0.5})


class Clock:
    def __init__(self) -> None:
        self.t = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    def __call__(self) -> float:
        return self.t


def metrics_message(accuracy: float) -> str:
    return json.dumps({"metrics": {"accuracy": accuracy}, "tests": {"passed": 1}})


def agent_body(mode: str = "Grader", **policy) -> dict:
    spec = {
        "target": {"deployment": "toy", "container": "agent", "configMap": "toy-config"},
        "evaluation": {"image": "grader:1", "command": ["dgm", "grade"],
                       "agent": {"command": ["serve"], "port": 8000},
                       "metrics": [{"name": "accuracy", "goal": "maximize", "weight": 1.0}],
                       "timeoutSeconds": 60},
        "proposer": {"type": "parameters", "seed": 7, "searchSpace": [
            {"file": "settings.json", "key": "accuracy", "type": "float", "min": 0.0, "max": 1.0}]},
        "policy": {"autoApply": True, "minImprovement": 0.01, "maxConcurrentCandidates": 1,
                   "improvementIntervalMinutes": 600, "allowedFiles": ["settings.json", "*.py"],
                   "rollback": {"onRolloutFailure": True, "onRegression": False}, **policy},
        "archive": {"maxCandidates": 50},
    }
    spec["evaluation"]["mode"] = mode
    return {"apiVersion": constants.API_VERSION, "kind": "DGMAgent", "metadata": {"name": "toy", "namespace": NS},
            "spec": spec}


class World:
    """A namespace with the toy agent, its Deployment and live ConfigMap."""

    def __init__(self, *, stages=None, mode="Grader", **policy) -> None:
        self.kube, self.clock = FakeKube(), Clock()
        self.rec = Reconciler(self.kube, self.clock)
        self.kube.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "toy-config", "namespace": NS},
                       "data": {"settings.json": GOOD}})
        self.kube.add({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "toy", "namespace": NS},
                       "spec": {"replicas": 1, "template": {"metadata": {}, "spec": {
                           "containers": [{"name": "agent", "image": "toy:1"}]}}}})
        body = agent_body(mode, **policy)
        if stages:
            body["spec"]["evaluation"]["stages"] = stages
        self.kube.add(body)

    def agent(self) -> dict:
        return self.kube.get_agent(NS, "toy")

    def agent_status(self) -> dict:
        return self.agent().get("status") or {}

    def cand(self, name: str) -> dict:
        return self.kube.get_candidate(NS, name)

    def status(self, name: str) -> dict:
        return self.cand(name).get("status") or {}

    def condition(self, name: str, type_: str) -> dict | None:
        return next((c for c in self.status(name).get("conditions") or [] if c["type"] == type_), None)

    def agent_condition(self, type_: str) -> dict | None:
        return next((c for c in self.agent_status().get("conditions") or [] if c["type"] == type_), None)

    def ready(self, accuracy: float = 0.5) -> "World":
        """Revision 1 snapshotted and its baseline measured."""
        self.rec.reconcile_agent(NS, "toy")
        self.kube.finish_job(NS, names.baseline_job("toy", 1, self.first_stage()), message=metrics_message(accuracy))
        for stage in self.stage_names()[1:]:
            self.rec.reconcile_agent(NS, "toy")
            self.kube.finish_job(NS, names.baseline_job("toy", 1, stage), message=metrics_message(accuracy))
        self.rec.reconcile_agent(NS, "toy")
        assert self.agent_status()["phase"] == "Ready", self.agent_status()
        return self

    def stage_names(self) -> list[str]:
        stages = self.agent()["spec"]["evaluation"].get("stages") or [{"name": "full"}]
        return [s["name"] for s in stages]

    def first_stage(self) -> str:
        return self.stage_names()[0]

    def candidate(self, name: str = "c1", changes=None, parent=None, **spec) -> str:
        body = {"agentRef": "toy", "improvementType": "ParameterTuning",
                "changes": changes if changes is not None else {"settings.json": json.dumps({"accuracy": 0.9})}, **spec}
        if parent:
            body["parent"] = parent
        self.kube.add({"apiVersion": constants.API_VERSION, "kind": "ImprovementCandidate",
                       "metadata": {"name": name, "namespace": NS, "labels": {constants.LABEL_AGENT: "toy"}},
                       "spec": body})
        return name

    def run(self, name: str = "c1") -> list[str]:
        return self.rec.reconcile_candidate(NS, name)

    def evaluate(self, name: str = "c1", accuracy: float = 0.9, stage: str | None = None, **finish) -> None:
        """Finish the candidate's running stage Job and reconcile."""
        stage = stage or self.status(name)["validation"]["stage"]
        if "message" not in finish:
            finish["message"] = metrics_message(accuracy)
        self.kube.finish_job(NS, names.evaluation_job(name, stage), **finish)
        self.run(name)


# ------------------------------------------------------------------ candidate: before Testing
def test_agent_not_found_is_recorded_and_nothing_else():
    w = World()
    w.candidate(agentRef="ghost")
    w.run()
    st = w.status("c1")
    assert (st["phase"], st["reason"]) == ("Proposed", "AgentNotFound") and "ghost" in st["message"]
    w.run()  # the same reason again writes nothing
    assert len(w.kube.writes_of("patch-status", "ImprovementCandidate")) == 1


def test_waiting_for_agent_until_it_has_a_revision():
    w = World()
    w.candidate()
    w.run()
    assert w.status("c1")["reason"] == "WaitingForAgent"


@pytest.mark.parametrize("make_parent, reason", [
    (False, "ParentNotFound"),
    (True, "ParentUnavailable"),
])
def test_parent_must_exist_and_have_a_workspace(make_parent, reason):
    w = World().ready()
    if make_parent:
        w.candidate("p0")
        w.kube.objects[("candidate", NS, "p0")]["status"] = {"phase": "Rejected"}
    w.candidate(parent="p0")
    w.run()
    assert (w.status("c1")["phase"], w.status("c1")["reason"]) == ("Proposed", reason)
    assert not w.kube.writes_of("create", "Job")[1:]  # only the baseline's


def test_unsafe_change_is_rejected_with_findings_and_no_job():
    w = World().ready()
    w.candidate(changes={"settings.json": GOOD, "evil.py": "import subprocess\nsubprocess.run('x')\n"})
    w.run()
    st = w.status("c1")
    assert (st["phase"], st["reason"]) == ("Rejected", "UnsafeChange")
    assert st["safety"]["score"] == 0 and any(f["rule"] == "forbidden_import" for f in st["safety"]["findings"])
    assert w.condition("c1", "SafetyChecked")["status"] == "False"
    assert w.kube.get_job(NS, names.evaluation_job("c1", "full")) is None


def test_safe_candidate_starts_testing_with_the_merged_workspace():
    w = World().ready()
    w.kube.objects[("configmap", NS, "toy-rev-1")]["data"]["notes.txt"] = "kept\n"
    w.candidate()
    w.run()
    st = w.status("c1")
    assert (st["phase"], st["reason"]) == ("Testing", "EvaluationStarted")
    assert st["validation"]["jobName"] == names.evaluation_job("c1", "full")
    assert w.condition("c1", "SafetyChecked")["status"] == "True"
    assert w.condition("c1", "Evaluated")["status"] == "Unknown"
    workspace = w.kube.get_configmap(NS, names.workspace_configmap("c1"))
    assert workspace["data"] == {"notes.txt": "kept\n", "settings.json": json.dumps({"accuracy": 0.9})}
    assert w.kube.obj("networkpolicy", NS, names.SANDBOX_NETWORK_POLICY) is not None
    job = w.kube.get_job(NS, names.evaluation_job("c1", "full"))
    assert job["metadata"]["ownerReferences"][0]["name"] == "c1"


def test_over_the_concurrency_limit_a_candidate_is_queued_then_admitted():
    w = World().ready()
    w.candidate("c1")
    w.candidate("c2", changes={"settings.json": json.dumps({"accuracy": 0.8})})
    w.run("c1")
    w.run("c2")
    assert (w.status("c2")["phase"], w.status("c2")["reason"]) == ("Proposed", "Queued")
    writes = len(w.kube.writes)
    w.run("c2")
    assert len(w.kube.writes) == writes  # still queued: nothing written again
    queued = []
    w.kube.finish_job(NS, names.evaluation_job("c1", "full"), message=metrics_message(0.2))
    queued = w.run("c1")
    assert queued == ["c2"]
    w.run("c2")
    assert w.status("c2")["phase"] == "Testing"


def test_rejected_by_user_through_the_annotation():
    w = World().ready()
    w.candidate()
    w.kube.objects[("candidate", NS, "c1")]["metadata"]["annotations"] = {constants.ANNOTATION_ACTION: "reject"}
    w.run()
    assert (w.status("c1")["phase"], w.status("c1")["reason"]) == ("Rejected", "RejectedByUser")


def test_a_missing_agent_label_is_added():
    w = World().ready()
    w.candidate()
    del w.kube.objects[("candidate", NS, "c1")]["metadata"]["labels"][constants.LABEL_AGENT]
    w.run()
    assert w.cand("c1")["metadata"]["labels"][constants.LABEL_AGENT] == "toy"


# ------------------------------------------------------------------ candidate: Testing
def test_running_job_writes_nothing_and_a_missing_job_is_recreated():
    w = World().ready()
    w.candidate()
    w.run()
    writes = len(w.kube.writes)
    w.run()
    assert len(w.kube.writes) == writes
    del w.kube.objects[("job", NS, names.evaluation_job("c1", "full"))]
    w.run()
    assert w.kube.get_job(NS, names.evaluation_job("c1", "full")) is not None
    assert w.status("c1")["phase"] == "Testing"


@pytest.mark.parametrize("finish, phase, reason", [
    (dict(succeeded=False, reason="DeadlineExceeded", message=None, exit_code=None), "Failed", "DeadlineExceeded"),
    (dict(succeeded=False, reason="BackoffLimitExceeded", message="Traceback: boom", exit_code=1),
     "Failed", "EvaluationFailed"),
    (dict(message="not json"), "Failed", "MetricsUnavailable"),
    (dict(message=json.dumps({"metrics": {"other": 1}})), "Failed", "MetricsUnavailable"),
    (dict(message=metrics_message(0.502)), "Rejected", "InsufficientImprovement"),
])
def test_evaluation_outcomes(finish, phase, reason):
    w = World().ready()
    w.candidate()
    w.run()
    w.evaluate(**finish)
    st = w.status("c1")
    assert (st["phase"], st["reason"]) == (phase, reason), st["message"]
    assert w.condition("c1", "Evaluated")["status"] == ("False" if phase == "Failed" else "True")
    if reason == "DeadlineExceeded":
        assert "timeoutSeconds" in st["message"] and "60s" in st["message"]
    if reason == "EvaluationFailed":
        assert "exit code 1" in st["message"] and "boom" in st["message"]


def test_a_result_waits_for_the_agents_baseline():
    w = World().ready()
    w.candidate()
    w.run()
    w.kube.objects[("agent", NS, "toy")]["status"]["baseline"] = {"revision": 1}
    writes = len(w.kube.writes)
    w.evaluate()
    assert len(w.kube.writes) == writes and w.status("c1")["phase"] == "Testing"


STAGES = [{"name": "quick", "args": ["--quick"], "passThreshold": 0.1}, {"name": "full"}]


def test_stages_pass_then_the_candidate_is_validated_and_applied():
    w = World(stages=STAGES).ready()
    w.candidate()
    w.run()
    w.evaluate(accuracy=0.9)
    st = w.status("c1")
    assert st["reason"] == "StagePassed" and st["validation"]["stage"] == "full"
    assert st["validation"]["stagesPassed"] == ["quick"]
    assert w.kube.get_job(NS, names.evaluation_job("c1", "full"))["spec"]["template"]["spec"]["containers"][0]["args"] \
        == []
    w.evaluate(accuracy=0.9)
    st = w.status("c1")
    assert (st["phase"], st["reason"]) == ("Applied", "Applied") and st["revision"] == 2
    assert [r["name"] for r in st["validation"]["stageResults"]] == ["quick", "full"]


def test_stage_threshold_not_met_rejects():
    w = World(stages=STAGES).ready()
    w.candidate()
    w.run()
    w.evaluate(accuracy=0.52)
    assert (w.status("c1")["phase"], w.status("c1")["reason"]) == ("Rejected", "StageThresholdNotMet")


# ------------------------------------------------------------------ candidate: Validated and Applied
def test_awaiting_approval_then_approved_through_the_annotation():
    w = World(autoApply=False).ready()
    w.candidate()
    w.run()
    w.evaluate()
    assert (w.status("c1")["phase"], w.status("c1")["reason"]) == ("Validated", "AwaitingApproval")
    w.kube.objects[("candidate", NS, "c1")]["metadata"]["annotations"] = {constants.ANNOTATION_ACTION: "approve"}
    w.run()
    assert w.status("c1")["phase"] == "Applied"


def test_a_paused_agent_does_not_apply():
    w = World().ready()
    w.candidate()
    w.run()
    w.kube.objects[("agent", NS, "toy")]["spec"]["paused"] = True
    w.evaluate()
    assert (w.status("c1")["phase"], w.status("c1")["reason"]) == ("Validated", "AgentPaused")


def test_apply_writes_a_snapshot_the_live_configmap_and_the_template_stamp():
    w = World(allowedImages=["toy:*"]).ready()
    w.candidate(image="toy:2")
    w.run()
    w.evaluate()
    snapshot = w.kube.get_configmap(NS, "toy-rev-2")
    assert snapshot["immutable"] and snapshot["data"] == {"settings.json": json.dumps({"accuracy": 0.9})}
    assert w.kube.get_configmap(NS, "toy-config")["data"] == snapshot["data"]
    template = w.kube.get_deployment(NS, "toy")["spec"]["template"]
    assert template["metadata"]["annotations"][constants.ANNOTATION_REVISION] == "2"
    assert template["spec"]["containers"][0]["image"] == "toy:2"
    ast = w.agent_status()
    assert ast["currentRevision"] == 2 and [r["revision"] for r in ast["revisions"]] == [1, 2]
    assert ast["baseline"]["revision"] == 2 and ast["baseline"]["metrics"][0]["value"] == 0.9
    assert "RevisionApplied" in w.kube.reasons()


def test_workspace_missing_at_apply_fails_the_candidate():
    w = World(autoApply=False).ready()
    w.candidate()
    w.run()
    w.evaluate()
    del w.kube.objects[("configmap", NS, names.workspace_configmap("c1"))]
    w.kube.objects[("candidate", NS, "c1")]["spec"]["approved"] = True
    w.run()
    assert (w.status("c1")["phase"], w.status("c1")["reason"]) == ("Failed", "WorkspaceMissing")


def applied(w: World) -> World:
    w.candidate()
    w.run()
    w.evaluate()
    assert w.status("c1")["phase"] == "Applied"
    return w


def test_rollout_complete_without_post_apply_check():
    w = applied(World().ready())
    w.run()
    assert w.status("c1")["reason"] == "Applied"  # rollout pending
    w.kube.set_rollout(NS, "toy", complete=True)
    w.run()
    assert w.status("c1")["reason"] == "RolloutComplete"


def test_failed_rollout_rolls_back_byte_for_byte():
    w = applied(World().ready())
    w.kube.set_rollout(NS, "toy", failed=True)
    w.run()
    st = w.status("c1")
    assert (st["phase"], st["reason"]) == ("RolledBack", "RolloutFailed")
    assert w.kube.get_configmap(NS, "toy-config")["data"] == {"settings.json": GOOD}
    ast = w.agent_status()
    assert ast["currentRevision"] == 1 and ast["revisions"][1]["rolledBackAt"]
    assert "baseline" not in ast or not ast["baseline"].get("metrics")
    assert w.kube.get_deployment(NS, "toy")["spec"]["template"]["metadata"]["annotations"][
        constants.ANNOTATION_REVISION] == "1"


def test_failed_rollout_without_rollback_is_reported():
    w = applied(World(rollback={"onRolloutFailure": False, "onRegression": False}).ready())
    w.kube.set_rollout(NS, "toy", failed=True)
    w.run()
    assert (w.status("c1")["phase"], w.status("c1")["reason"]) == ("Applied", "RolloutFailed")


@pytest.mark.parametrize("post, reason, phase", [
    (0.9, "Verified", "Applied"),
    (0.3, "Regression", "RolledBack"),
    (None, "VerificationInconclusive", "Applied"),
])
def test_post_apply_verification(post, reason, phase):
    w = applied(World(rollback={"onRolloutFailure": True, "onRegression": True}).ready())
    w.kube.set_rollout(NS, "toy", complete=True)
    w.run()
    assert w.status("c1")["reason"] == "Verifying"
    job = names.evaluation_job("c1", "postapply")
    assert w.kube.get_job(NS, job)["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == "toy-rev-2"
    w.kube.finish_job(NS, job, message=metrics_message(post) if post is not None else "no metrics")
    w.run()
    assert (w.status("c1")["phase"], w.status("c1")["reason"]) == (phase, reason)


# ------------------------------------------------------------------ agents
def test_target_not_found_degrades_the_agent():
    w = World()
    del w.kube.objects[("deployment", NS, "toy")]
    w.rec.reconcile_agent(NS, "toy")
    ast = w.agent_status()
    assert ast["phase"] == "Degraded" and w.agent_condition("Degraded")["reason"] == "TargetNotFound"
    assert "Deployment toy" in w.agent_condition("Ready")["message"]


def test_first_pass_snapshots_revision_one_and_starts_the_baseline():
    w = World()
    w.rec.reconcile_agent(NS, "toy")
    ast = w.agent_status()
    assert ast["phase"] == "Baselining" and ast["currentRevision"] == 1
    assert ast["revisions"][0] == {"revision": 1, "snapshot": "toy-rev-1", "image": "toy:1",
                                   "appliedAt": "2026-01-01T00:00:00Z"}
    assert w.kube.get_configmap(NS, "toy-rev-1")["data"] == {"settings.json": GOOD}
    assert w.kube.get_job(NS, names.baseline_job("toy", 1, "full")) is not None
    writes = len(w.kube.writes)
    w.rec.reconcile_agent(NS, "toy")  # nothing changed: nothing written
    assert len(w.kube.writes) == writes


def test_baseline_failure_degrades_the_agent():
    w = World()
    w.rec.reconcile_agent(NS, "toy")
    w.kube.finish_job(NS, names.baseline_job("toy", 1, "full"), succeeded=False, reason="BackoffLimitExceeded",
                      message="crash", exit_code=2)
    w.rec.reconcile_agent(NS, "toy")
    cond = w.agent_condition("Degraded")
    assert cond["status"] == "True" and cond["reason"] == "BaselineFailed" and "exit code 2" in cond["message"]


def test_staged_baseline_measures_every_stage():
    w = World(stages=STAGES).ready()
    stages = w.agent_status()["baseline"]["stages"]
    assert [s["name"] for s in stages] == ["quick", "full"]


def test_rollback_requested_by_annotation_and_by_spec():
    w = applied(World().ready())
    w.kube.objects[("agent", NS, "toy")]["metadata"]["annotations"] = {constants.ANNOTATION_ROLLBACK: "previous@1"}
    w.rec.reconcile_agent(NS, "toy")
    assert w.agent_status()["currentRevision"] == 1
    assert w.agent_status()["handledRollback"] == "annotation:previous@1"
    assert w.status("c1")["phase"] == "RolledBack"
    w.rec.reconcile_agent(NS, "toy")  # handled once
    assert w.kube.reasons().count("RolledBack") == 1
    w.kube.objects[("agent", NS, "toy")]["spec"]["rollbackToRevision"] = 7
    w.rec.reconcile_agent(NS, "toy")
    assert "RollbackFailed" in w.kube.reasons()


def test_proposal_on_request_and_then_only_after_the_interval():
    w = World().ready()
    w.kube.objects[("agent", NS, "toy")]["metadata"]["annotations"] = {constants.ANNOTATION_PROPOSE: "now"}
    w.rec.reconcile_agent(NS, "toy")
    made = w.kube.get_candidate(NS, "toy-g1")
    assert made is not None and made["spec"]["changes"]["settings.json"] != GOOD
    assert made["metadata"]["ownerReferences"][0]["kind"] == "DGMAgent"
    assert w.agent_status()["proposals"] == 1 and w.agent_status()["handledPropose"] == "now"
    assert w.agent_condition("Improving")["reason"] == "Proposed"
    w.kube.objects[("candidate", NS, "toy-g1")]["status"] = {"phase": "Rejected"}
    w.rec.reconcile_agent(NS, "toy")
    assert w.kube.get_candidate(NS, "toy-g2") is None
    w.clock.t += 600 * 60
    w.rec.reconcile_agent(NS, "toy")
    assert w.kube.get_candidate(NS, "toy-g2") is not None


def test_proposer_failure_is_a_condition_not_a_crash():
    w = World().ready()
    spec = w.kube.objects[("agent", NS, "toy")]["spec"]
    spec["proposer"] = {"type": "webhook", "webhook": {"url": "http://127.0.0.1:9/propose", "timeoutSeconds": 2}}
    w.kube.objects[("agent", NS, "toy")]["metadata"]["annotations"] = {constants.ANNOTATION_PROPOSE: "now"}
    w.rec.reconcile_agent(NS, "toy")
    assert w.agent_condition("Improving")["reason"] == "ProposerFailed"
    assert "ProposerFailed" in w.kube.reasons()


def test_paused_agent_and_concurrency_stop_proposals():
    w = World().ready()
    w.kube.objects[("agent", NS, "toy")]["spec"]["paused"] = True
    w.kube.objects[("agent", NS, "toy")]["metadata"]["annotations"] = {constants.ANNOTATION_PROPOSE: "now"}
    w.rec.reconcile_agent(NS, "toy")
    assert w.agent_status()["phase"] == "Paused" and w.agent_condition("Improving")["reason"] == "AgentPaused"
    w.kube.objects[("agent", NS, "toy")]["spec"]["paused"] = False
    w.candidate()
    w.rec.reconcile_agent(NS, "toy")
    assert w.agent_condition("Improving")["reason"] == "ConcurrencyLimitReached"
    assert w.kube.get_candidate(NS, "toy-g1") is None


def test_agent_pass_hands_back_candidates_that_need_work_and_prunes_the_archive():
    w = World().ready()
    w.kube.objects[("agent", NS, "toy")]["spec"]["archive"]["maxCandidates"] = 2
    for i in range(4):
        w.candidate(f"r{i}")
        w.kube.objects[("candidate", NS, f"r{i}")]["status"] = {
            "phase": "Rejected", "reason": "InsufficientImprovement",
            "validation": {"improvementScore": 0.001 * i, "metricsAfter": [{"name": "accuracy", "value": 0.5}]}}
    w.candidate("fresh")
    todo = w.rec.reconcile_agent(NS, "toy")
    assert todo == ["fresh"]
    left = {c["metadata"]["name"] for c in w.kube.list_candidates(NS, "toy")}
    assert "fresh" in left and len(left) <= 3
    assert w.agent_status()["archive"]["size"] == 5


# ------------------------------------------------------------------ isolation and images
def test_grader_mode_evaluates_the_candidates_image_in_its_own_container():
    w = World().ready()
    w.candidate(image="toy:2")
    w.run()
    pod = w.kube.get_job(NS, names.evaluation_job("c1", "full"))["spec"]["template"]["spec"]
    agent = next(c for c in pod["initContainers"] if c["name"] == "agent")
    assert agent["image"] == "toy:2" and agent["command"] == ["serve"]
    assert pod["containers"][0]["name"] == "grader" and pod["containers"][0]["image"] == "grader:1"
    finding = next(f for f in w.status("c1")["safety"]["findings"] if f["rule"] == "image_change")
    assert "needs approval" in finding["message"]


def test_an_image_only_candidate_is_evaluated_not_a_duplicate_of_the_current_revision():
    w = World().ready()
    w.candidate(changes={}, image="toy:2")
    w.run()
    st = w.status("c1")
    assert st["phase"] == "Testing", st
    pod = w.kube.get_job(NS, names.evaluation_job("c1", "full"))["spec"]["template"]["spec"]
    assert next(c for c in pod["initContainers"] if c["name"] == "agent")["image"] == "toy:2"
    # the current image under its own name is no change at all
    w.candidate("c2", changes={}, image="toy:1")
    w.run("c2")
    assert w.status("c2")["reason"] == "DuplicateCandidate"


def test_an_image_change_waits_for_approval_even_with_auto_apply():
    w = World().ready()
    w.candidate(image="toy:2")
    w.run()
    w.kube.finish_job(NS, names.evaluation_job("c1", "full"), containers={
        "grader": ContainerEnd(metrics_message(0.9), 0, "Completed"),
        "agent": ContainerEnd(None, 0, "Completed", "docker.io/library/toy@sha256:abc")})
    w.run()
    st = w.status("c1")
    assert (st["phase"], st["reason"]) == ("Validated", "AwaitingApproval") and "allowedImages" in st["message"]
    assert st["validation"]["agentImageID"] == "docker.io/library/toy@sha256:abc"
    w.kube.objects[("candidate", NS, "c1")]["spec"]["approved"] = True
    w.run()
    assert w.status("c1")["phase"] == "Applied"
    record = w.agent_status()["revisions"][-1]
    assert record["image"] == "toy:2" and record["imageID"] == "docker.io/library/toy@sha256:abc"


def test_single_process_mode_is_visible_and_refuses_image_candidates():
    w = World(mode="SingleProcess").ready()
    cond = w.agent_condition("EvaluationIsolated")
    assert cond["status"] == "False" and cond["reason"] == "SingleProcessEvaluation"
    w.candidate(image="toy:2")
    w.run()
    assert (w.status("c1")["phase"], w.status("c1")["reason"]) == ("Rejected", "ImageNeedsGrader")
    assert w.kube.get_job(NS, names.evaluation_job("c1", "full")) is None


def test_open_egress_ends_the_candidate_before_its_code_runs_and_marks_the_agent():
    w = World().ready()
    assert w.agent_condition("EvaluationIsolated")["status"] == "True"
    w.candidate()
    w.run()
    open_message = json.dumps({"sandbox": "EgressNotDenied", "error": "egress is not denied: 3 connection(s) succeeded"})
    w.kube.finish_job(NS, names.evaluation_job("c1", "full"), succeeded=False, reason="BackoffLimitExceeded",
                      containers={"egress-check": ContainerEnd(open_message, 3, "Error")})
    w.run()
    st = w.status("c1")
    assert (st["phase"], st["reason"]) == ("Failed", "SandboxNotEnforced")
    assert "egress is not denied" in st["message"] and "never ran" in st["message"]
    w.rec.reconcile_agent(NS, "toy")
    cond = w.agent_condition("SandboxEnforced")
    assert cond["status"] == "False" and cond["reason"] == "SandboxNotEnforced"


def test_out_of_memory_is_named():
    w = World().ready()
    w.candidate()
    w.run()
    w.kube.finish_job(NS, names.evaluation_job("c1", "full"), succeeded=False, reason="BackoffLimitExceeded",
                      containers={"agent": ContainerEnd(None, 137, "OOMKilled"),
                                  "grader": ContainerEnd(None, 1, "Error")})
    w.run()
    st = w.status("c1")
    assert (st["phase"], st["reason"]) == ("Failed", "OOMKilled") and "container agent OOMKilled" in st["message"]


def test_an_image_missing_on_the_node_fails_without_waiting_for_the_deadline():
    w = World().ready()
    w.candidate(image="toy:missing")
    w.run()
    w.kube.pod_waiting(NS, names.evaluation_job("c1", "full"), "agent", "ErrImageNeverPull",
                       'Container image "toy:missing" is not present with pull policy of Never')
    w.run()
    st = w.status("c1")
    assert (st["phase"], st["reason"]) == ("Failed", "ImageUnavailable") and "ErrImageNeverPull" in st["message"]


def test_the_grader_image_is_never_a_candidates_image():
    w = World(allowedImages=["*"]).ready()
    w.candidate(image="grader:1")
    w.run()
    st = w.status("c1")
    assert (st["phase"], st["reason"]) == ("Rejected", "UnsafeChange")
    assert any(f["rule"] == "grader_image" for f in st["safety"]["findings"])


def test_code_waits_for_approval_unless_auto_apply_code():
    w = World().ready()
    w.candidate(changes={"settings.json": json.dumps({"accuracy": 0.9}), "rank.py": "def rank(x):\n    return x\n"})
    w.run()
    w.evaluate()
    st = w.status("c1")
    assert (st["phase"], st["reason"]) == ("Validated", "AwaitingApproval") and "rank.py" in st["message"]
    w2 = World(autoApplyCode=True).ready()
    w2.candidate(changes={"settings.json": json.dumps({"accuracy": 0.9}), "rank.py": "def rank(x):\n    return x\n"})
    w2.run()
    w2.evaluate()
    assert w2.status("c1")["phase"] == "Applied"


# ------------------------------------------------------------------ search: duplicates, rank promotion, Optuna
def test_a_duplicate_proposal_is_decided_linked_and_never_evaluated():
    w = World(maxConcurrentCandidates=3).ready()
    w.candidate("c1")
    w.run("c1")
    assert w.status("c1")["filesDigest"].startswith("sha256:")
    w.candidate("c2")  # the same changes on the same parent: the same merged file set
    w.run("c2")
    st = w.status("c2")
    assert (st["phase"], st["reason"], st["duplicateOf"]) == ("Rejected", "DuplicateCandidate", "c1")
    assert "c1" in st["message"] and w.condition("c2", "Evaluated")["status"] == "False"
    assert w.kube.get_job(NS, names.evaluation_job("c2", "full")) is None
    # changes that change nothing duplicate the current revision
    w.candidate("c3", changes={"settings.json": GOOD})
    w.run("c3")
    assert (w.status("c3")["reason"], w.status("c3").get("duplicateOf")) == ("DuplicateCandidate", None)
    assert "current revision" in w.status("c3")["message"]
    # a different image is a different agent: not a duplicate
    w.candidate("c4", image="toy:2")
    w.run("c4")
    assert w.status("c4")["reason"] != "DuplicateCandidate"


def test_a_failed_original_does_not_block_a_retry():
    w = World(maxConcurrentCandidates=3).ready()
    w.candidate("c1")
    w.run("c1")
    w.evaluate("c1", succeeded=False, reason="BackoffLimitExceeded", exit_code=1, message="boom")
    assert w.status("c1")["phase"] == "Failed"
    w.candidate("c2")
    w.run("c2")
    assert w.status("c2")["phase"] == "Testing"


RANK_STAGES = [{"name": "quick", "args": ["--quick"]}, {"name": "full"}]


def test_rank_promotion_runs_the_full_stage_for_the_top_children_only():
    w = World(stages=RANK_STAGES, maxConcurrentCandidates=5).ready(accuracy=0.5)
    spec = w.kube.objects[("agent", NS, "toy")]["spec"]["evaluation"]
    spec["promotion"], spec["eta"] = "rank", 2.0
    for name, acc in (("c1", 0.7), ("c2", 0.6), ("c3", 0.8)):
        w.candidate(name, changes={"settings.json": json.dumps({"accuracy": acc})})
        w.run(name)
        w.evaluate(name, accuracy=acc)
    assert w.status("c1")["reason"] == "StagePassed"  # alone at its stage: promoted
    st = w.status("c2")  # below c1: outside the top 1 of 2
    assert (st["phase"], st["reason"]) == ("Rejected", "StageNotPromoted") and "rank 2 of 2" in st["message"]
    assert w.kube.get_job(NS, names.evaluation_job("c2", "full")) is None
    assert w.status("c3")["reason"] == "StagePassed"  # best of three: top 2 of 3
    # a child is compared with its parent on the same stage: c1's child gaining little is not promoted
    w.candidate("k1", parent="c1", changes={"settings.json": json.dumps({"accuracy": 0.72})})
    w.run("k1")
    w.evaluate("k1", accuracy=0.72)
    assert w.status("k1")["reason"] == "StageNotPromoted"


def test_the_parameters_proposer_samples_with_optuna_from_the_archive():
    w = World().ready()
    w.kube.objects[("agent", NS, "toy")]["metadata"]["annotations"] = {constants.ANNOTATION_PROPOSE: "now"}
    w.rec.reconcile_agent(NS, "toy")
    made = w.kube.get_candidate(NS, "toy-g1")
    assert made["spec"]["description"].startswith("tpe sample:")


def test_archive_trials_replay_every_lineage():
    from dgm_operator.controller.proposals import archive_of, archive_trials, merged_files
    from dgm_operator.engine.types import SearchParam

    def cand(name, parent, value, score):
        return {"metadata": {"name": name, "creationTimestamp": f"2026-01-01T00:00:0{name[-1]}Z"},
                "spec": {"parent": parent, "changes": {} if value is None else {"s.json": json.dumps({"a": value})}},
                "status": {"phase": "Rejected", "reason": "InsufficientImprovement",
                           "validation": {"improvementScore": score}}}
    root = {"s.json": json.dumps({"a": 0.1}), "other.txt": "x"}
    cands = [cand("c1", None, 0.5, 0.2), cand("c2", "c1", None, 0.1), cand("c3", "c2", 0.9, 0.4)]
    files = merged_files(cands, root)
    assert json.loads(files["c2"]["s.json"]) == {"a": 0.5} and files["c3"]["other.txt"] == "x"
    space = [SearchParam("s.json", "a", "float", 0.0, 1.0)]
    trials = archive_trials(archive_of(cands), cands, root, space)
    assert sorted((t[0]["s.json:a"], t[1]) for t in trials) == [(0.1, 0.0), (0.5, 0.1), (0.5, 0.2), (0.9, 0.4)]
