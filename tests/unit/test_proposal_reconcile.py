"""The agent reconciler with proposers that run as Jobs (llm, job), through the dict-backed
FakeKube: a Job starts (with its NetworkPolicy and context), the result is read back into a
candidate with its tokens, a bad reply ends as ProposerFailed, the daily budget pauses
proposals until the next UTC day, and reading a result twice changes nothing."""

from __future__ import annotations

import json

from test_reconcilers import GOOD, NS, World

from dgm_operator.api import constants
from dgm_operator.controller import metrics, names
from dgm_operator.controller.kubeapi import ContainerEnd
from dgm_operator.controller import proposal_builders as pb
from dgm_operator.engine import proposal

JOB = names.proposal_job("toy", 1)
BETTER = json.dumps({"accuracy": 0.9})


def llm_world(**llm) -> World:
    w = World().ready()
    spec = w.kube.objects[("agent", NS, "toy")]["spec"]
    spec["proposer"] = {"type": "llm", "llm": {"baseURL": "http://standin.llm.svc:8000/v1", "model": "stand-in",
                                               "apiKeySecretRef": {"name": "llm", "key": "token"}, **llm}}
    w.rec.ctx.proposer_image = "dgm-operator:test"
    return w


def ask(w: World, value: str = "now") -> None:
    w.kube.objects[("agent", NS, "toy")]["metadata"]["annotations"] = {constants.ANNOTATION_PROPOSE: value}
    w.rec.reconcile_agent(NS, "toy")


def result_log(**kw) -> str:
    usage = proposal.ProposalUsage(prompt_tokens=900, completion_tokens=100, total_tokens=1000, calls=2)
    fields = {"description": "raise accuracy", "changes": {"settings.json": BETTER}, "usage": usage,
              "model": "stand-in", **kw}
    if "error" in kw:
        fields.pop("changes"), fields.pop("description")
    return "noise\n" + proposal.render_result(proposal.ProposalResult(**fields))


def finish(w: World, log: str | None, *, succeeded: bool = True, reason: str = "") -> None:
    w.kube.finish_job(NS, JOB, succeeded=succeeded, reason=reason)
    if log is not None:
        w.kube.container_logs[(JOB, pb.RESULT_CONTAINER)] = log
    w.rec.reconcile_agent(NS, "toy")


