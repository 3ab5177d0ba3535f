"""Kubernetes-style conditions as pure data operations."""

from __future__ import annotations

from typing import Any, Iterable


def set_condition(
    conditions: Iterable[dict[str, Any]] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """Return ``conditions`` with ``type_`` set; ``lastTransitionTime`` moves only when the
    status changes (the API convention), reason and message always follow the latest."""
    status_text = status if isinstance(status, str) else ("True" if status else "False")
    out: list[dict[str, Any]] = []
    found = False
    for cond in conditions or []:
        if cond.get("type") != type_:
            out.append(dict(cond))
            continue
        found = True
        transition = cond.get("lastTransitionTime") if cond.get("status") == status_text else now
        out.append(_condition(type_, status_text, reason, message, generation, transition or now))
    if not found:
        out.append(_condition(type_, status_text, reason, message, generation, now))
    return out


def _condition(type_: str, status: str, reason: str, message: str, generation: int | None, when: str) -> dict[str, Any]:
    cond = {"type": type_, "status": status, "reason": reason, "message": message[:32768], "lastTransitionTime": when}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def get_condition(conditions: Iterable[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def is_true(conditions: Iterable[dict[str, Any]] | None, type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return bool(cond and cond.get("status") == "True")
