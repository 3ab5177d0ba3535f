"""Scoring: relative improvement over a baseline, repeats and noise, acceptance, stages.

Per metric, the change against the baseline is relative and signed by the goal:

    maximize: (value - base) / |base|        minimize: (base - value) / |base|

so a positive number is always "better". A baseline whose magnitude is below
``ZERO_BASELINE`` (1e-9) has no scale to be relative to; the change is then the absolute
difference (still signed by goal). Each change is clipped to ±``MAX_RELATIVE_CHANGE``
(10, i.e. ±1000 %) so one metric cannot swamp the rest (not for fitness, below). The *improvement score* is the
weighted mean of the per-metric changes (weights from the metric specs).

Fitness (the archive's absolute score, used for the best candidate and parent selection)
is the improvement score measured against one fixed *reference*: the agent's original
baseline metrics (revision 1, measured before any change). Fitness 0 is the original
agent, 0.25 means "25 % better on the weighted metrics". Because the reference never
moves, fitness values of all archive members are comparable, whatever revision was live
when each one was evaluated; acceptance, by contrast, compares against the *current*
revision (see :func:`decide_acceptance`).

Noise. With repeats, each metric has a mean and a sample standard deviation. The noise
of the improvement score is propagated from the standard errors of both means:

    sigma = sqrt( sum_i (w_i / W)^2 * (sd_cand_i^2 / n_cand + sd_base_i^2 / n_base) / scale_i^2 )

(scale_i = |base_i|, or 1 for a zero baseline). A candidate is accepted only when its gain
exceeds both ``min_improvement`` and ``z * sigma`` (z = 2 by default: a one-sided ~97.7 %
bound that the gain is not noise). With a single repeat there is no spread and the noise
bound is 0: only ``min_improvement`` guards.

Staged evaluation: cheap stages (subsets of the benchmark) before the full run. Two
promotion rules say whether a child runs the next stage:

* ``threshold`` (:func:`stage_decision`): its stage score reaches a fixed pass threshold;
* ``rank`` (:func:`rank_decision`), successive halving as in ASHA (Li et al., 2020): its
  stage score, measured against its parent on the same tasks, is in the top 1/eta of the
  children evaluated at that stage so far (itself included). A threshold says nothing about
  how many children pass, so its cost is unbounded when the cheap stage flatters; a rank
  bounds the share promoted to about 1/eta, so with a cheap stage costing c of the full run a
  child costs about c + 1/eta full evaluations on average.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

from .types import Goal, MetricSpec

ZERO_BASELINE = 1e-9
MAX_RELATIVE_CHANGE = 10.0
DEFAULT_Z = 2.0


class MetricsError(ValueError):
    """A metric needed for scoring is missing or not a finite number."""


@dataclass(frozen=True)
class MetricStats:
    mean: float
    stdev: float
    n: int


@dataclass(frozen=True)
class AcceptanceDecision:
    accepted: bool
    gain: float
    noise_bound: float
    threshold: float
    message: str


@dataclass(frozen=True)
class StageDecision:
    action: str  # "continue" (run the next stage), "stop" (threshold not met), "done" (last stage passed)
    stage: int
    score: float
    threshold: float
    message: str


def _scale(base: float) -> float:
    return abs(base) if abs(base) > ZERO_BASELINE else 1.0


def relative_change(value: float, base: float, goal: Goal | str = Goal.MAXIMIZE,
                    cap: float | None = MAX_RELATIVE_CHANGE) -> float:
    """Signed relative change of one metric; > 0 is better for the goal (clipped to ±cap)."""
    goal = Goal(goal)
    for label, v in (("value", value), ("baseline", base)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise MetricsError(f"{label} {v!r} is not a finite number")
    delta = (value - base) if goal is Goal.MAXIMIZE else (base - value)
    change = delta / _scale(base)
    return change if cap is None else max(-cap, min(cap, change))


def _require(metrics: Mapping[str, float], name: str, what: str) -> float:
    if name not in metrics:
        raise MetricsError(f"metric {name!r} missing from the {what} metrics")
    value = metrics[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MetricsError(f"metric {name!r} of the {what} is not a finite number: {value!r}")
    return float(value)


def _total_weight(specs: Sequence[MetricSpec]) -> float:
    total = sum(s.weight for s in specs)
    if not specs or total <= 0:
        raise MetricsError("no metric with a positive weight to score")
    return total


def improvement_score(metrics: Mapping[str, float], baseline: Mapping[str, float],
                      specs: Sequence[MetricSpec], cap: float | None = MAX_RELATIVE_CHANGE) -> float:
    """Weighted mean of the per-metric relative changes against `baseline`."""
    total = _total_weight(specs)
    acc = 0.0
    for spec in specs:
        acc += spec.weight * relative_change(_require(metrics, spec.name, "candidate"),
                                             _require(baseline, spec.name, "baseline"), spec.goal, cap)
    return acc / total


def fitness(metrics: Mapping[str, float], reference: Mapping[str, float], specs: Sequence[MetricSpec]) -> float:
    """Absolute archive score: the improvement score against the fixed original reference.

    Not clipped (unlike acceptance scores), so the archive's ranking stays strictly monotone
    in every metric even far from the reference."""
    return improvement_score(metrics, reference, specs, cap=None)


def aggregate_repeats(runs: Sequence[Mapping[str, float]]) -> dict[str, MetricStats]:
    """Per metric: mean, sample stdev (0 for one run) and the number of runs having it."""
    if not runs:
        raise MetricsError("no evaluation runs")
    names = sorted({name for run in runs for name in run})
    out = {}
    for name in names:
        values = [_require(run, name, f"run {i}") for i, run in enumerate(runs) if name in run]
        stdev = statistics.stdev(values) if len(values) > 1 else 0.0
        out[name] = MetricStats(statistics.fmean(values), stdev, len(values))
    return out


def means(stats: Mapping[str, MetricStats]) -> dict[str, float]:
    return {name: s.mean for name, s in stats.items()}


def noise_bound(candidate: Mapping[str, MetricStats], baseline: Mapping[str, MetricStats],
                specs: Sequence[MetricSpec]) -> float:
    """Standard error of the improvement score (see the module docstring)."""
    total = _total_weight(specs)
    var = 0.0
    for spec in specs:
        if spec.name not in candidate or spec.name not in baseline:
            raise MetricsError(f"metric {spec.name!r} missing from the repeat statistics")
        c, b = candidate[spec.name], baseline[spec.name]
        se2 = c.stdev ** 2 / max(c.n, 1) + b.stdev ** 2 / max(b.n, 1)
        var += (spec.weight / total) ** 2 * se2 / _scale(b.mean) ** 2
    return math.sqrt(var)


def decide_acceptance(gain: float, noise: float, min_improvement: float, z: float = DEFAULT_Z) -> AcceptanceDecision:
    """Accept only when gain > min_improvement and gain > z * noise."""
    bound = z * noise
    threshold = max(min_improvement, bound)
    accepted = gain > min_improvement and gain > bound
    if accepted:
        message = f"improvement {gain:.4f} > threshold {threshold:.4f}"
    elif gain <= min_improvement:
        message = f"improvement {gain:.4f} <= minImprovement {min_improvement:.4f}"
    else:
        message = f"improvement {gain:.4f} within noise (<= {z:g} x stderr {noise:.4f} = {bound:.4f})"
    return AcceptanceDecision(accepted, gain, bound, threshold, message)


def evaluate_repeats(candidate_runs: Sequence[Mapping[str, float]], baseline_runs: Sequence[Mapping[str, float]],
                     specs: Sequence[MetricSpec], min_improvement: float,
                     z: float = DEFAULT_Z) -> tuple[AcceptanceDecision, dict[str, MetricStats]]:
    """Repeats of candidate and current baseline -> acceptance decision and candidate stats."""
    cand, base = aggregate_repeats(candidate_runs), aggregate_repeats(baseline_runs)
    gain = improvement_score(means(cand), means(base), specs)
    return decide_acceptance(gain, noise_bound(cand, base, specs), min_improvement, z), cand


def stage_decision(stage: int, stage_score: float, threshold: float, n_stages: int) -> StageDecision:
    """After stage `stage` (0-based) of `n_stages` scored `stage_score`: continue, stop or done."""
    if n_stages < 1 or not 0 <= stage < n_stages:
        raise ValueError(f"stage {stage} out of range for {n_stages} stages")
    if not math.isfinite(stage_score) or stage_score < threshold:
        return StageDecision("stop", stage, stage_score, threshold,
                             f"stage {stage} score {stage_score:.4f} < pass threshold {threshold:.4f}")
    if stage == n_stages - 1:
        return StageDecision("done", stage, stage_score, threshold, f"last stage {stage} passed")
    return StageDecision("continue", stage, stage_score, threshold,
                         f"stage {stage} score {stage_score:.4f} >= pass threshold {threshold:.4f}")


def rank_decision(stage: int, stage_score: float, peers: Sequence[float], n_stages: int,
                  eta: float = 3.0, floor: float | None = None) -> StageDecision:
    """Promotion by rank after stage `stage` (0-based) of `n_stages`.

    `stage_score` is the child's score at this stage against its parent on the same tasks;
    `peers` are the same scores of the other children evaluated at this stage. The child
    continues when at most ceil(n / eta) - 1 of the n = len(peers) + 1 children scored
    strictly higher (ties favour the child), and, with `floor`, its score reaches it too.
    """
    if n_stages < 1 or not 0 <= stage < n_stages:
        raise ValueError(f"stage {stage} out of range for {n_stages} stages")
    if not eta > 1:
        raise ValueError(f"eta must be > 1, got {eta}")
    finite = [p for p in peers if math.isfinite(p)]
    n = len(finite) + 1
    quota = max(1, math.ceil(n / eta))
    above = sum(1 for p in finite if p > stage_score)
    rank_ok = math.isfinite(stage_score) and above < quota
    floor_ok = floor is None or (math.isfinite(stage_score) and stage_score >= floor)
    where = f"rank {above + 1} of {n} at stage {stage} (top {quota} promoted, eta {eta:g})"
    threshold = floor if floor is not None else -math.inf
    if not rank_ok or not floor_ok:
        why = where if not rank_ok else f"score {stage_score:.4f} < floor {floor:.4f}"
        return StageDecision("stop", stage, stage_score, threshold, f"stage {stage}: {why}")
    if stage == n_stages - 1:
        return StageDecision("done", stage, stage_score, threshold, f"last stage {stage} passed ({where})")
    return StageDecision("continue", stage, stage_score, threshold, f"stage {stage} passed: {where}")
