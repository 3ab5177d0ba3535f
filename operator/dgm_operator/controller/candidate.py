"""The ImprovementCandidate reconciler: Proposed -> safety analysis -> Testing (one Job per
stage) -> Validated | Rejected | Failed -> (approval) -> Applied (see :mod:`.revisions`).

Level-based: each pass reads the candidate, its agent and its Jobs from the API and takes
the next step, so a missed or repeated event, or a restarted operator, ends in the same
place. Decisions come from the engine's policy chains; this module moves data.
"""

from __future__ import annotations

from typing import Mapping

from ..api import constants
from ..api import models as api
from ..engine import dedupe, policies, safety as engine_safety, scoring
from ..engine.types import Finding, Phase
from . import mapping, names, revisions
from . import metrics as telemetry
from .conditions import get_condition, set_condition
from .context import Context, failpoint, parse_time
from .evaluation import (Owner, Stage, is_single_process, metric_stats, revision_image, stage_baseline, stages,
                         start_stage)
from .jobs import JobResult, JobState, read_result
from .kubeapi import Obj
from .observed import CandidateView, candidate_phase
from .status import Event, finish_candidate, note_candidate, write_candidate


# evaluation decisions that end a candidate Failed (no valid measurement), not Rejected
FAILURE_REASONS = frozenset({"SandboxNotEnforced", "ImageUnavailable", "OOMKilled", "DeadlineExceeded",
                             "EvaluationFailed", "MetricsUnavailable"})


def agent_image(view: CandidateView) -> str | None:
    """The image the candidate is evaluated with: its own, else the agent's current one."""
    return view.candidate.spec.image or revision_image(view.agent_status)


