"""Status writes, once per decision, from the typed models: a patch is a status model
with only the fields that change set (an explicit None clears a field), sent as a merge
patch of the status subresource, with an Event that says the same thing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..api import models as api
from ..engine.types import Phase
from . import metrics as telemetry
from .conditions import set_condition
from .context import Context
from .kubeapi import Obj


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    warning: bool = False


def write_candidate(ctx: Context, obj: Mapping[str, Any], patch: api.ImprovementCandidateStatus, *,
                    event: Event | None = None) -> Obj:
    body = patch.to_patch()
    body.setdefault("observedGeneration", obj["metadata"].get("generation"))
    out = ctx.kube.patch_status(obj, body)
    if event is not None:
        ctx.kube.event(obj, event.reason, event.message, warning=event.warning)
    return out


def note_candidate(ctx: Context, obj: Mapping[str, Any], status: api.ImprovementCandidateStatus,
                   phase: Phase, reason: str, message: str, *, warning: bool = True) -> None:
    """Record a reason without a decision (waiting on something), once: nothing is written
    when the same reason and message are already there."""
    if status.reason == reason and status.message == message and status.phase:
        return
    write_candidate(ctx, obj, api.ImprovementCandidateStatus(phase=phase, reason=reason, message=message),
                    event=Event(reason, message, warning))


def finish_candidate(ctx: Context, obj: Mapping[str, Any], status: api.ImprovementCandidateStatus, agent_name: str,
                     phase: Phase, reason: str, message: str, *, condition: tuple[str, bool] | None = None,
                     validation: api.ValidationStatus | None = None, revision: int | None = None) -> Obj:
    """A decision: phase, reason and message (and the condition it settles), an Event, and
    the decision counter."""
    patch = api.ImprovementCandidateStatus(phase=phase, reason=reason, message=message)
    if validation is not None:
        patch.validation = validation
    if revision is not None:
        patch.revision = revision
    if condition is not None:
        patch.conditions = set_condition(status.conditions, condition[0], condition[1], reason, message,
                                         generation=obj["metadata"].get("generation"), now=ctx.now())
    warning = phase in (Phase.FAILED, Phase.ROLLED_BACK) or reason == "UnsafeChange"
    out = write_candidate(ctx, obj, patch, event=Event(reason, message, warning))
    telemetry.DECISIONS.labels(obj["metadata"]["namespace"], agent_name, phase.value, reason).inc()
    return out


def write_agent_changes(ctx: Context, obj: Mapping[str, Any], patch: api.DGMAgentStatus) -> None:
    """Write only the fields whose value differs from the object's status (a condition
    whose timestamps did not move is no change)."""
    current = obj.get("status") or {}
    changed = {k: v for k, v in patch.to_patch().items() if current.get(k) != v}
    if changed:
        ctx.kube.patch_status(obj, changed)
