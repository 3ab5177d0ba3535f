"""The DGMAgent reconciler: the target, revision 1, the baseline of the current revision,
rollback requests, the improvement loop (proposals), the archive summary and retention."""

from __future__ import annotations

from ..api import constants
from ..api import models as api
from ..engine import policies
from . import builders, mapping, names, proposal_jobs, proposals, revisions
from . import metrics as telemetry
from .conditions import set_condition
from .context import Context
from .evaluation import Owner, is_single_process, revision_image, stages, start_stage
from .jobs import JobState, read_result
from .observed import AgentView, candidate_phase, needs_attention
from .status import write_agent_changes


def reconcile(ctx: Context, namespace: str, name: str) -> list[str]:
    """One pass over an agent. Returns the agent's candidates that still need the operator
    (see :func:`.observed.needs_attention`): the agent's pass is their safety net. Plans the
    agent's next pass in ``ctx.schedule`` (the next proposal of the interval)."""
    key = (namespace, name)
    with ctx.locks("agent", namespace, name):
        obj = ctx.kube.get_agent(namespace, name)
        if obj is None:
            ctx.schedule.forget(key)
            return []
        if obj["metadata"].get("deletionTimestamp"):
            return []
        spec = api.DGMAgent.model_validate(obj).spec
        view = AgentView.of(obj, ctx.kube.get_deployment(namespace, spec.target.deployment),
                            ctx.kube.get_configmap(namespace, spec.target.config_map))
        patch = api.DGMAgentStatus(conditions=list(view.status.conditions or []))
        if not _target_present(ctx, view, patch):
            ctx.schedule.plan(key, None)
            return []
        _label_targets(ctx, view)
        _snapshot_revision_one(ctx, view, patch)
        ready = _baseline(ctx, view, patch)
        view.candidates = ctx.kube.list_candidates(namespace, name)
        request = rollback_request(view)
        if request is not None:
            handled, target = request
            write_agent_changes(ctx, view.obj, api.DGMAgentStatus(handled_rollback=handled, **_set(patch)))
            revisions.rollback(ctx, view.obj, target, reason="RollbackRequested",
                               message=f"rollback to revision {target} requested")
            ctx.schedule.plan(key, None)
            return []
        _evaluation_conditions(ctx, view, patch)
        active = _improvement_loop(ctx, view, patch, ready)
        archive = proposals.archive_of(view.candidates)
        summary = archive.summary()
        keep = {r.candidate for r in view.status.revisions or [] if r.candidate and not r.rolled_back_at}
        for victim in archive.prune(view.agent.spec.archive.max_candidates, protected=keep):
            ctx.kube.delete_candidate(namespace, victim)
        telemetry.set_candidate_counts(namespace, name, [candidate_phase(c) for c in view.candidates])
        patch.phase = ("Paused" if view.agent.spec.paused else "Improving" if active else "Ready") if ready else "Baselining"
        patch.observed_generation, patch.active_candidates = view.generation, active
        patch.archive = api.ArchiveStatus(size=summary.size, best_score=summary.best_score,
                                          best_candidate=summary.best_candidate)
        write_agent_changes(ctx, view.obj, patch)
        ctx.schedule.plan(key, _next_proposal(ctx, view, patch, ready))
        return [c["metadata"]["name"] for c in view.candidates if needs_attention(c)]


def _next_proposal(ctx: Context, view: AgentView, patch: api.DGMAgentStatus, ready: bool) -> float | None:
    """When the interval makes the agent's next proposal due, if it may propose on its own:
    ready and not paused. A time already past (a proposal due but held back by the
    concurrency limit) is not planned: the candidate that frees a slot pokes the agent."""
    if not ready or view.agent.spec.paused:
        return None
    if patch.last_proposal_time is not None:
        view.status.last_proposal_time = patch.last_proposal_time
    at = proposals.next_proposal_at(view)
    return at if at is not None and at > ctx.clock() else None


def _label_targets(ctx: Context, view: AgentView) -> None:
    """Label the target Deployment and live ConfigMap ``dgm.io/target: "true"``, once: the
    operator's watches select them by it (and so see their changes without polling)."""
    for target in (view.deployment, view.live_configmap):
        if target is not None and ((target["metadata"].get("labels") or {}).get(constants.LABEL_TARGET) != "true"):
            ctx.kube.patch_metadata(target, {"labels": {constants.LABEL_TARGET: "true"}})


def _set(patch: api.DGMAgentStatus) -> dict[str, object]:
    """The fields a patch has set so far (to carry them into another patch)."""
    return {k: getattr(patch, k) for k in patch.model_fields_set}


def _condition(ctx: Context, view: AgentView, patch: api.DGMAgentStatus, type_: str, status: bool | str, reason: str,
               message: str) -> None:
    patch.conditions = set_condition(patch.conditions, type_, status, reason, message,
                                     generation=view.generation, now=ctx.now())


