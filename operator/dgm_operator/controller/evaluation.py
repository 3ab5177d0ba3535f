"""Evaluation stages and their Jobs: which stages an agent runs, creating a stage's Job
(with its workspace and the namespace's deny-egress policy), and the statistics a stage's
metrics are scored with."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..api import constants
from ..api import models as api
from ..engine import scoring
from . import builders, names
from .context import Context, failpoint

POST_APPLY_STAGE = "postapply"


@dataclass(frozen=True)
class Stage:
    name: str
    args: tuple[str, ...] = ()
    pass_threshold: float | None = None
    repeats: int = 1


def stages(agent: api.DGMAgent) -> list[Stage]:
    """The agent's stages; a single ``full`` stage when it declares none."""
    ev = agent.spec.evaluation
    if not ev.stages:
        return [Stage("full", (), None, ev.repeats)]
    return [Stage(s.name, tuple(s.args or ()), s.pass_threshold, s.repeats or ev.repeats) for s in ev.stages]


def post_apply_stage(agent: api.DGMAgent) -> Stage:
    """The post-apply check runs the last stage's arguments against the new revision."""
    return Stage(POST_APPLY_STAGE, stages(agent)[-1].args, None, agent.spec.evaluation.repeats)


@dataclass(frozen=True)
class Owner:
    """The object an evaluation Job belongs to: a candidate, or the agent for a baseline."""

    obj: Mapping[str, Any]
    agent_name: str
    revision: int | None = None  # the baseline's revision (agents only)

    @property
    def is_candidate(self) -> bool:
        return bool(self.obj["kind"] == constants.CANDIDATE_KIND)

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    def job_name(self, stage: Stage) -> str:
        if self.is_candidate:
            return names.evaluation_job(self.name, stage.name)
        assert self.revision is not None, "a baseline Job needs its revision"
        return names.baseline_job(self.name, self.revision, stage.name)

    def labels(self) -> dict[str, str]:
        labels = {constants.LABEL_AGENT: self.agent_name}
        if self.is_candidate:
            labels[constants.LABEL_CANDIDATE] = self.name
        return labels


def revision_image(status: api.DGMAgentStatus, revision: int | None = None) -> str | None:
    """The image of ``revision`` (default: the current one) as the agent's history records it."""
    wanted = revision if revision is not None else status.current_revision
    return next((r.image for r in status.revisions or [] if r.revision == wanted), None)


def is_single_process(agent: api.DGMAgent) -> bool:
    return agent.spec.evaluation.mode is api.EvaluationMode.SINGLE_PROCESS


def start_stage(ctx: Context, owner: Owner, agent: api.DGMAgent, stage: Stage, *, workspace: str,
                agent_image: str | None, files: Mapping[str, str] | None = None) -> str:
    """Create (idempotently) the workspace ConfigMap when ``files`` are given, the
    namespace's deny-egress NetworkPolicy and the stage's evaluation Job, all owned by the
    owner. ``agent_image`` is the image of the agent under test (Grader mode). Returns the
    Job's name."""
    namespace = owner.namespace
    owner_ref = builders.owner_reference(owner.obj)
    labels = owner.labels()
    if files is not None:
        ctx.kube.create(builders.files_configmap(workspace, namespace, files, owner=owner_ref,
                                                 labels={**labels, constants.LABEL_ROLE: "workspace"}))
        failpoint("workspace-created")
    if namespace not in ctx.sandboxed_namespaces:
        ctx.kube.create(builders.sandbox_network_policy(namespace))
        ctx.sandboxed_namespaces.add(namespace)
    ev = agent.spec.evaluation
    job_name = owner.job_name(stage)
    sandbox = ev.sandbox or api.SandboxSpec()
    resources = ev.resources.model_dump(exclude_none=True) if ev.resources else None
    grader = builders.ContainerRun(ev.image, list(ev.command or []), [*(ev.args or []), *stage.args],
                                   [{"name": e.name, "value": e.value} for e in ev.env or []])
    under_test = None
    if not is_single_process(agent) and ev.agent is not None:
        if not agent_image:
            raise ValueError(f"no image for the agent under test of {owner.name}")
        under_test = builders.ContainerRun(agent_image, list(ev.agent.command), list(ev.agent.args or []),
                                           [{"name": e.name, "value": e.value} for e in ev.agent.env or []])
    ctx.kube.create(builders.evaluation_job(
        name=job_name, namespace=namespace, owner=owner_ref, labels=labels, grader=grader, agent=under_test,
        agent_port=ev.agent.port if ev.agent else None,
        workspace_configmap=workspace, timeout_seconds=ev.timeout_seconds,
        repeats=stage.repeats, stage=stage.name, resources=resources,
        egress_check_seconds=sandbox.egress_check_seconds if sandbox.egress_check else None,
        runtime_class_name=sandbox.runtime_class_name, node_selector=sandbox.node_selector,
        tolerations=sandbox.tolerations, pod_labels=sandbox.pod_labels,
    ))
    return job_name


def metric_stats(metrics: Mapping[str, float], samples: Mapping[str, Sequence[float]]) -> dict[str, scoring.MetricStats]:
    """Mean, spread and count per metric (the spread of repeats bounds the noise)."""
    out = {}
    for name, value in metrics.items():
        values = list(samples.get(name) or [value])
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        out[name] = scoring.MetricStats(value, spread, len(values))
    return out


def stage_baseline(baseline: api.Baseline | None, stage: str) -> list[api.MetricValue] | None:
    """The baseline's metrics for ``stage``: its own measurement when there is one, else
    the last stage's (a single-stage agent, or a post-apply check)."""
    if baseline is None:
        return None
    for item in baseline.stages or []:
        if item.name == stage and item.metrics:
            return item.metrics
    return baseline.metrics


def metric_dicts(values: Sequence[api.MetricValue] | None) -> list[dict[str, Any]]:
    return [v.to_wire() for v in values or []]


@dataclass
class StageScore:
    """A finished stage scored against the same stage of its base."""

    improvement: float
    noise: float
    metrics_after: list[api.MetricValue] = field(default_factory=list)