def reconcile(ctx: Context, namespace: str, name: str) -> list[str]:
    """Take the next step for one candidate. Returns sibling candidates worth a look
    (queued ones, when this one left the active set)."""
    with ctx.locks("candidate", namespace, name):
        obj = ctx.kube.get_candidate(namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp") or candidate_phase(obj) in constants.FINAL_PHASES:
            ctx.locks.forget("candidate", namespace, name)
            return []
        agent_ref = str(obj["spec"].get("agentRef") or "")
        agent_obj = ctx.kube.get_agent(namespace, agent_ref)
        if agent_obj is None:
            status = api.ImprovementCandidateStatus.model_validate(obj.get("status") or {})
            note_candidate(ctx, obj, status, status.phase or Phase.PROPOSED, "AgentNotFound",
                           f"DGMAgent {agent_ref!r} not found in {namespace}")
            return []
        if (obj["metadata"].get("labels") or {}).get(constants.LABEL_AGENT) != agent_ref:
            obj = ctx.kube.patch_metadata(obj, {"labels": {constants.LABEL_AGENT: agent_ref}})
        view = CandidateView.of(obj, agent_obj)
        decision = policies.evaluate_chain(policies.USER_ACTION_CHAIN,
                                           policies.Facts(user_action=view.action, phase=view.phase.value))
        if decision is not None:
            finish_candidate(ctx, view.obj, view.status, view.agent_name, Phase.REJECTED, decision.reason,
                             decision.message, condition=("Applied", False))
            return queued_siblings(ctx, view)
        if view.phase is Phase.PROPOSED:
            return proposed(ctx, view)
        if view.phase is Phase.TESTING:
            return testing(ctx, view)
        if view.phase is Phase.VALIDATED:
            validated(ctx, view)
        elif view.phase is Phase.APPLIED:
            revisions.verify_applied(ctx, view)
        return []


def queued_siblings(ctx: Context, view: CandidateView) -> list[str]:
    return [c["metadata"]["name"] for c in ctx.kube.list_candidates(view.namespace, view.agent_name)
            if candidate_phase(c) == Phase.PROPOSED.value]


# -- Proposed: safety analysis, then admission to Testing -------------------------------
def parent_files(ctx: Context, view: CandidateView) -> tuple[dict[str, str] | None, tuple[str, str], list[Finding]]:
    """The parent's full file set: the parent candidate's workspace, or the files of the
    agent's current revision when the candidate starts from the baseline. None and
    (reason, message) when it cannot be had (yet). A parent of another agent is a safety
    finding (its files are not read)."""
    namespace, parent = view.namespace, view.candidate.spec.parent
    if parent:
        parent_obj = ctx.kube.get_candidate(namespace, parent)
        if parent_obj is None:
            return None, ("ParentNotFound", f"parent candidate {parent!r} does not exist"), []
        lineage = engine_safety.parent_findings(view.agent_name, parent, (parent_obj.get("spec") or {}).get("agentRef"))
        if lineage:
            return {}, ("", ""), lineage
        cm = ctx.kube.get_configmap(namespace, names.workspace_configmap(parent))
        if cm is None:
            return None, ("ParentUnavailable", f"parent {parent!r} has no workspace (it never reached evaluation)"), []
        return dict(cm.get("data") or {}), ("", ""), []
    revision = view.agent_status.current_revision
    if not revision:
        return None, ("WaitingForAgent", "the agent has no revision snapshot yet"), []
    cm = ctx.kube.get_configmap(namespace, names.revision_snapshot(view.agent_name, revision))
    if cm is None:
        return None, ("WaitingForAgent", f"snapshot of revision {revision} not found"), []
    return dict(cm.get("data") or {}), ("", ""), []


def proposed(ctx: Context, view: CandidateView) -> list[str]:
    base_files, (why, message), lineage = parent_files(ctx, view)
    if base_files is None:
        note_candidate(ctx, view.obj, view.status, Phase.PROPOSED, why, message)
        return []
    patch = api.ImprovementCandidateStatus()
    conditions = view.status.conditions or []
    if get_condition(conditions, "SafetyChecked") is None:
        threshold = view.agent.spec.policy.safety_threshold
        changes = view.candidate.spec.changes
        report = engine_safety.analyze(changes, mapping.safety_policy(view.agent), base_files=base_files)
        findings = list(report.findings) + lineage + \
            mapping.image_findings(view.candidate.spec.image, revision_image(view.agent_status),
                                   view.agent.spec.policy.allowed_images, view.agent.spec.evaluation.image)
        score = engine_safety.score_findings(findings)
        patch.safety = api.SafetyStatus(score=round(score, 4), findings=[
            api.SafetyFinding.model_validate({k: v for k, v in f.as_dict().items() if v is not None}) for f in findings])
        decision = policies.evaluate_chain(policies.SAFETY_CHAIN, policies.Facts(
            safety_score=score, safety_threshold=threshold, findings=findings,
            image=view.candidate.spec.image, single_process=is_single_process(view.agent)))
        if decision is not None:
            patch.conditions = set_condition(conditions, "SafetyChecked", False, decision.reason, decision.message,
                                             generation=view.generation, now=ctx.now())
            patch.phase, patch.reason, patch.message = Phase.REJECTED, decision.reason, decision.message
            write_candidate(ctx, view.obj, patch, event=Event(decision.reason, decision.message, True))
            return []
        conditions = set_condition(conditions, "SafetyChecked", True, "SafetyPassed",
                                   f"safety score {score:.2f} >= threshold {threshold:.2f} ({len(findings)} findings)",
                                   generation=view.generation, now=ctx.now())
        patch.conditions = conditions
    with ctx.locks("agent", view.namespace, view.agent_name):
        siblings = ctx.kube.list_candidates(view.namespace, view.agent_name)
        testing_now = sum(1 for c in siblings if candidate_phase(c) == Phase.TESTING.value)
        files = {**base_files, **view.candidate.spec.changes}
        image = changed_image(view, view.candidate.spec.image)
        digest = dedupe.files_digest(files, image)
        original = duplicate_of(view, siblings, digest, dedupe.files_digest(base_files, parent_image(ctx, view)))
        decision = policies.evaluate_chain(policies.ADMISSION_CHAIN, policies.Facts(
            duplicate_of=original,
            active_candidates=testing_now,
            max_concurrent_candidates=view.agent.spec.policy.max_concurrent_candidates))
        if decision is not None and decision.reason == "DuplicateCandidate":
            patch.conditions = set_condition(conditions, "Evaluated", False, decision.reason,
                                             decision.message, generation=view.generation, now=ctx.now())
            patch.phase, patch.reason, patch.message = Phase.REJECTED, decision.reason, decision.message
            patch.files_digest, patch.duplicate_of = digest, original or None
            write_candidate(ctx, view.obj, patch, event=Event(decision.reason, decision.message))
            return []
        if decision is not None:
            if patch.model_fields_set or view.status.reason != "Queued":
                patch.phase, patch.reason, patch.message = Phase.PROPOSED, "Queued", decision.message
                write_candidate(ctx, view.obj, patch)
            return []
        first = stages(view.agent)[0]
        job_name = start_stage(ctx, Owner(view.obj, view.agent_name), view.agent, first,
                               workspace=names.workspace_configmap(view.name), agent_image=agent_image(view),
                               files=files)
        failpoint("job-created")
        started = ctx.now()
        patch.conditions = set_condition(conditions, "Evaluated", "Unknown", "EvaluationRunning",
                                         f"stage {first.name}: Job {job_name}", generation=view.generation, now=started)
        patch.phase, patch.reason, patch.message = Phase.TESTING, "EvaluationStarted", f"evaluation Job {job_name} created"
        patch.files_digest = digest
        patch.validation = api.ValidationStatus.model_validate(
            {"jobName": job_name, "stage": first.name, "stagesPassed": [], "startedAt": started})
        write_candidate(ctx, view.obj, patch, event=Event("EvaluationStarted", f"stage {first.name}: Job {job_name}"))
    return []


def changed_image(view: CandidateView, image: str | None) -> str | None:
    """``image`` when it differs from the current revision's, else None (the digest's "no change")."""
    return image if image and image != revision_image(view.agent_status) else None


def parent_image(ctx: Context, view: CandidateView) -> str | None:
    """The image the parent runs with, as :func:`changed_image` spells it: a parent candidate's
    own image, or None for the current revision (whose image is the agent's)."""
    parent = view.candidate.spec.parent
    parent_obj = ctx.kube.get_candidate(view.namespace, parent) if parent else None
    return changed_image(view, parent_obj["spec"].get("image")) if parent_obj else None


def duplicate_of(view: CandidateView, siblings: list[Obj], digest: str,
                 parent_digest: str) -> str | None:
    """The candidate (or "" for the parent's own files when it is the current revision) whose
    merged file set and image equal this one's: the parent itself when the changes change
    nothing, else the oldest sibling that was admitted with the same digest and did not fail
    (a failed evaluation measured nothing, so it does not block a retry)."""
    if digest == parent_digest:
        return view.candidate.spec.parent or ""
    archived = []
    for c in sorted(siblings, key=lambda c: (c["metadata"].get("creationTimestamp") or "", c["metadata"]["name"])):
        status = c.get("status") or {}
        if status.get("filesDigest") and status.get("phase") != Phase.FAILED.value:
            archived.append((str(c["metadata"]["name"]), str(status["filesDigest"])))
    return dedupe.find_original(digest, archived, exclude=view.name)


# -- Testing: read the Job back, score, decide ----------------------------------------
def testing(ctx: Context, view: CandidateView) -> list[str]:
    all_stages = stages(view.agent)
    validation = (view.status.validation or api.ValidationStatus()).model_copy()
    index = next((i for i, s in enumerate(all_stages) if s.name == validation.stage), 0)
    stage = all_stages[index]
    owner = Owner(view.obj, view.agent_name)
    job_name = validation.job_name or owner.job_name(stage)
    result = read_result(ctx.kube, view.namespace, job_name)
    if result is None:
        return []
    if result.state is JobState.MISSING:
        # The Job is gone (deleted by hand, or TTL before we looked): run the stage again.
        start_stage(ctx, owner, view.agent, stage, workspace=names.workspace_configmap(view.name),
                    agent_image=agent_image(view))
        return []
    baseline = view.agent_status.baseline
    base_values = stage_baseline(baseline, stage.name)
    base_metrics, base_samples = mapping.metrics_from_list([v.to_wire() for v in base_values or []])
    if result.succeeded and result.metrics is not None and not base_metrics:
        return []  # wait for the agent's baseline; the agent pokes us when it has one
    specs = mapping.metric_specs(view.agent)
    facts = policies.Facts(
        sandbox_error=result.sandbox_error, image_error=result.image_error, container_reason=result.container_reason,
        evaluation_failed=result.state is JobState.FAILED, failure_message=result.failure_message(),
        job_reason=result.job_reason, timeout_seconds=view.agent.spec.evaluation.timeout_seconds,
        metrics=result.metrics, required_metrics=[m.name for m in specs],
        min_improvement=view.agent.spec.policy.min_improvement,
    )
    validation.job_name, validation.stage, validation.finished_at = job_name, stage.name, ctx.now_datetime()
    if result.tests:
        validation.tests = result.tests
    if result.agent_image_id:
        validation.agent_image_id = result.agent_image_id
    started = parse_time(validation.started_at)
    if started is not None:
        validation.duration_seconds = round(ctx.clock() - started, 3)
        telemetry.EVALUATION_SECONDS.labels(view.namespace, view.agent_name, stage.name).observe(
            validation.duration_seconds)
    last = index == len(all_stages) - 1
    if result.succeeded and base_metrics and policies.metrics_unavailable(facts) is None:
        _score_stage(ctx, view, result, stage, validation, base_metrics, base_samples, base_values, facts, last)
    decision = policies.evaluate_chain(policies.EVALUATION_CHAIN, facts)
    if decision is None:  # a stage before the last one passed: run the next one
        nxt = all_stages[index + 1]
        next_job = start_stage(ctx, owner, view.agent, nxt, workspace=names.workspace_configmap(view.name),
                               agent_image=agent_image(view))
        validation.job_name, validation.stage, validation.finished_at = next_job, nxt.name, None
        validation.stages_passed = [s.name for s in all_stages[: index + 1]]
        validation.started_at = ctx.now_datetime()
        message = f"stage {stage.name} scored {facts.stage_score:.4f}; running {nxt.name}"
        write_candidate(ctx, view.obj, api.ImprovementCandidateStatus(
            validation=validation, reason="StagePassed", message=message),
            event=Event("StagePassed", f"stage {stage.name} scored {facts.stage_score:.4f}"))
        return []
    if decision.reason != "ImprovementValidated":
        failed = decision.reason in FAILURE_REASONS
        finish_candidate(ctx, view.obj, view.status, view.agent_name, Phase.FAILED if failed else Phase.REJECTED,
                         decision.reason, decision.message, condition=("Evaluated", not failed), validation=validation)
        return queued_siblings(ctx, view)
    validation.stages_passed = [s.name for s in all_stages]
    telemetry.IMPROVEMENT_SCORE.labels(view.namespace, view.agent_name).observe(facts.improvement or 0.0)
    obj = write_candidate(ctx, view.obj, api.ImprovementCandidateStatus(
        validation=validation, phase=Phase.VALIDATED, reason=decision.reason, message=decision.message,
        conditions=set_condition(view.status.conditions, "Evaluated", True, decision.reason, decision.message,
                                 generation=view.generation, now=ctx.now())),
        event=Event(decision.reason, decision.message))
    view.refresh(obj)
    validated(ctx, view)
    return queued_siblings(ctx, view)


def _score_stage(ctx: Context, view: CandidateView, result: JobResult, stage: Stage,
                 validation: api.ValidationStatus, base_metrics: Mapping[str, float],
                 base_samples: Mapping[str, list[float]], base_values: list[api.MetricValue] | None,
                 facts: policies.Facts, last: bool) -> None:
    """Score a finished stage against the same stage of the baseline; record it in
    ``validation`` and put the score where the evaluation chain looks for it."""
    assert result.metrics is not None
    specs = mapping.metric_specs(view.agent)
    gain = scoring.improvement_score(result.metrics, base_metrics, specs)
    noise = scoring.noise_bound(metric_stats(result.metrics, result.samples),
                                metric_stats(base_metrics, base_samples), specs) * scoring.DEFAULT_Z
    units = {m.name: m.unit for m in view.agent.spec.evaluation.metrics}
    after = [api.MetricValue.model_validate(m) for m in
             mapping.metrics_to_list(result.metrics, units=units, when=ctx.now(), samples=result.samples)]
    results = [r for r in validation.stage_results or [] if r.name != stage.name]
    results.append(api.StageMetrics(name=stage.name, metrics=after, improvement_score=round(gain, 6)))
    validation.metrics_before = list(base_values or [])
    validation.metrics_after, validation.stage_results = after, results
    validation.improvement_score, validation.noise = round(gain, 6), round(noise, 6)
    validation.repeats = stage.repeats
    if last:
        facts.improvement, facts.noise_bound = gain, noise
        return
    facts.stage = stages(view.agent).index(stage)
    evaluation = view.agent.spec.evaluation
    if evaluation.promotion.value == "rank":
        # rank promotion: the gain over the parent on the same stage's tasks, among the other
        # children of the agent evaluated at this stage
        scores = stage_scores(ctx.kube.list_candidates(view.namespace, view.agent_name), stage.name)
        parents = {name: parent for name, (_, parent) in scores.items()}
        gains = {name: score - scores.get(parents[name] or "", (0.0, None))[0] for name, (score, _) in scores.items()}
        own_parent = view.candidate.spec.parent or ""
        facts.stage_promotion, facts.eta = "rank", evaluation.eta
        facts.stage_score = gain - scores.get(own_parent, (0.0, None))[0]
        facts.stage_peers = [g for name, g in gains.items() if name != view.name]
        facts.stage_threshold = stage.pass_threshold  # a floor when set
    else:
        facts.stage_score = gain
        facts.stage_threshold = stage.pass_threshold if stage.pass_threshold is not None else 0.0


def stage_scores(candidates: list[Obj], stage: str) -> dict[str, tuple[float, str | None]]:
    """Name -> (improvement score at `stage`, parent) of every candidate that ran it."""
    out: dict[str, tuple[float, str | None]] = {}
    for c in candidates:
        status, spec = c.get("status") or {}, c.get("spec") or {}
        validation = status.get("validation") or {}
        for result in validation.get("stageResults") or []:
            if result.get("name") == stage and isinstance(result.get("improvementScore"), (int, float)):
                out[str(c["metadata"]["name"])] = (float(result["improvementScore"]), spec.get("parent") or None)
    return out


# -- Validated: the approval gate, then apply -----------------------------------------
def validated(ctx: Context, view: CandidateView) -> None:
    decision = policies.evaluate_chain(policies.APPLY_CHAIN, policies.Facts(
        auto_apply=view.agent.spec.policy.auto_apply, paused=view.agent.spec.paused,
        approved=view.candidate.spec.approved or view.action == "approve",
        code_files=policies.code_files(view.candidate.spec.changes),
        auto_apply_code=view.agent.spec.policy.auto_apply_code,
        image=changed_image(view, view.candidate.spec.image),
        allowed_images=view.agent.spec.policy.allowed_images))
    if decision is not None:
        if view.status.reason != decision.reason:
            write_candidate(ctx, view.obj, api.ImprovementCandidateStatus(reason=decision.reason, message=decision.message),
                            event=Event(decision.reason, decision.message))
        return
    revisions.apply_candidate(ctx, view)
