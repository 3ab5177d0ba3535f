"""Kubernetes-style conditions (metav1.Condition) as pure operations on the typed models."""

from __future__ import annotations

from typing import Sequence

from ..api.models import Condition, ConditionStatus

MAX_MESSAGE = 32768


def set_condition(
    conditions: Sequence[Condition] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """``conditions`` with ``type_`` set. ``lastTransitionTime`` moves only when the status
    changes (the API convention); reason and message always follow the latest."""
    status_value = ConditionStatus(status if isinstance(status, str) else ("True" if status else "False"))
    out: list[Condition] = []
    found = False
    for cond in conditions or []:
        if cond.type != type_:
            out.append(cond)
            continue
        found = True
        transition = cond.last_transition_time if cond.status == status_value and cond.last_transition_time else now
        out.append(_condition(type_, status_value, reason, message, generation, transition))
    if not found:
        out.append(_condition(type_, status_value, reason, message, generation, now))
    return out


def _condition(type_: str, status: ConditionStatus, reason: str, message: str, generation: int | None,
               when: object) -> Condition:
    fields: dict[str, object] = {"type": type_, "status": status, "reason": reason,
                                 "message": message[:MAX_MESSAGE], "last_transition_time": when}
    if generation is not None:
        fields["observed_generation"] = generation
    return Condition.model_validate(fields)


def get_condition(conditions: Sequence[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or [] if c.type == type_), None)


def is_true(conditions: Sequence[Condition] | None, type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return cond is not None and cond.status is ConditionStatus.TRUE
