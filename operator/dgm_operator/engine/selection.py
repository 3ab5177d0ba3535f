"""Parent selection: `dgm` (the DGM paper's rule), `greedy` and `random`.

DGM (Zhang et al., 2025, "Darwin Gödel Machine", parent selection): for each eligible
archive member i with score alpha_i and n_i functioning children,

    s_i = sigmoid(lambda * (alpha_i - alpha_0))       (lambda = 10, alpha_0 = 0.5)
    h_i = 1 / (1 + n_i)
    p_i = s_i * h_i / sum_j s_j * h_j

and k parents are drawn with replacement from p. Members that already solve every task
(accuracy 1) are not selected, since nothing is left to improve.

Normalising scores. The paper's alpha is an accuracy in [0, 1]; our fitness
(:func:`.scoring.fitness`) is an unbounded weighted relative change. So scores are mapped
to [0, 1] before the sigmoid:

* with known `bounds=(lo, hi)` (the fitness range is known, e.g. all metrics are
  accuracies), ``(score - lo) / (hi - lo)`` clamped to [0, 1]. Then "perfect" means the same
  as in the paper: the member reached the upper bound (normalised score >= 1) and is not
  eligible as a parent;
* without bounds, min-max over the eligible archive: ``(score - min) / (max - min)``
  (all 0.5 when every score is equal). Here 1.0 only means "best so far", not "nothing
  left to improve", so *no member is treated as perfect*: excluding the current best
  would forbid extending the frontier, which is the opposite of the paper's intent.

When every eligible member is perfect (all weights are zero), the selection falls back
to the best member, so a selection never comes back empty while the archive has a parent.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

from .archive import Archive
from .types import SelectionMethod

LAMBDA = 10.0
ALPHA0 = 0.5


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def dgm_weight(normalised_score: float, functioning_children: int,
               lam: float = LAMBDA, alpha0: float = ALPHA0) -> float:
    """Unnormalised selection weight s_i * h_i, in [0, 1]."""
    if functioning_children < 0:
        raise ValueError("functioning_children must be >= 0")
    return sigmoid(lam * (normalised_score - alpha0)) / (1.0 + functioning_children)


def normalise_scores(scores: dict[str, float], bounds: tuple[float, float] | None = None) -> dict[str, float]:
    if not scores:
        return {}
    if bounds is not None:
        lo, hi = bounds
        if not hi > lo:
            raise ValueError(f"bounds must have hi > lo, got {bounds}")
        return {n: min(1.0, max(0.0, (s - lo) / (hi - lo))) for n, s in scores.items()}
    lo, hi = min(scores.values()), max(scores.values())
    if hi - lo <= 1e-12:
        return {n: 0.5 for n in scores}
    return {n: (s - lo) / (hi - lo) for n, s in scores.items()}


def dgm_weights(archive: Archive, bounds: tuple[float, float] | None = None,
                lam: float = LAMBDA, alpha0: float = ALPHA0) -> dict[str, float]:
    """Name -> unnormalised weight for every eligible member (0 for perfect ones)."""
    eligible = archive.eligible()
    norm = normalise_scores({r.name: float(r.score) for r in eligible}, bounds)
    weights = {}
    for record in eligible:
        if bounds is not None and norm[record.name] >= 1.0:
            weights[record.name] = 0.0  # perfect: nothing left to improve
        else:
            weights[record.name] = dgm_weight(norm[record.name], len(archive.functioning_children(record.name)),
                                              lam, alpha0)
    return weights


def dgm_probabilities(archive: Archive, bounds: tuple[float, float] | None = None) -> dict[str, float]:
    weights = dgm_weights(archive, bounds)
    total = sum(weights.values())
    if total <= 0:
        return {}
    return {n: w / total for n, w in weights.items()}


def select_parents(archive: Archive, method: SelectionMethod | str, k: int,
                   rng: random.Random | int | None = None,
                   bounds: tuple[float, float] | None = None) -> list[str]:
    """k parent names (with replacement) by `method`; [] when no member is eligible."""
    method = SelectionMethod(method)
    if k < 0:
        raise ValueError("k must be >= 0")
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    eligible = sorted(archive.eligible(), key=lambda r: (r.created, r.name))
    if not eligible or k == 0:
        return []
    best = archive.best()
    assert best is not None
    if method is SelectionMethod.GREEDY:
        return [best.name] * k
    if method is SelectionMethod.RANDOM:
        return [rng.choice(eligible).name for _ in range(k)]
    weights = dgm_weights(archive, bounds)
    names: Sequence[str] = [r.name for r in eligible]
    w = [weights[n] for n in names]
    if sum(w) <= 0:
        return [best.name] * k
    return rng.choices(names, weights=w, k=k)
