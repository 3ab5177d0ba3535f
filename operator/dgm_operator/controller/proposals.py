"""The agent's own proposals: when one is due, which parent the archive selects, and the
candidate the configured proposer drafts from it."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Mapping

from ..api import constants
from ..api import models as api
from ..engine import proposers, sampling, selection
from ..engine.archive import Archive, resolve_parents
from ..engine.types import CandidateRecord, Phase, SearchParam
from . import builders, mapping, names
from .context import Context, parse_time
from .kubeapi import Obj
from .observed import AgentView


def archive_of(candidates: list[Obj]) -> Archive:
    """The archive of an agent's candidates, in creation order, rooted at the baseline."""
    baseline = CandidateRecord(name="", phase=Phase.APPLIED, score=0.0, is_baseline=True)
    ordered = sorted(candidates, key=lambda c: c["metadata"].get("creationTimestamp") or "")
    records = [mapping.candidate_record(c, i) for i, c in enumerate(ordered, start=1)]
    parent_of, _ = resolve_parents((r.name, r.parent) for r in records)
    for r in records:
        r.parent = parent_of[r.name]
    return Archive(baseline, records)


def merged_files(candidates: list[Obj], root: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Name -> the merged file set of every candidate: its lineage's changes applied in order
    on `root` (the current revision's files). Exact for every file a lineage changed; the
    files none of them changed are taken from the current revision."""
    by_name = {str(c["metadata"]["name"]): c for c in candidates}
    out: dict[str, dict[str, str]] = {}

    def files_of(name: str, depth: int = 0) -> dict[str, str]:
        if name in out:
            return out[name]
        spec = by_name[name].get("spec") or {}
        parent = spec.get("parent") or ""
        base = files_of(parent, depth + 1) if parent in by_name and depth < len(by_name) else dict(root)
        out[name] = {**base, **{k: v for k, v in (spec.get("changes") or {}).items() if isinstance(v, str)}}
        return out[name]

    for name in by_name:
        files_of(name)
    return out


def archive_trials(archive: Archive, candidates: list[Obj], root: Mapping[str, str],
                   space: list[SearchParam]) -> list[sampling.Trial]:
    """Every evaluated archive member (the baseline included) as an Optuna trial: its
    parameter values and its score. The archive is the only store of the search."""
    if not space:
        return []
    files = merged_files(candidates, root)
    files[archive.baseline.name] = dict(root)
    return [(proposers.trial_params(space, files[r.name]), float(r.score)) for r in archive.eligible()
            if r.name in files and r.score is not None]


def stable_seed(text: str) -> int:
    """A seed from ``text`` that is the same in every process (``hash()`` of a str is
    salted per process, so a restarted operator would not repeat its proposals)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def proposal_due(ctx: Context, view: AgentView) -> bool:
    """A new dgm.io/propose annotation value, or a whole improvement interval since the
    last proposal (the first one comes one interval after the agent was created, so
    applying an agent never starts work before anyone asked for it)."""
    requested = view.annotation(constants.ANNOTATION_PROPOSE)
    if requested and requested != view.status.handled_propose:
        return True
    at = next_proposal_at(view)
    return at is not None and ctx.clock() >= at


def next_proposal_at(view: AgentView) -> float | None:
    """When the improvement interval makes the next proposal due (seconds since the
    epoch); None when the proposer cannot propose on its own."""
    proposer = view.agent.spec.proposer
    if proposer.type.value == "webhook" and proposer.webhook is None:
        return None
    last = parse_time(view.status.last_proposal_time) or parse_time(view.obj["metadata"].get("creationTimestamp"))
    return (last or 0.0) + view.agent.spec.policy.improvement_interval_minutes * 60


@dataclass
class Origin:
    """Where proposal number ``number`` starts: the parent the archive selects (None: the
    current revision) and the files it starts from."""

    number: int
    rng: random.Random
    method: str
    archive: Archive
    parent: str | None
    files: dict[str, str]  # the current revision's files
    parent_files: dict[str, str] | None  # the parent candidate's workspace (None: the revision)
    parent_metrics: dict[str, float] | None

    @property
    def working_files(self) -> dict[str, str]:
        return self.parent_files if self.parent_files is not None else self.files


def select_origin(ctx: Context, view: AgentView) -> Origin:
    namespace, name, agent = view.namespace, view.name, view.agent
    number = (view.status.proposals or 0) + 1
    seed = (agent.spec.proposer.seed if agent.spec.proposer.seed is not None else stable_seed(view.obj["metadata"]["uid"])) + number
    rng = random.Random(seed)
    archive = archive_of(view.candidates)
    method = agent.spec.archive.parent_selection.value
    parent_name = selection.select_parents(archive, method, 1, rng)[0] or None
    files_cm = ctx.kube.get_configmap(namespace, names.revision_snapshot(name, int(view.status.current_revision or 1)))
    files = dict((files_cm or {}).get("data") or {})
    parent_files = parent_metrics = None
    if parent_name:
        ws = ctx.kube.get_configmap(namespace, names.workspace_configmap(parent_name))
        if ws is None:
            parent_name = None
        else:
            parent_files = dict(ws.get("data") or {})
            parent_metrics = dict(archive.get(parent_name).metrics)
    return Origin(number, rng, method, archive, parent_name, files, parent_files, parent_metrics)


def propose(ctx: Context, view: AgentView) -> tuple[bool, str]:
    """Draft and create one candidate. (created, what happened) for the Improving condition;
    a proposer's failure is recorded as a warning Event and does not raise."""
    namespace, name, agent = view.namespace, view.name, view.agent
    start = select_origin(ctx, view)
    number, rng, method, archive = start.number, start.rng, start.method, start.archive
    parent_name, files, parent_files, parent_metrics = start.parent, start.files, start.parent_files, start.parent_metrics
    baseline = view.status.baseline
    base_metrics, _ = mapping.metrics_from_list([m.to_wire() for m in (baseline.metrics if baseline else None) or []])
    space = mapping.search_space(agent)
    kind = agent.spec.proposer.type.value
    sampler = agent.spec.proposer.sampler.value
    trials = archive_trials(archive, view.candidates, files, list(space)) \
        if kind == "parameters" and sampler != "mutation" else []
    context = proposers.AgentContext(
        agent_name=name, files=files, metrics=mapping.metric_specs(agent), search_space=space,
        baseline_metrics=base_metrics, parent=parent_name, parent_files=parent_files,
        parent_metrics=parent_metrics, archive=archive.summary(), trials=trials)
    settings: dict[str, Any] = {}
    if kind == "parameters":
        settings = {"sampler": sampler}
    if kind == "webhook" and agent.spec.proposer.webhook is not None:
        settings = {"url": agent.spec.proposer.webhook.url, "timeout_seconds": agent.spec.proposer.webhook.timeout_seconds}
    try:
        draft = proposers.make_proposer(kind, settings).propose(context, rng)
    except (proposers.ProposerError, ValueError) as exc:
        ctx.kube.event(view.obj, "ProposerFailed", str(exc), warning=True)
        return False, f"proposer {kind} failed: {exc}"
    cand_name = names.proposed_candidate(name, number)
    spec = api.ImprovementCandidateSpec(
        agent_ref=name, parent=parent_name, improvement_type=draft.improvement_type, description=draft.description,
        changes=draft.changes, image=draft.image or None, expected_improvement=draft.expected_improvement,
        risk_level=draft.risk_level)
    ctx.kube.create_candidate(namespace, {
        "apiVersion": constants.API_VERSION, "kind": constants.CANDIDATE_KIND,
        "metadata": {"name": cand_name, "namespace": namespace,
                     "labels": {constants.LABEL_AGENT: name, constants.LABEL_MANAGED_BY: constants.FIELD_MANAGER},
                     "ownerReferences": [builders.owner_reference(view.obj)]},
        "spec": spec.to_wire(),
    })
    origin = parent_name or "the baseline"
    ctx.kube.event(view.obj, "CandidateProposed", f"{cand_name} from {origin} ({method}): {draft.description}")
    return True, f"proposed {cand_name} from {origin}"
