"""Deterministic names and labels of everything the operator creates.

Children are named from their owner so that a restarted operator finds, rather than
duplicates, what it created before (creation answers AlreadyExists and is taken as done).
"""

from __future__ import annotations

import hashlib
import re

SANDBOX_NETWORK_POLICY = "dgm-sandbox-deny-egress"

_MAX_NAME = 63  # Job names end up in a label value (job-name), which allows 63 characters


def _fit(name: str, limit: int = _MAX_NAME) -> str:
    name = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def workspace_configmap(candidate: str) -> str:
    return _fit(f"{candidate}-workspace")


def evaluation_job(candidate: str, stage: str) -> str:
    return _fit(f"{candidate}-eval-{stage}")


def baseline_job(agent: str, revision: int, stage: str) -> str:
    return _fit(f"{agent}-baseline-r{revision}-{stage}")


def revision_snapshot(agent: str, revision: int) -> str:
    return _fit(f"{agent}-rev-{revision}", 253)


def proposed_candidate(agent: str, number: int) -> str:
    return _fit(f"{agent}-g{number}", 253)


def proposal_job(agent: str, number: int) -> str:
    """The proposal Job whose result becomes candidate ``proposed_candidate(agent, number)``.
    Its context ConfigMap and NetworkPolicy carry the same name (each kind has its own)."""
    return _fit(f"{agent}-g{number}-propose")