def _target_present(ctx: Context, view: AgentView, patch: api.DGMAgentStatus) -> bool:
    target = view.agent.spec.target
    missing = ([f"Deployment {target.deployment}"] if view.deployment is None else []) + \
              ([f"ConfigMap {target.config_map}"] if view.live_configmap is None else [])
    if not missing:
        return True
    message = " and ".join(missing) + f" not found in {view.namespace}"
    _condition(ctx, view, patch, "Degraded", True, "TargetNotFound", message)
    _condition(ctx, view, patch, "Ready", False, "TargetNotFound", message)
    patch.phase, patch.observed_generation = "Degraded", view.generation
    write_agent_changes(ctx, view.obj, patch)
    return False


def _snapshot_revision_one(ctx: Context, view: AgentView, patch: api.DGMAgentStatus) -> None:
    """Revision 1: the live files before the operator ever changed them."""
    if view.status.revisions:
        return
    assert view.deployment is not None and view.live_configmap is not None
    target = view.agent.spec.target
    snapshot = names.revision_snapshot(view.name, 1)
    ctx.kube.create(builders.files_configmap(
        snapshot, view.namespace, dict(view.live_configmap.get("data") or {}), owner=builders.owner_reference(view.obj),
        labels={constants.LABEL_AGENT: view.name, constants.LABEL_REVISION: "1", constants.LABEL_ROLE: "revision"}))
    image = revisions.agent_container(view.deployment, target.container)["image"]
    first = api.RevisionRecord(revision=1, snapshot=snapshot, image=image, applied_at=ctx.now_datetime())
    view.status.revisions, view.status.current_revision = [first], 1
    patch.revisions, patch.current_revision = [first], 1
    ctx.kube.event(view.obj, "Snapshotted", f"live ConfigMap {target.config_map} kept as revision 1")


def _baseline(ctx: Context, view: AgentView, patch: api.DGMAgentStatus) -> bool:
    """Measure the current revision once (one Job per stage, owned by the agent, so each
    stage of a candidate is scored against the same stage of its base). True once ready."""
    revision = int(view.status.current_revision or 1)
    baseline = view.status.baseline
    if baseline is None or baseline.revision != revision or not baseline.metrics:
        measured, failure = measure_baseline(ctx, view, revision)
        if measured is not None:
            patch.baseline = view.status.baseline = measured
            ctx.kube.event(view.obj, "BaselineMeasured", f"revision {revision}: " + ", ".join(
                f"{m.name}={m.value:.4g}" for m in measured.metrics or []))
        elif failure is not None:
            _condition(ctx, view, patch, "Degraded", True, *failure)
    ready = bool(view.status.baseline and view.status.baseline.metrics)
    if ready:
        _condition(ctx, view, patch, "Degraded", False, "AsExpected", "target and baseline are in place")
    _condition(ctx, view, patch, "Ready", ready, "BaselineMeasured" if ready else "Baselining",
               f"revision {revision} " + ("measured" if ready else "being measured"))
    return ready


def measure_baseline(ctx: Context, view: AgentView, revision: int) -> tuple[api.Baseline | None, tuple[str, str] | None]:
    """(the baseline, None) once every stage's Job finished with usable metrics; (None,
    (reason, message)) when one failed; (None, None) while they run (missing ones are
    started here)."""
    owner = Owner(view.obj, view.name, revision)
    specs = mapping.metric_specs(view.agent)
    units = {m.name: m.unit for m in view.agent.spec.evaluation.metrics}
    measured: list[api.StageMetrics] = []
    pending = False
    for stage in stages(view.agent):
        result = read_result(ctx.kube, view.namespace, owner.job_name(stage))
        if result is None:
            pending = True
            continue
        if result.state is JobState.MISSING:
            start_stage(ctx, owner, view.agent, stage, workspace=names.revision_snapshot(view.name, revision),
                        agent_image=revision_image(view.status, revision))
            pending = True
            continue
        if not result.has_metrics([m.name for m in specs]):
            why = result.failure_message() if not result.succeeded else \
                f"baseline Job {result.job_name} reported no usable metrics (need {', '.join(m.name for m in specs)})"
            return None, ("BaselineFailed", why)
        assert result.metrics is not None
        values = mapping.metrics_to_list(result.metrics, units=units, when=ctx.now(), samples=result.samples)
        measured.append(api.StageMetrics.model_validate({"name": stage.name, "metrics": values}))
    if pending:
        return None, None
    last = stages(view.agent)[-1]
    return api.Baseline(revision=revision, metrics=measured[-1].metrics, stages=measured, score=0.0,
                        job_name=owner.job_name(last), measured_at=ctx.now_datetime()), None


def rollback_request(view: AgentView) -> tuple[str, int | None] | None:
    """(request key, target revision) of a rollback not yet acted upon: the dgm.io/rollback-to
    annotation (imperative: ``previous@<time>`` or ``N@<time>``) or spec.rollbackToRevision
    (declarative, from Git)."""
    handled = view.status.handled_rollback
    annotation = view.annotation(constants.ANNOTATION_ROLLBACK)
    if annotation:
        key = f"annotation:{annotation}"
        if key != handled:
            current = int(view.status.current_revision or 1)
            wanted = annotation.split("@")[0]
            return key, revisions.previous_revision(view.status, current) if wanted in ("", "previous") else int(wanted)
    want = view.agent.spec.rollback_to_revision
    if want is not None:
        key = f"spec:{want}@{view.generation}"
        if key != handled and want != view.status.current_revision:
            return key, want
    return None


