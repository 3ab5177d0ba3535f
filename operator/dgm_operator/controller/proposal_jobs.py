"""Proposals that run as Jobs (``proposer.type: llm`` and ``job``): start one, read the
finished ones back and turn each result into a candidate or a ProposerFailed (the Job's
manifests and context document are in :mod:`.proposal_builders`). Nothing here waits: a pass starts a Job and returns; the Job's
completion reconciles the agent again (``handlers.job_event``), and that pass reads it.

Order of writes, so that a crash at any point neither loses the tokens nor duplicates a
candidate:

* start: the agent's proposal counter first (``status.proposals``: the number names the Job
  and the candidate), then the Job, its NetworkPolicy and its context ConfigMap (a pod cannot
  start before the ConfigMap exists; a crash before it leaves a Job that ends at its deadline
  and is read back as a failure);
* read back: the token ledger on the agent (idempotent: it remembers the Jobs it counted),
  then the candidate (AlreadyExists is success) and its ``status.proposal``, then the Job's
  ``dgm.io/proposal-read`` label (and a ``dgm.io/proposal-result`` annotation saying what it
  became), which takes it out of the list of Jobs in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..api import constants
from ..api import models as api
from ..engine import proposal
from . import builders, names, proposal_builders as pb
from . import metrics as telemetry
from .context import Context
from .jobs import JobState, job_state
from .kubeapi import Obj
from .observed import AgentView
from .proposals import select_origin


def runs_as_job(agent: api.DGMAgent) -> bool:
    return agent.spec.proposer.type.value in ("llm", "job")


def unread_selector(agent: str) -> str:
    """The agent's proposal Jobs whose result has not been read yet (running, or finished and
    waiting): read ones carry the dgm.io/proposal-read label and stay out of the list."""
    return (f"{constants.LABEL_AGENT}={agent},{constants.LABEL_ROLE}={constants.ROLE_PROPOSAL},"
            f"!{constants.LABEL_PROPOSAL_READ}")


def _mark_read(ctx: Context, namespace: str, job_name: str, became: str) -> None:
    ctx.kube.patch_job_metadata(namespace, job_name, {
        "labels": {constants.LABEL_PROPOSAL_READ: "true"},
        "annotations": {constants.ANNOTATION_PROPOSAL_RESULT: became}})


def tokens_today(ctx: Context, view: AgentView) -> int:
    ledger = view.status.tokens.to_wire() if view.status.tokens else None
    return proposal.tokens_today(ledger, ctx.now_datetime())


def max_tokens_per_day(agent: api.DGMAgent) -> int | None:
    llm = agent.spec.proposer.llm
    return llm.max_tokens_per_day if llm is not None and agent.spec.proposer.type.value == "llm" else None


@dataclass
class Outcome:
    """What one proposal became (the agent's status.lastProposal and Improving condition)."""

    created: bool
    message: str
    candidate: str | None = None
    job_name: str | None = None
    reason: str | None = None

    def record(self, now: Any, *, started: bool = False) -> api.ProposalOutcome:
        """status.lastProposal (``started``: its Job runs, the result comes later); every field
        set, so the merge patch replaces the previous one."""
        result = "Started" if started else "Proposed" if self.created else "Failed"
        return api.ProposalOutcome(result=result, candidate=self.candidate, job_name=self.job_name,
                                   reason=(self.reason or "ProposerFailed") if result == "Failed" else None,
                                   message=self.message[:1000], time=now)


def outcome(state: str, job_reason: str, log: str | bytes | None, *, propose_message: str | None = None,
            read_error: str | None = None) -> proposal.ProposalResult:
    """The result of a finished proposal Job: ``state`` is ``succeeded`` or ``failed`` (the
    Job's condition), ``log`` the ``result`` container's log (bounded), ``propose_message``
    the ``propose`` container's termination message (its log tail when it crashed)."""
    if state == "failed":
        why = {"DeadlineExceeded": "the proposal Job ran past its deadline (activeDeadlineSeconds)",
               "BackoffLimitExceeded": "the proposal Job's pod failed"}.get(job_reason, f"the proposal Job failed ({job_reason or 'no reason'})")
        if propose_message:
            why += f"; the proposer said: {' '.join(propose_message.split())[-600:]}"
        return proposal.failure("ProposalJobFailed", why)
    if log is None:
        return proposal.failure("ResultUnavailable", f"the result container's log cannot be read: {read_error or 'no pod'}")
    try:
        return proposal.parse_result_log(log)
    except proposal.ResultError as exc:
        return proposal.failure("InvalidResult", str(exc))


def candidate_body(agent_obj: Mapping[str, Any], *, name: str, parent: str | None,
                   result: proposal.ProposalResult) -> dict[str, Any]:
    """The ImprovementCandidate a successful proposal becomes (owned by the agent, as the
    in-process proposers' candidates are)."""
    meta = agent_obj["metadata"]
    spec: dict[str, Any] = {
        "agentRef": meta["name"],
        "improvementType": (result.improvement_type.value if result.improvement_type else "AlgorithmModification"),
        "description": result.description,
        "changes": dict(result.changes),
        "expectedImprovement": result.expected_improvement if result.expected_improvement is not None else 0.0,
        "riskLevel": result.risk_level if result.risk_level is not None else 0.5,
    }
    if parent:
        spec["parent"] = parent
    return {
        "apiVersion": constants.API_VERSION, "kind": constants.CANDIDATE_KIND,
        "metadata": {"name": name, "namespace": meta["namespace"],
                     "labels": {constants.LABEL_AGENT: meta["name"], constants.LABEL_MANAGED_BY: constants.FIELD_MANAGER},
                     "ownerReferences": [builders.owner_reference(agent_obj)]},
        "spec": spec,
    }


def proposal_status(result: proposal.ProposalResult, job_name: str) -> dict[str, Any]:
    """``status.proposal`` of the candidate: the Job, the model and the tokens it spent."""
    u = result.usage
    out: dict[str, Any] = {"jobName": job_name, "tokens": {"prompt": u.prompt_tokens, "completion": u.completion_tokens,
                                                            "total": u.total_tokens}, "calls": u.calls}
    if result.model:
        out["model"] = result.model
    if u.estimated:
        out["estimated"] = True
    return out


def failure_message(result: proposal.ProposalResult) -> str:
    """The message of ProposerFailed (the agent's Improving condition and its Event)."""
    return f"{result.reason or 'ProposerFailed'}: {result.error}"


def read_finished(ctx: Context, view: AgentView) -> tuple[int, list[Outcome]]:
    """Read every finished, unread proposal Job of the agent. Returns (Jobs still running,
    what the finished ones became)."""
    running, outcomes = 0, []
    for job in ctx.kube.list_jobs(view.namespace, unread_selector(view.name)):
        state, reason = job_state(job)
        if state is JobState.RUNNING:
            running += 1
            continue
        outcomes.append(_read(ctx, view, job, state, reason))
    return running, outcomes


def _read(ctx: Context, view: AgentView, job: Obj, state: JobState, job_reason: str) -> Outcome:
    namespace, job_name = view.namespace, job["metadata"]["name"]
    meta = job["metadata"]
    candidate = (meta.get("labels") or {}).get(constants.LABEL_PROPOSAL) or job_name
    parent = (meta.get("annotations") or {}).get(constants.ANNOTATION_PARENT) or None
    if state is JobState.SUCCEEDED:
        log = ctx.kube.job_container_log(namespace, job_name, pb.RESULT_CONTAINER, proposal.MAX_RESULT_LOG_BYTES + 1)
        result = outcome("succeeded", job_reason, log,
                            read_error="no pod, no log, or no permission for pods/log (see the operator's log)")
    else:
        end = ctx.kube.job_pod_containers(namespace, job_name).get(pb.PROPOSE_CONTAINER)
        message = None
        if end is not None:
            message = " ".join(x for x in (end.reason, f"exit code {end.exit_code}" if end.exit_code else "",
                                           end.message or "") if x)
        result = outcome("failed", job_reason, None, propose_message=message)
    _charge(ctx, view, job_name, result)
    if result.ok:
        ctx.kube.create_candidate(namespace, candidate_body(view.obj, name=candidate, parent=parent, result=result))
        created = ctx.kube.get_candidate(namespace, candidate)
        if created is not None:
            ctx.kube.patch_status(created, {"proposal": proposal_status(result, job_name)})
        u = result.usage
        ctx.kube.event(view.obj, "CandidateProposed",
                       f"{candidate} from {parent or 'the baseline'} ({u.total_tokens} tokens): {result.description}"[:1000])
        _mark_read(ctx, namespace, job_name, candidate)
        return Outcome(True, f"proposed {candidate} from {parent or 'the baseline'} by Job {job_name}",
                       candidate=candidate, job_name=job_name)
    message = failure_message(result)
    ctx.kube.event(view.obj, "ProposerFailed", f"Job {job_name}: {message}"[:1000], warning=True)
    _mark_read(ctx, namespace, job_name, f"failed: {result.reason}")
    return Outcome(False, f"proposal Job {job_name} failed: {message}", candidate=candidate, job_name=job_name,
                   reason=result.reason)


def _charge(ctx: Context, view: AgentView, job_name: str, result: proposal.ProposalResult) -> None:
    """Count the Job's tokens on the agent's ledger, once, before anything else is written."""
    ledger = view.status.tokens.to_wire() if view.status.tokens else None
    if job_name in ((ledger or {}).get("charged") or []):
        return
    u = result.usage
    updated = proposal.charge(ledger, u.total_tokens, ctx.now_datetime(), job=job_name)
    view.obj = ctx.kube.patch_status(view.obj, {"tokens": updated})
    view.status.tokens = api.TokenLedger.model_validate(updated)
    telemetry.count_proposal(view.namespace, view.name, prompt_tokens=u.prompt_tokens,
                             completion_tokens=u.completion_tokens, error_reason=result.reason if not result.ok else None)


def start(ctx: Context, view: AgentView) -> tuple[bool, str]:
    """Start proposal number ``status.proposals + 1`` as a Job. (started, what happened)."""
    namespace, name, agent = view.namespace, view.name, view.agent
    origin = select_origin(ctx, view)
    candidate = names.proposed_candidate(name, origin.number)
    job_name = names.proposal_job(name, origin.number)
    parent_obj = ctx.kube.get_candidate(namespace, origin.parent) if origin.parent else None
    try:
        context = pb.build_context(agent, proposal_name=candidate, parent_files=origin.working_files,
                                   parent=parent_obj, candidates=view.candidates)
        propose = _propose_container(ctx, view)
        deadline = pb.deadline_seconds(agent.spec.proposer)
        egress = _egress(agent)
    except ValueError as exc:
        ctx.kube.event(view.obj, "ProposerFailed", str(exc), warning=True)
        return False, f"proposer {agent.spec.proposer.type.value} failed: {exc}"
    # the counter first: the number names the Job, so a restart never reuses it
    marks: dict[str, Any] = {"proposals": origin.number, "lastProposalTime": ctx.now()}
    requested = view.annotation(constants.ANNOTATION_PROPOSE)
    if requested:
        marks["handledPropose"] = requested
    view.obj = ctx.kube.patch_status(view.obj, marks)
    view.status = api.DGMAgentStatus.model_validate(view.obj.get("status") or {})
    ctx.kube.create(pb.proposal_job(
        name=job_name, namespace=namespace, owner=builders.owner_reference(view.obj), agent=name, candidate=candidate,
        parent=origin.parent, propose=propose, result_image=ctx.proposer_image, deadline_seconds=deadline,
        sandbox=agent.spec.evaluation.sandbox))
    job = ctx.kube.get_job(namespace, job_name)
    if job is None:  # deleted at once by someone: the next pass proposes again
        return False, f"proposal Job {job_name} vanished after its creation"
    owner = builders.owner_reference(job)
    ctx.kube.create(pb.proposal_network_policy(job_name, namespace, owner=owner, agent=name, candidate=candidate,
                                               egress=egress))
    ctx.kube.create(pb.context_configmap(job_name, namespace, proposal.context_document(context), owner=owner,
                                         agent=name, candidate=candidate))
    origin_name = origin.parent or "the baseline"
    ctx.kube.event(view.obj, "ProposalStarted", f"Job {job_name} proposes {candidate} from {origin_name}")
    return True, f"proposal Job {job_name} started from {origin_name}"


def _egress(agent: api.DGMAgent) -> list[dict[str, Any]]:
    spec = agent.spec.proposer
    if spec.type.value == "llm" and spec.llm is not None:
        return pb.llm_egress(spec.llm)
    return pb.job_egress(spec.job) if spec.job is not None else []


def _propose_container(ctx: Context, view: AgentView) -> dict[str, Any]:
    spec = view.agent.spec.proposer
    if spec.type.value == "llm":
        if spec.llm is None:
            raise ValueError("proposer.llm is required when proposer.type is llm")
        budget = proposal.remaining_tokens(tokens_today(ctx, view), spec.llm.max_tokens_per_day)
        return pb.llm_propose_container(spec.llm, image=ctx.proposer_image, token_budget=budget)
    if spec.job is None:
        raise ValueError("proposer.job is required when proposer.type is job")
    return pb.job_propose_container(spec.job)
