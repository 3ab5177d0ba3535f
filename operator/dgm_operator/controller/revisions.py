"""Revisions of an agent: apply a candidate as a new revision, watch its rollout and
verify it after apply, and roll back to an earlier revision byte for byte.

A revision is an immutable snapshot ConfigMap (``<agent>-rev-N``) plus the image it ran;
applying one server-side-applies the live ConfigMap's data and stamps the Deployment's pod
template (field manager ``dgm-operator``, nothing else claimed).
"""

from __future__ import annotations

from typing import Any, Mapping

from ..api import constants
from ..api import models as api
from ..engine import policies, scoring
from ..engine.types import Phase
from . import builders, mapping, names
from . import metrics as telemetry
from .context import Context, failpoint
from .evaluation import Owner, post_apply_stage, revision_image, start_stage
from .jobs import JobState, read_result
from .observed import CandidateView
from .status import Event, finish_candidate, write_candidate


def previous_revision(status: api.DGMAgentStatus, revision: int) -> int | None:
    """The newest revision below ``revision`` that was not rolled back."""
    older = [r.revision for r in status.revisions or [] if r.revision < revision and not r.rolled_back_at]
    return max(older) if older else None


def rollout_state(deployment: Mapping[str, Any], revision: int) -> str:
    """"pending" | "complete" | "failed" for the rollout of ``revision``."""
    meta, spec, status = deployment["metadata"], deployment["spec"], deployment.get("status") or {}
    stamped = ((spec["template"].get("metadata") or {}).get("annotations") or {}).get(constants.ANNOTATION_REVISION)
    if stamped != str(revision) or (status.get("observedGeneration") or 0) < meta.get("generation", 0):
        return "pending"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return "failed"
    replicas = spec.get("replicas", 1)
    if (status.get("updatedReplicas") or 0) >= replicas and (status.get("availableReplicas") or 0) >= replicas \
            and (status.get("replicas") or 0) <= replicas:
        return "complete"
    return "pending"