def _evaluation_conditions(ctx: Context, view: AgentView, patch: api.DGMAgentStatus) -> None:
    """EvaluationIsolated: whether the grader runs apart from the candidate.
    SandboxEnforced: what the newest evaluated candidate's egress check found."""
    if is_single_process(view.agent):
        _condition(ctx, view, patch, "EvaluationIsolated", False, "SingleProcessEvaluation",
                   "evaluation.mode is SingleProcess: the grader runs in the candidate's process, so a "
                   "candidate can change how it is graded")
    else:
        _condition(ctx, view, patch, "EvaluationIsolated", True, "GraderSeparate",
                   "the grader drives the agent under test from its own container")
    sandbox = view.agent.spec.evaluation.sandbox or api.SandboxSpec()
    evaluated = [c for c in view.candidates if candidate_phase(c) in constants.DECIDED_PHASES
                 and ((c.get("status") or {}).get("validation") or {}).get("jobName")]
    newest = max(evaluated, key=lambda c: c["metadata"].get("creationTimestamp") or "", default=None)
    if not sandbox.egress_check:
        _condition(ctx, view, patch, "SandboxEnforced", "Unknown", "EgressCheckDisabled",
                   "evaluation.sandbox.egressCheck is false: nothing checks that egress is denied")
    elif newest is None:
        _condition(ctx, view, patch, "SandboxEnforced", "Unknown", "NotChecked", "no candidate was evaluated yet")
    elif (newest.get("status") or {}).get("reason") == "SandboxNotEnforced":
        _condition(ctx, view, patch, "SandboxEnforced", False, "SandboxNotEnforced",
                   f"candidate {newest['metadata']['name']}: " + str((newest.get("status") or {}).get("message")))
    else:
        _condition(ctx, view, patch, "SandboxEnforced", True, "EgressDenied",
                   f"the egress check of candidate {newest['metadata']['name']} found egress denied")


def _improvement_loop(ctx: Context, view: AgentView, patch: api.DGMAgentStatus, ready: bool) -> int:
    """Read finished proposal Jobs back, propose when due and allowed (in process, or by
    starting a proposal Job for llm and job proposers), set the Improving condition. Returns
    the number of active candidates and proposals in flight."""
    as_job = proposal_jobs.runs_as_job(view.agent)
    in_flight, outcomes = proposal_jobs.read_finished(ctx, view) if as_job else (0, [])
    if outcomes:
        view.candidates = ctx.kube.list_candidates(view.namespace, view.name)
    active = sum(1 for c in view.candidates if candidate_phase(c) in constants.ACTIVE_PHASES) + in_flight
    decision = policies.evaluate_chain(policies.PROPOSAL_CHAIN, policies.Facts(
        paused=view.agent.spec.paused, active_candidates=active,
        max_concurrent_candidates=view.agent.spec.policy.max_concurrent_candidates,
        tokens_today=proposal_jobs.tokens_today(ctx, view),
        max_tokens_per_day=proposal_jobs.max_tokens_per_day(view.agent), now=ctx.now_datetime()))
    last = view.status.last_proposal
    if outcomes:
        last = patch.last_proposal = outcomes[-1].record(ctx.now_datetime())
    if outcomes and (decision is None or decision.reason == "ConcurrencyLimitReached"):
        # what a proposal Job just became says more than the limit it now fills
        reason, message = ("Proposed" if outcomes[-1].created else "ProposerFailed"), outcomes[-1].message
    elif decision:
        reason, message = decision
    elif last is not None and last.result == "Failed":
        # stays until the next proposal starts: the failure's Event expires, status does not
        reason, message = "ProposerFailed", f"the last proposal failed: {last.message}"
    else:
        reason, message = "Idle", "waiting for the next interval"
    if ready and decision is None and proposals.proposal_due(ctx, view):
        number = (view.status.proposals or 0) + 1
        if as_job:
            started, message = proposal_jobs.start(ctx, view)  # writes the proposal counter itself
            reason = "ProposalStarted" if started else "ProposerFailed"
            in_flight += int(started)
            active += int(started)
            created = False
        else:
            created, message = proposals.propose(ctx, view)
            reason = "Proposed" if created else "ProposerFailed"
            started = False
            if created:
                view.candidates = ctx.kube.list_candidates(view.namespace, view.name)
                active += 1
        patch.last_proposal = proposal_jobs.Outcome(
            created, message, candidate=names.proposed_candidate(view.name, number),
            job_name=names.proposal_job(view.name, number) if started else None,
        ).record(ctx.now_datetime(), started=started)
        if not started:  # a started Job writes the counter itself
            patch.proposals = number
            patch.last_proposal_time = ctx.now_datetime()
            requested = view.annotation(constants.ANNOTATION_PROPOSE)
            if requested:
                patch.handled_propose = requested
    if as_job:
        patch.proposals_in_flight = in_flight
    _condition(ctx, view, patch, "Improving", reason in ("Proposed", "ProposalStarted") or active > 0, reason, message)
    return active