def test_a_due_proposal_starts_a_job_with_its_policy_and_context() -> None:
    w = llm_world()
    ask(w)
    job = w.kube.get_job(NS, JOB)
    assert job is not None and w.kube.get_candidate(NS, "toy-g1") is None
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "dgm-operator:test"
    assert pod["initContainers"][0]["command"] == ["dgm", "propose-llm"]
    assert job["metadata"]["labels"][constants.LABEL_PROPOSAL] == "toy-g1"
    policy = w.kube.obj("networkpolicy", NS, JOB)
    assert policy is not None and policy["metadata"]["ownerReferences"][0]["kind"] == "Job"
    assert {"ports": [{"port": 8000, "protocol": "TCP"}]} in policy["spec"]["egress"]
    cm = w.kube.get_configmap(NS, JOB)
    assert cm is not None and cm["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    context = proposal.load_context(cm["data"]["context.json"])
    assert context.parent.files == {"settings.json": GOOD} and context.proposal == "toy-g1"
    assert context.rules.allowed_files == ["settings.json", "*.py"]
    # the objects come in the order that keeps the pod from running before its policy exists
    created = [w_.kind for w_ in w.kube.writes_of("create") if w_.name == JOB]
    assert created == ["Job", "NetworkPolicy", "ConfigMap"]
    st = w.agent_status()
    assert st["proposals"] == 1 and st["proposalsInFlight"] == 1 and st["handledPropose"] == "now"
    assert w.agent_condition("Improving")["reason"] == "ProposalStarted"
    assert "ProposalStarted" in w.kube.reasons()


def test_a_running_proposal_counts_against_the_concurrency_limit() -> None:
    w = llm_world()
    ask(w)
    ask(w, "again")  # maxConcurrentCandidates is 1 in this world
    assert w.agent_condition("Improving")["reason"] == "ConcurrencyLimitReached"
    assert w.kube.get_job(NS, names.proposal_job("toy", 2)) is None


def test_the_result_becomes_a_candidate_with_its_tokens() -> None:
    w = llm_world()
    ask(w)
    before = metrics.PROPOSER_TOKENS.labels(NS, "toy", "prompt")._value.get()
    finish(w, result_log())
    cand = w.kube.get_candidate(NS, "toy-g1")
    assert cand is not None and cand["spec"]["changes"] == {"settings.json": BETTER}
    assert cand["spec"]["description"] == "raise accuracy" and "parent" not in cand["spec"]
    assert cand["status"]["proposal"] == {"jobName": JOB, "model": "stand-in", "calls": 2,
                                          "tokens": {"prompt": 900, "completion": 100, "total": 1000}}
    st = w.agent_status()
    assert st["tokens"]["used"] == 1000 and st["tokens"]["total"] == 1000 and st["tokens"]["charged"] == [JOB]
    assert st["proposalsInFlight"] == 0
    assert w.agent_condition("Improving")["reason"] == "Proposed"
    assert {k: st["lastProposal"][k] for k in ("result", "candidate", "jobName")} == \
        {"result": "Proposed", "candidate": "toy-g1", "jobName": JOB}
    job = w.kube.get_job(NS, JOB)
    assert job["metadata"]["annotations"][constants.ANNOTATION_PROPOSAL_RESULT] == "toy-g1"
    assert job["metadata"]["labels"][constants.LABEL_PROPOSAL_READ] == "true"
    assert metrics.PROPOSER_TOKENS.labels(NS, "toy", "prompt")._value.get() == before + 900
    # the candidate then goes through the usual lifecycle
    w.run("toy-g1")
    assert w.status("toy-g1")["phase"] == "Testing"


def test_reading_a_result_again_changes_nothing() -> None:
    w = llm_world()
    ask(w)
    finish(w, result_log())
    # a crash after the ledger and the candidate, before the Job was marked read
    del w.kube.objects[("job", NS, JOB)]["metadata"]["labels"][constants.LABEL_PROPOSAL_READ]
    w.rec.reconcile_agent(NS, "toy")
    assert w.agent_status()["tokens"]["used"] == 1000
    assert len([x for x in w.kube.writes_of("create", "ImprovementCandidate")]) == 2  # the retry met AlreadyExists
    assert len(w.kube.list_candidates(NS, "toy")) == 1
    w.rec.reconcile_agent(NS, "toy")  # Improving moves from Proposed to ConcurrencyLimitReached
    writes = len(w.kube.writes)
    w.rec.reconcile_agent(NS, "toy")
    assert len(w.kube.writes) == writes, "a quiet pass writes nothing"


def test_a_bad_reply_ends_as_proposer_failed_with_the_reason_and_its_tokens() -> None:
    w = llm_world()
    ask(w)
    before = metrics.PROPOSER_ERRORS.labels(NS, "toy", "MalformedReply")._value.get()
    finish(w, result_log(error="no usable edits after 3 replies: the reply holds no SEARCH/REPLACE block",
                         reason="MalformedReply"))
    assert w.kube.get_candidate(NS, "toy-g1") is None
    cond = w.agent_condition("Improving")
    assert cond["reason"] == "ProposerFailed" and "MalformedReply: no usable edits" in cond["message"]
    assert w.agent_status()["tokens"]["used"] == 1000
    assert "ProposerFailed" in w.kube.reasons()
    assert metrics.PROPOSER_ERRORS.labels(NS, "toy", "MalformedReply")._value.get() == before + 1
    # the failure stays in status and in the condition on later passes (its Event expires)
    w.clock.t += 60
    w.rec.reconcile_agent(NS, "toy")
    cond = w.agent_condition("Improving")
    assert cond["reason"] == "ProposerFailed" and "the last proposal failed" in cond["message"]
    last = w.agent_status()["lastProposal"]
    assert (last["result"], last["reason"], last["candidate"], last["jobName"]) == \
        ("Failed", "MalformedReply", "toy-g1", JOB)
    # until the next proposal starts: then the record is that one's, with no stale reason
    ask(w, "again")
    last = w.agent_status()["lastProposal"]
    assert (last["result"], last["candidate"], "reason" in last) == ("Started", "toy-g2", False), last
    assert w.agent_condition("Improving")["reason"] == "ProposalStarted"


def test_a_failed_job_and_an_unreadable_log_are_proposer_failures() -> None:
    w = llm_world()
    ask(w)
    w.kube.finish_job(NS, JOB, succeeded=False, reason="BackoffLimitExceeded", containers={
        pb.PROPOSE_CONTAINER: ContainerEnd("Traceback\nMemoryError", 137, "OOMKilled")})
    w.rec.reconcile_agent(NS, "toy")
    cond = w.agent_condition("Improving")
    assert cond["reason"] == "ProposerFailed" and "ProposalJobFailed" in cond["message"]
    assert "OOMKilled exit code 137 Traceback MemoryError" in cond["message"]
    w.clock.t += 600 * 60
    w.rec.reconcile_agent(NS, "toy")  # the next proposal after the interval
    job2 = names.proposal_job("toy", 2)
    assert w.kube.get_job(NS, job2) is not None
    w.kube.finish_job(NS, job2)  # succeeded, but no log can be read
    w.rec.reconcile_agent(NS, "toy")
    assert "ResultUnavailable" in w.agent_condition("Improving")["message"]


def test_a_spent_budget_pauses_proposals_until_the_next_utc_day() -> None:
    w = llm_world(maxTokensPerDay=1500)
    ask(w)
    finish(w, result_log())  # 1000 tokens
    w.kube.objects[("candidate", NS, "toy-g1")]["status"]["phase"] = "Rejected"
    ask(w, "second")  # the budget still has 500 tokens: the Job gets them
    job2 = w.kube.get_job(NS, names.proposal_job("toy", 2))
    env = {e["name"]: e.get("value") for e in job2["spec"]["template"]["spec"]["initContainers"][0]["env"]}
    assert env["DGM_LLM_TOKEN_BUDGET"] == "500"
    w.kube.finish_job(NS, names.proposal_job("toy", 2))
    w.kube.container_logs[(names.proposal_job("toy", 2), pb.RESULT_CONTAINER)] = result_log(
        error="today's budget ran out", reason="TokenBudgetExhausted")
    ask(w, "third")
    cond = w.agent_condition("Improving")
    assert cond["reason"] == "TokenBudgetExhausted" and "proposals pause until 2026-01-02T00:00:00Z" in cond["message"]
    assert w.agent_status()["tokens"]["used"] == 2000
    assert w.kube.get_job(NS, names.proposal_job("toy", 3)) is None
    w.clock.t += 24 * 3600  # the next UTC day
    w.rec.reconcile_agent(NS, "toy")
    job3 = w.kube.get_job(NS, names.proposal_job("toy", 3))
    assert job3 is not None, w.agent_condition("Improving")
    env = {e["name"]: e.get("value") for e in job3["spec"]["template"]["spec"]["initContainers"][0]["env"]}
    assert env["DGM_LLM_TOKEN_BUDGET"] == "1500"


def test_a_job_proposer_runs_the_users_image() -> None:
    w = World().ready()
    w.kube.objects[("agent", NS, "toy")]["spec"]["proposer"] = {
        "type": "job", "job": {"image": "example.org/coder:1", "command": ["coder"],
                               "egress": [{"ports": [{"port": 443}]}]}}
    ask(w)
    job = w.kube.get_job(NS, JOB)
    (propose,) = job["spec"]["template"]["spec"]["initContainers"]
    assert propose["image"] == "example.org/coder:1" and propose["command"] == ["coder"]
    assert job["spec"]["activeDeadlineSeconds"] == 1800
    assert {"ports": [{"port": 443, "protocol": "TCP"}]} in w.kube.obj("networkpolicy", NS, JOB)["spec"]["egress"]


def test_the_operator_never_touches_a_secret() -> None:
    w = llm_world()
    ask(w)
    finish(w, result_log())
    kinds = {x.kind for x in w.kube.writes}
    assert "Secret" not in kinds
    assert not [k for k in w.kube.objects if k[0] not in ("agent", "candidate", "configmap", "deployment", "job",
                                                          "networkpolicy")]
