"""Parent selection: who gets the next child. Pure functions of the archive and a seeded RNG.

Methods (``archive.parentSelection``):

* ``dgm``: the DGM paper's rule, kept faithful for comparison (below).
* ``greedy``: the best member, every time (hill climbing from the incumbent).
* ``random``: uniform over the eligible members.
* ``hgm``: clade-metaproductivity Thompson sampling (Huxley-Gödel Machine, Wang et al. 2025,
  arXiv 2510.21614), see :func:`hgm_counts`.
* ``adaptive``: greedy until the best score has stood for ``PATIENCE`` proposals, then
  broaden: the elite widens with the stall and is drawn with the DGM weights; a new best
  narrows it back to greedy (:func:`adaptive_width`).
* ``elite``: ShinkaEvolve's weighted rule: the DGM weights over a bounded elite (the top
  ``ELITE_SIZE`` members) whose scores are normalised by their median and MAD
  (:func:`elite_weights`).

Every method is stateless: what it needs (scores, lineage, creation order) is in the
archive, so the operator recomputes it from the candidates it reads back, and the same
archive and seed give the same parents.

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
import statistics
from typing import Sequence

from .archive import Archive
from .types import CandidateRecord, SelectionMethod

LAMBDA = 10.0
ALPHA0 = 0.5
# hgm: pseudo task evaluations one evaluated candidate counts for in the Beta posterior.
HGM_EVIDENCE = 10.0
# adaptive: proposals without a new best before the elite widens by one member.
PATIENCE = 4
# adaptive: share of the draws that stay on the best once stalled.
ADAPTIVE_KEEP = 0.25
# elite: members of the bounded elite.
ELITE_SIZE = 10


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
    norm = normalise_scores({r.name: float(r.score or 0.0) for r in eligible}, bounds)  # eligible: scored
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


def clades(archive: Archive) -> dict[str, list[str]]:
    """Name -> the names in its clade: itself and every descendant (eligible or not)."""
    out: dict[str, list[str]] = {}
    order = sorted(archive.records, key=lambda r: (r.created, r.name))

    def walk(name: str) -> list[str]:
        if name in out:
            return out[name]
        members = [name]
        stack = list(archive.children(name))
        seen = {name}
        while stack:
            child = stack.pop()
            if child in seen:  # defensive: lineage cycles are rejected elsewhere
                continue
            seen.add(child)
            members.append(child)
            stack.extend(archive.children(child))
        out[name] = members
        return members

    for record in order:
        walk(record.name)
    return out


def hgm_counts(archive: Archive, bounds: tuple[float, float] | None = None,
               evidence: float | None = None) -> dict[str, tuple[float, float]]:
    """Name -> (successes, failures) pooled over the clade, for every eligible member.

    HGM scores an agent by its *clade metaproductivity*: how well its descendants do, not
    how well it does itself. Its reference implementation pools the per-task pass/fail
    outcomes of a node and all its descendants and draws theta ~ Beta(1 + S, 1 + F). Here
    one evaluated candidate with normalised score nu (in [0, 1], as :func:`normalise_scores`)
    counts as ``evidence`` task evaluations of which a fraction nu passed.
    """
    evidence = HGM_EVIDENCE if evidence is None else evidence
    if evidence <= 0:
        raise ValueError(f"evidence must be > 0, got {evidence}")
    eligible = archive.eligible()
    norm = normalise_scores({r.name: float(r.score) for r in eligible}, bounds)  # type: ignore[arg-type]
    out: dict[str, tuple[float, float]] = {}
    members = clades(archive)
    for record in eligible:
        s = f = 0.0
        for name in members[record.name]:
            if name in norm:
                s += evidence * norm[name]
                f += evidence * (1.0 - norm[name])
        out[record.name] = (s, f)
    return out


def hgm_sample(counts: dict[str, tuple[float, float]], names: Sequence[str], rng: random.Random) -> str:
    """One Thompson draw: the argmax of theta_i ~ Beta(1 + S_i, 1 + F_i) (ties: first in `names`)."""
    best_name, best_theta = names[0], -1.0
    for name in names:
        s, f = counts[name]
        theta = rng.betavariate(1.0 + s, 1.0 + f)
        if theta > best_theta:
            best_name, best_theta = name, theta
    return best_name


def stall(archive: Archive) -> int:
    """Proposals since the current best: candidates created after it, whatever became of
    them (a duplicate, a failed or an unsafe proposal is a try that found nothing better, so
    a parent whose neighbourhood is used up makes the search broaden)."""
    best = archive.best()
    if best is None:
        return 0
    return sum(1 for r in archive.candidates if r.created > best.created and r.name != best.name)


def adaptive_width(archive: Archive, patience: int | None = None) -> int:
    """Elite width of ``adaptive``: 1 (greedy) until the best stalls for `patience`
    proposals, then one more member per further `patience` proposals."""
    patience = PATIENCE if patience is None else patience
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    return 1 + stall(archive) // patience


def ranked(archive: Archive) -> list[CandidateRecord]:
    """Eligible members, best first (ties: older first, then by name)."""
    return sorted(archive.eligible(), key=lambda r: (-float(r.score), r.created, r.name))  # type: ignore[arg-type]


def elite_weights(archive: Archive, size: int | None = None, lam: float = LAMBDA) -> dict[str, float]:
    """ShinkaEvolve's weighted selection on a bounded elite: for the top `size` members,
    z_i = (alpha_i - median) / MAD over the elite (all 0 when MAD = 0), and the DGM weight
    sigmoid(lam * z_i) / (1 + n_i) with n_i functioning children."""
    size = ELITE_SIZE if size is None else size
    if size < 1:
        raise ValueError(f"elite size must be >= 1, got {size}")
    elite = ranked(archive)[:size]
    if not elite:
        return {}
    scores = [float(r.score) for r in elite]  # type: ignore[arg-type]
    med = statistics.median(scores)
    mad = statistics.median(abs(x - med) for x in scores)
    weights = {}
    for record in elite:
        z = (float(record.score) - med) / mad if mad > 1e-12 else 0.0  # type: ignore[arg-type]
        weights[record.name] = sigmoid(lam * z) / (1.0 + len(archive.functioning_children(record.name)))
    return weights


def adaptive_weights(archive: Archive, width: int) -> dict[str, float]:
    """The DGM weights (scores min-max normalised over the elite, children penalty) of the
    top `width` members: the broadened draw of ``adaptive``."""
    elite = ranked(archive)[:max(1, width)]
    norm = normalise_scores({r.name: float(r.score) for r in elite})  # type: ignore[arg-type]
    return {r.name: dgm_weight(norm[r.name], len(archive.functioning_children(r.name))) for r in elite}


def _weighted(weights: dict[str, float], order: Sequence[str], k: int, rng: random.Random,
              fallback: str) -> list[str]:
    names = [n for n in order if n in weights]
    w = [weights[n] for n in names]
    if not names or sum(w) <= 0:
        return [fallback] * k
    return rng.choices(names, weights=w, k=k)


def select_parents(archive: Archive, method: SelectionMethod | str, k: int,
                   rng: random.Random | int | None = None,
                   bounds: tuple[float, float] | None = None) -> list[str]:
    """k parent names (with replacement) by `method`; [] when no member is eligible.

    `bounds` is the known fitness range (see :func:`normalise_scores`) for ``dgm`` and ``hgm``.
    """
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
    names: Sequence[str] = [r.name for r in eligible]
    if method is SelectionMethod.GREEDY:
        return [best.name] * k
    if method is SelectionMethod.RANDOM:
        return [rng.choice(eligible).name for _ in range(k)]
    if method is SelectionMethod.HGM:
        counts = hgm_counts(archive, bounds)
        return [hgm_sample(counts, names, rng) for _ in range(k)]
    if method is SelectionMethod.ELITE:
        return _weighted(elite_weights(archive), names, k, rng, best.name)
    if method is SelectionMethod.ADAPTIVE:
        width = adaptive_width(archive)
        if width <= 1:
            return [best.name] * k
        # stalled: a share of the draws stays on the best (it keeps being refined), the rest broaden
        weights = adaptive_weights(archive, width)
        return [best.name if rng.random() < ADAPTIVE_KEEP else _weighted(weights, names, 1, rng, best.name)[0]
                for _ in range(k)]
    weights = dgm_weights(archive, bounds)
    w = [weights[n] for n in names]
    if sum(w) <= 0:
        return [best.name] * k
    return rng.choices(names, weights=w, k=k)
