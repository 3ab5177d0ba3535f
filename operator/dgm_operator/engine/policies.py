"""Decisions as small pure policies, chained (after cert-manager's certificate policies).

A policy takes the :class:`Facts` of one candidate (or agent) and returns a
:class:`Decision` ``(reason, message)``, or None when it has nothing to say. A chain runs its
policies in order and the first hit wins (:func:`evaluate_chain`). Reasons are CamelCase
(the Kubernetes condition convention) and are what the operator writes to
``status.reason`` and the conditions.

Chains (each is run by the operator's reconcilers; none exists for tests alone):

* :data:`USER_ACTION_CHAIN`: an imperative action on a candidate (RejectedByUser)
* :data:`PROPOSAL_CHAIN`: may the agent propose a new candidate? (AgentPaused,
  TokenBudgetExhausted, ConcurrencyLimitReached)
* :data:`SAFETY_CHAIN`: after the static analysis (UnsafeChange, ImageNeedsGrader)
* :data:`ADMISSION_CHAIN`: may a safe candidate start its evaluation? (DuplicateCandidate,
  ConcurrencyLimitReached)
* :data:`EVALUATION_CHAIN`: after an evaluation stage or the full run (SandboxNotEnforced,
  ImageUnavailable, OOMKilled, DeadlineExceeded, EvaluationFailed, MetricsUnavailable, StageThresholdNotMet, InsufficientImprovement,
  ImprovementValidated); a stage that is not the last one answers None when it passes
* :data:`APPLY_CHAIN`: a validated candidate before apply (AwaitingApproval for an image not
  in allowedImages, for code without autoApplyCode, or without autoApply; AgentPaused)
* :data:`ROLLOUT_CHAIN`: an applied revision's rollout (RolloutFailed)
* :data:`POST_APPLY_CHAIN`: after the post-apply evaluation (VerificationInconclusive,
  Regression, Verified)
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

from . import scoring
from .types import Finding


class Decision(NamedTuple):
    reason: str
    message: str


@dataclass
class Facts:
    """What the policies look at; fields a chain does not need may stay at their defaults."""

    # agent
    paused: bool = False
    active_candidates: int = 0  # proposals in flight count too
    max_concurrent_candidates: int = 3
    # admission
    duplicate_of: str | None = None
    tokens_today: int = 0  # model tokens spent by proposals on now's UTC day
    max_tokens_per_day: int | None = None
    now: dt.datetime | None = None
    # safety
    safety_score: float | None = None
    safety_threshold: float = 0.8
    findings: Sequence[Finding] = ()
    # user actions
    user_action: str | None = None
    phase: str | None = None
    # code changes (as opposed to configuration)
    code_files: Sequence[str] = ()
    auto_apply_code: bool = False
    # image candidates
    image: str | None = None  # a candidate's new image (None: it keeps the agent's)
    single_process: bool = False
    allowed_images: Sequence[str] = ()
    # evaluation
    sandbox_error: str | None = None
    image_error: str | None = None
    container_reason: str = ""
    evaluation_failed: bool = False
    failure_message: str = ""
    job_reason: str = ""
    timeout_seconds: float | None = None
    metrics: Mapping[str, float] | None = None
    required_metrics: Sequence[str] = ()
    stage: int | None = None
    stage_score: float | None = None
    stage_threshold: float | None = None
    stage_promotion: str = "threshold"  # or "rank" (see scoring.rank_decision)
    stage_peers: Sequence[float] = ()  # rank: the other children's scores at this stage
    eta: float = 3.0
    improvement: float | None = None
    min_improvement: float = 0.0
    noise_bound: float = 0.0
    # apply
    auto_apply: bool = False
    approved: bool = False
    # rollout and post-apply
    revision: int | None = None
    rollout: str | None = None
    post_apply_metrics_usable: bool = True
    post_apply_improvement: float | None = None
    regression_tolerance: float = 0.0


Policy = Callable[[Facts], "Decision | None"]


def rejected_by_user(f: Facts) -> Decision | None:
    if f.user_action == "reject" and f.phase in ("Proposed", "Validated"):
        return Decision("RejectedByUser", "rejected through the dgm.io/action annotation")
    return None


def agent_paused(f: Facts) -> Decision | None:
    if f.paused:
        return Decision("AgentPaused", "the agent is paused (spec.paused): no new candidates")
    return None


def token_budget_exhausted(f: Facts) -> Decision | None:
    """``maxTokensPerDay``: once the tokens of the UTC day reach it, no proposal starts until
    the next UTC day (proposals already running finish)."""
    if f.max_tokens_per_day is None or f.now is None or f.tokens_today < f.max_tokens_per_day:
        return None
    today = f.now.astimezone(dt.timezone.utc).date()
    return Decision("TokenBudgetExhausted",
                    f"{f.tokens_today} tokens spent on {today.isoformat()} (UTC) >= maxTokensPerDay "
                    f"{f.max_tokens_per_day}: proposals pause until {(today + dt.timedelta(days=1)).isoformat()}T00:00:00Z")


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


def image_needs_grader(f: Facts) -> Decision | None:
    """An image candidate in the single-process mode would run the grader in its own image."""
    if f.image and f.single_process:
        return Decision("ImageNeedsGrader", f"candidate image {f.image} cannot be evaluated in "
                                            "evaluation.mode SingleProcess: the grader would run inside it; "
                                            "use mode Grader")
    return None


def sandbox_not_enforced(f: Facts) -> Decision | None:
    if f.sandbox_error:
        return Decision("SandboxNotEnforced", f"{f.sandbox_error}; the candidate's code never ran")
    return None


def image_unavailable(f: Facts) -> Decision | None:
    if f.image_error:
        return Decision("ImageUnavailable", f.image_error)
    return None


def out_of_memory(f: Facts) -> Decision | None:
    if f.evaluation_failed and f.container_reason == "OOMKilled":
        return Decision("OOMKilled", f"{f.failure_message}: a container exceeded its memory limit")
    return None


def evaluation_failed(f: Facts) -> Decision | None:
    if f.evaluation_failed:
        return Decision("EvaluationFailed", f.failure_message or "the evaluation Job failed")
    return None


def deadline_exceeded(f: Facts) -> Decision | None:
    """The Job's activeDeadlineSeconds ended it (the Job controller's reason)."""
    if f.evaluation_failed and f.job_reason == "DeadlineExceeded":
        limit = f" {f.timeout_seconds:.0f}s" if f.timeout_seconds is not None else ""
        return Decision("DeadlineExceeded", f"{f.failure_message}: the evaluation exceeded its deadline "
                                            f"(activeDeadlineSeconds{limit}, spec.evaluation.timeoutSeconds)")
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
    """Threshold promotion: StageThresholdNotMet below the pass threshold. Rank promotion:
    StageNotPromoted outside the top 1/eta of the stage's children (or below the threshold,
    then a floor)."""
    if f.stage_promotion == "rank" and f.stage_score is not None and f.stage is not None:
        ranked = scoring.rank_decision(0, f.stage_score, f.stage_peers, 2, f.eta, f.stage_threshold)
        if ranked.action == "stop":
            return Decision("StageNotPromoted", ranked.message.replace("stage 0", f"stage {f.stage}", 1))
        return None
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


def image_allowed(image: str, patterns: Sequence[str]) -> bool:
    """Whether ``image`` matches one of ``patterns``: a glob over the whole reference
    (``registry.example/agent:*``) or a digest (``sha256:...``) the reference pins."""
    for pattern in patterns:
        if pattern.startswith("sha256:"):
            if image.endswith("@" + pattern):
                return True
        elif fnmatch.fnmatchcase(image, pattern):
            return True
    return False


def image_not_allowed(f: Facts) -> Decision | None:
    if f.image and not f.approved and not image_allowed(f.image, f.allowed_images):
        return Decision("AwaitingApproval", f"image {f.image} is not in policy.allowedImages: an image change "
                                            "waits for approval (spec.approved or kubectl dgm approve)")
    return None


CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml", ".ini", ".cfg", ".conf", ".txt", ".md", ".csv")


def code_files(changes: Iterable[str]) -> list[str]:
    """The changed files that are code (anything but configuration and text)."""
    return sorted(name for name in changes if not name.lower().endswith(CONFIG_SUFFIXES))


def code_needs_approval(f: Facts) -> Decision | None:
    if f.code_files and f.auto_apply and not f.auto_apply_code and not f.approved:
        return Decision("AwaitingApproval", f"changes code ({', '.join(f.code_files[:5])}): policy.autoApplyCode is "
                                            "false, so a person approves code even with autoApply")
    return None


def awaiting_approval(f: Facts) -> Decision | None:
    if not f.auto_apply and not f.approved:
        return Decision("AwaitingApproval", "autoApply is false: set approved: true to apply")
    return None


def rollout_failed(f: Facts) -> Decision | None:
    if f.rollout == "failed":
        return Decision("RolloutFailed", f"revision {f.revision} did not progress (ProgressDeadlineExceeded)")
    return None


def verification_inconclusive(f: Facts) -> Decision | None:
    if not f.post_apply_metrics_usable:
        return Decision("VerificationInconclusive",
                        "the post-apply evaluation produced no usable metrics; keeping the revision")
    return None


def regression(f: Facts) -> Decision | None:
    if f.post_apply_improvement is None:
        return None
    if f.post_apply_improvement < -abs(f.regression_tolerance):
        return Decision("Regression",
                        f"post-apply score {f.post_apply_improvement:.4f} below the previous revision "
                        f"(tolerance {abs(f.regression_tolerance):.4f})")
    return None


def verified(f: Facts) -> Decision | None:
    if f.post_apply_improvement is None:
        return None
    return Decision("Verified", f"post-apply score {f.post_apply_improvement:.4f} against the previous revision")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


USER_ACTION_CHAIN: tuple[Policy, ...] = (rejected_by_user,)
PROPOSAL_CHAIN: tuple[Policy, ...] = (agent_paused, token_budget_exhausted, concurrency_limit_reached)
SAFETY_CHAIN: tuple[Policy, ...] = (safety_below_threshold, image_needs_grader)
ADMISSION_CHAIN: tuple[Policy, ...] = (duplicate_candidate, concurrency_limit_reached)
EVALUATION_CHAIN: tuple[Policy, ...] = (
    sandbox_not_enforced, image_unavailable, out_of_memory, deadline_exceeded, evaluation_failed, metrics_unavailable, stage_failed, insufficient_improvement, validated,
)
APPLY_CHAIN: tuple[Policy, ...] = (image_not_allowed, code_needs_approval, awaiting_approval, agent_paused)
ROLLOUT_CHAIN: tuple[Policy, ...] = (rollout_failed,)
POST_APPLY_CHAIN: tuple[Policy, ...] = (verification_inconclusive, regression, verified)


def evaluate_chain(chain: Iterable[Policy], facts: Facts) -> Decision | None:
    """The first policy's decision that is not None, else None."""
    for policy in chain:
        decision = policy(facts)
        if decision is not None:
            return decision
    return None
