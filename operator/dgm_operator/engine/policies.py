"""Decisions as small pure policies, chained (after cert-manager's certificate policies).

A policy takes the :class:`Facts` of one candidate (or agent) and returns a
:class:`Decision` ``(reason, message)``, or None when it has nothing to say. A chain runs its
policies in order and the first hit wins (:func:`evaluate_chain`). Reasons are CamelCase
(the Kubernetes condition convention) and are what the operator writes to
``status.reason`` and the conditions.

Chains:

* :data:`AGENT_CHAIN`: may the agent start a new candidate? (AgentPaused, ConcurrencyLimitReached)
* :data:`ADMISSION_CHAIN`: a new proposal before anything runs (DuplicateCandidate)
* :data:`SAFETY_CHAIN`: after the static analysis (UnsafeChange)
* :data:`EVALUATION_CHAIN`: after an evaluation stage or the full run (EvaluationFailed,
  DeadlineExceeded, MetricsUnavailable, StageThresholdNotMet, InsufficientImprovement,
  ImprovementValidated)
* :data:`APPLY_CHAIN`: a validated candidate before apply (AwaitingApproval)
* :data:`POST_APPLY_CHAIN`: after the post-apply evaluation (Regression)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

from .types import Finding


class Decision(NamedTuple):
    reason: str
    message: str


@dataclass
class Facts:
    """What the policies look at; fields a chain does not need may stay at their defaults."""

    # agent
    paused: bool = False
    active_candidates: int = 0
    max_concurrent_candidates: int = 3
    # admission
    duplicate_of: str | None = None
    # safety
    safety_score: float | None = None
    safety_threshold: float = 0.8
    findings: Sequence[Finding] = ()
    # evaluation
    evaluation_failed: bool = False
    failure_message: str = ""
    now: float | None = None
    started_at: float | None = None
    timeout_seconds: float | None = None
    metrics: Mapping[str, float] | None = None
    required_metrics: Sequence[str] = ()
    stage: int | None = None
    stage_score: float | None = None
    stage_threshold: float | None = None
    improvement: float | None = None
    min_improvement: float = 0.0
    noise_bound: float = 0.0
    # apply
    auto_apply: bool = False
    approved: bool = False
    # post-apply
    post_apply_improvement: float | None = None
    regression_tolerance: float = 0.0
    extra: dict = field(default_factory=dict)


Policy = Callable[[Facts], "Decision | None"]


def agent_paused(f: Facts) -> Decision | None:
    if f.paused:
        return Decision("AgentPaused", "the agent is paused (spec.paused): no new candidates")
    return None


def concurrency_limit_reached(f: Facts) -> Decision | None:
    if f.active_candidates >= f.max_concurrent_candidates:
        return Decision("ConcurrencyLimitReached",
                        f"{f.active_candidates} active candidates >= maxConcurrentCandidates "
                        f"{f.max_concurrent_candidates}")
    return None


def duplicate_candidate(f: Facts) -> Decision | None:
    """The merged file set (and image) equals an archived candidate's: not evaluated again."""
    if f.duplicate_of is not None:
        return Decision("DuplicateCandidate",
                        f"same merged file set as {f.duplicate_of or 'the current revision'}: not evaluated again")
    return None


def safety_below_threshold(f: Facts) -> Decision | None:
    if f.safety_score is None or f.safety_score >= f.safety_threshold:
        return None
    n = len(f.findings)
    details = "; ".join(
        f"[{x.severity.value}] {x.rule}" + (f" in {x.file}" if x.file else "") + f": {x.message}"
        for x in f.findings[:3]
    )
    if n > 3:
        details += f"; ... and {n - 3} more"
    return Decision("UnsafeChange",
                    f"safety score {f.safety_score:.2f} < threshold {f.safety_threshold:.2f}: "
                    f"{n} finding{'s' if n != 1 else ''}" + (f": {details}" if details else ""))


def evaluation_failed(f: Facts) -> Decision | None:
    if f.evaluation_failed:
        return Decision("EvaluationFailed", f.failure_message or "the evaluation Job failed")
    return None


def deadline_exceeded(f: Facts) -> Decision | None:
    if None in (f.now, f.started_at, f.timeout_seconds):
        return None
    elapsed = f.now - f.started_at
    if elapsed > f.timeout_seconds:
        return Decision("DeadlineExceeded",
                        f"evaluation ran {elapsed:.0f}s > timeoutSeconds {f.timeout_seconds:.0f}")
    return None


def metrics_unavailable(f: Facts) -> Decision | None:
    if f.metrics is None:
        return Decision("MetricsUnavailable", "the evaluation reported no metrics")
    missing = [m for m in f.required_metrics if m not in f.metrics]
    bad = [m for m in f.required_metrics if m in f.metrics and not _finite(f.metrics[m])]
    if missing or bad:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if bad:
            parts.append("not finite numbers: " + ", ".join(bad))
        return Decision("MetricsUnavailable", "evaluation metrics " + "; ".join(parts))
    return None


def stage_failed(f: Facts) -> Decision | None:
    if f.stage_score is None or f.stage_threshold is None:
        return None
    if f.stage_score < f.stage_threshold:
        return Decision("StageThresholdNotMet",
                        f"stage {f.stage if f.stage is not None else 0} score {f.stage_score:.4f} "
                        f"< pass threshold {f.stage_threshold:.4f}")
    return None


def insufficient_improvement(f: Facts) -> Decision | None:
    if f.improvement is None:
        return None
    bound = max(f.min_improvement, f.noise_bound)
    if f.improvement <= f.min_improvement or f.improvement <= f.noise_bound:
        why = "minImprovement" if f.min_improvement >= f.noise_bound else "the noise bound"
        return Decision("InsufficientImprovement",
                        f"improvement {f.improvement:.4f} <= {bound:.4f} ({why})")
    return None


def validated(f: Facts) -> Decision | None:
    if f.improvement is None:
        return None
    return Decision("ImprovementValidated",
                    f"improvement {f.improvement:.4f} > {max(f.min_improvement, f.noise_bound):.4f}")


def awaiting_approval(f: Facts) -> Decision | None:
    if not f.auto_apply and not f.approved:
        return Decision("AwaitingApproval", "autoApply is false: set approved: true to apply")
    return None


def regression(f: Facts) -> Decision | None:
    if f.post_apply_improvement is None:
        return None
    if f.post_apply_improvement < -abs(f.regression_tolerance):
        return Decision("Regression",
                        f"post-apply score {f.post_apply_improvement:.4f} below the previous revision "
                        f"(tolerance {abs(f.regression_tolerance):.4f})")
    return None


def _finite(value) -> bool:
    import math
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


AGENT_CHAIN: tuple[Policy, ...] = (agent_paused, concurrency_limit_reached)
ADMISSION_CHAIN: tuple[Policy, ...] = (duplicate_candidate,)
SAFETY_CHAIN: tuple[Policy, ...] = (safety_below_threshold,)
EVALUATION_CHAIN: tuple[Policy, ...] = (
    evaluation_failed, deadline_exceeded, metrics_unavailable, stage_failed, insufficient_improvement, validated,
)
APPLY_CHAIN: tuple[Policy, ...] = (awaiting_approval,)
POST_APPLY_CHAIN: tuple[Policy, ...] = (regression,)


def evaluate_chain(chain: Iterable[Policy], facts: Facts) -> Decision | None:
    """The first policy's decision that is not None, else None."""
    for policy in chain:
        decision = policy(facts)
        if decision is not None:
            return decision
    return None