def agent_container(deployment: Mapping[str, Any], name: str | None) -> Mapping[str, Any]:
    """The agent's container in the Deployment (the first one when none has the name)."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next((c for c in containers if c["name"] == name), containers[0])


def roll_to(ctx: Context, agent: api.DGMAgent, files: Mapping[str, str], revision: int, image: str | None) -> None:
    """Make ``files`` live and stamp the Deployment with ``revision`` (and ``image``)."""
    ns, target = agent.metadata["namespace"], agent.spec.target
    ctx.kube.apply(builders.live_configmap_apply(target.config_map, ns, files))
    failpoint("live-configmap-applied")
    deployment = ctx.kube.get_deployment(ns, target.deployment)
    if deployment is None:
        raise RuntimeError(f"Deployment {target.deployment} not found")
    container = agent_container(deployment, target.container)
    ctx.kube.apply(builders.deployment_apply(target.deployment, ns, container=container["name"],
                                             revision=revision, image=image or container["image"]))


def apply_candidate(ctx: Context, view: CandidateView) -> None:
    """New revision: immutable snapshot, live ConfigMap, Deployment template stamp (and
    image), by server-side apply; then the agent's and the candidate's status. A retry
    after a crash finds the revision already recorded and only finishes the candidate."""
    namespace, cand_name, agent_name = view.namespace, view.name, view.agent_name
    with ctx.locks("agent", namespace, agent_name):
        agent_obj = ctx.kube.get_agent(namespace, agent_name) or view.agent_obj
        agent = api.DGMAgent.model_validate(agent_obj)
        astatus = agent.status or api.DGMAgentStatus()
        history = list(astatus.revisions or [])
        done = next((r for r in history if r.candidate == cand_name), None)
        if done is None:
            workspace = ctx.kube.get_configmap(namespace, names.workspace_configmap(cand_name))
            if workspace is None:
                finish_candidate(ctx, view.obj, view.status, agent_name, Phase.FAILED, "WorkspaceMissing",
                                 "the candidate's workspace ConfigMap is gone; cannot apply", condition=("Applied", False))
                return
            files = dict(workspace.get("data") or {})
            number = max((r.revision for r in history), default=1) + 1
            current = next((r for r in history if r.revision == astatus.current_revision), None)
            image = view.candidate.spec.image or (current.image if current else None)
            snapshot = names.revision_snapshot(agent_name, number)
            ctx.kube.create(builders.files_configmap(
                snapshot, namespace, files, owner=builders.owner_reference(agent_obj),
                labels={constants.LABEL_AGENT: agent_name, constants.LABEL_REVISION: str(number),
                        constants.LABEL_CANDIDATE: cand_name, constants.LABEL_ROLE: "revision"}))
            failpoint("snapshot-created")
            roll_to(ctx, agent, files, number, image)
            validation = view.status.validation or api.ValidationStatus()
            done = api.RevisionRecord(revision=number, candidate=cand_name, snapshot=snapshot, image=image,
                                      image_id=validation.agent_image_id or None,
                                      applied_at=ctx.now_datetime(), score=validation.improvement_score)
            ctx.kube.patch_status(agent_obj, precondition=True, status=api.DGMAgentStatus(
                revisions=history + [done], current_revision=number,
                baseline=api.Baseline(
                    revision=number, metrics=validation.metrics_after or [],
                    stages=[api.StageMetrics(name=r.name, metrics=r.metrics or []) for r in validation.stage_results or []],
                    score=0.0, job_name=validation.job_name, measured_at=ctx.now_datetime()),
            ).to_patch())
            ctx.kube.event(agent_obj, "RevisionApplied", f"revision {number} from candidate {cand_name}")
            telemetry.APPLIES.labels(namespace, agent_name).inc()
            failpoint("agent-status-written")
        finish_candidate(ctx, view.obj, view.status, agent_name, Phase.APPLIED, "Applied",
                         f"applied as revision {done.revision}", condition=("Applied", True), revision=done.revision)


def verify_applied(ctx: Context, view: CandidateView) -> None:
    """Applied: watch the rollout, run the post-apply evaluation, roll back on failure or
    regression (as the agent's rollback policy says)."""
    revision, astatus = view.status.revision, view.agent_status
    if revision is None or astatus.current_revision != revision or view.status.reason in constants.VERIFIED_REASONS:
        return
    deployment = ctx.kube.get_deployment(view.namespace, view.agent.spec.target.deployment)
    if deployment is None:
        return
    rollback_policy = view.agent.spec.policy.rollback
    rollout = rollout_state(deployment, revision)
    decision = policies.evaluate_chain(policies.ROLLOUT_CHAIN, policies.Facts(rollout=rollout, revision=revision))
    if decision is not None:
        if rollback_policy.on_rollout_failure:
            rollback(ctx, view.agent_obj, previous_revision(astatus, revision), reason=decision.reason,
                     message=decision.message)
        elif view.status.reason != decision.reason:
            write_candidate(ctx, view.obj, api.ImprovementCandidateStatus(reason=decision.reason, message=decision.message),
                            event=Event(decision.reason, decision.message, True))
        return
    if rollout != "complete":
        return
    if not rollback_policy.on_regression:
        message = f"revision {revision} rolled out"
        write_candidate(ctx, view.obj, api.ImprovementCandidateStatus(reason="RolloutComplete", message=message),
                        event=Event("RolloutComplete", message))
        return
    stage = post_apply_stage(view.agent)
    owner = Owner(view.obj, view.agent_name)
    result = read_result(ctx.kube, view.namespace, owner.job_name(stage))
    if result is None:
        return
    if result.state is JobState.MISSING:
        start_stage(ctx, owner, view.agent, stage, workspace=names.revision_snapshot(view.agent_name, revision),
                    agent_image=revision_image(astatus, revision))
        if view.status.reason != "Verifying":
            write_candidate(ctx, view.obj, api.ImprovementCandidateStatus(
                reason="Verifying", message=f"post-apply evaluation Job {result.job_name}"))
        return
    before, _ = mapping.metrics_from_list([m.to_wire() for m in (view.status.validation or api.ValidationStatus()).metrics_before or []])
    specs = mapping.metric_specs(view.agent)
    usable = bool(before) and result.has_metrics([m.name for m in specs])
    post = scoring.improvement_score(result.metrics or {}, before, specs) if usable else None
    decision = policies.evaluate_chain(policies.POST_APPLY_CHAIN, policies.Facts(
        post_apply_metrics_usable=usable, post_apply_improvement=post,
        regression_tolerance=view.agent.spec.policy.min_improvement))
    assert decision is not None  # `verified` answers whenever the metrics were usable
    if decision.reason == "Regression":
        rollback(ctx, view.agent_obj, previous_revision(astatus, revision), reason=decision.reason,
                 message=decision.message)
        return
    if view.status.reason != decision.reason:
        write_candidate(ctx, view.obj, api.ImprovementCandidateStatus(reason=decision.reason, message=decision.message),
                        event=Event(decision.reason, decision.message, decision.reason == "VerificationInconclusive"))


def rollback(ctx: Context, agent_obj: Mapping[str, Any], target: int | None, *, reason: str, message: str) -> bool:
    """Restore revision ``target`` byte for byte (its snapshot and image), mark newer
    revisions rolled back and their candidates RolledBack. False (and a warning Event
    RollbackFailed) when that revision or its snapshot does not exist."""
    namespace, agent_name = agent_obj["metadata"]["namespace"], agent_obj["metadata"]["name"]
    with ctx.locks("agent", namespace, agent_name):
        agent_obj = ctx.kube.get_agent(namespace, agent_name) or agent_obj
        agent = api.DGMAgent.model_validate(agent_obj)
        history = [r.model_copy() for r in (agent.status or api.DGMAgentStatus()).revisions or []]
        record = next((r for r in history if r.revision == target), None)
        if target is None or record is None:
            ctx.kube.event(agent_obj, "RollbackFailed", f"no revision {target} to roll back to", warning=True)
            return False
        snapshot = ctx.kube.get_configmap(namespace, record.snapshot or names.revision_snapshot(agent_name, target))
        if snapshot is None:
            ctx.kube.event(agent_obj, "RollbackFailed", f"snapshot of revision {target} is missing", warning=True)
            return False
        roll_to(ctx, agent, dict(snapshot.get("data") or {}), target, record.image)
        stamp = ctx.now_datetime()
        rolled = []
        for r in history:
            if r.revision > target and not r.rolled_back_at:
                r.rolled_back_at = stamp
                if r.candidate:
                    rolled.append(r.candidate)
        ctx.kube.patch_status(agent_obj, precondition=True, status=api.DGMAgentStatus(
            revisions=history, current_revision=target,
            baseline=api.Baseline(revision=target, metrics=None, stages=None, score=None, job_name=None,
                                  measured_at=None)).to_patch())
        ctx.kube.event(agent_obj, "RolledBack", f"revision {target} restored: {message}", warning=True)
        telemetry.ROLLBACKS.labels(namespace, agent_name, reason).inc()
    for cand_name in rolled:
        cobj = ctx.kube.get_candidate(namespace, cand_name)
        if cobj is not None and (cobj.get("status") or {}).get("phase") == Phase.APPLIED.value:
            status = api.ImprovementCandidateStatus.model_validate(cobj.get("status") or {})
            finish_candidate(ctx, cobj, status, agent_name, Phase.ROLLED_BACK, reason,
                             f"{message}; revision {target} restored", condition=("RolledBack", True))
    return True
