import random
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st

from dgm_operator.engine.archive import Archive
from dgm_operator.engine.selection import dgm_probabilities, dgm_weight, dgm_weights, normalise_scores, select_parents
from dgm_operator.engine.types import CandidateRecord as R, Phase

unit = st.floats(0, 1, allow_nan=False)
kids = st.integers(0, 1000)


@given(unit, kids)
def test_weight_in_unit_interval(s, n):
    assert 0.0 <= dgm_weight(s, n) <= 1.0


@given(unit, unit, kids)
def test_weight_monotone_in_score(s1, s2, n):
    lo, hi = sorted((s1, s2))
    assert dgm_weight(lo, n) <= dgm_weight(hi, n)


@given(unit, kids, kids)
def test_weight_decreasing_in_children(s, n1, n2):
    lo, hi = sorted((n1, n2))
    assert dgm_weight(s, hi) <= dgm_weight(s, lo)


def test_paper_constants():
    assert dgm_weight(0.5, 0) == pytest.approx(0.5)
    assert dgm_weight(0.5, 1) == pytest.approx(0.25)
    assert dgm_weight(1.0, 0) == pytest.approx(1 / (1 + 2.718281828 ** -5))


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=20))
def test_minmax_normalisation_in_unit_interval(scores):
    norm = normalise_scores({str(i): s for i, s in enumerate(scores)})
    assert all(0.0 <= v <= 1.0 for v in norm.values())


def archive():
    base = R("base", score=0.0, is_baseline=True)
    return Archive(base, [
        R("good", None, Phase.VALIDATED, score=1.0, created=1),
        R("mid", None, Phase.REJECTED, score=0.5, reason="InsufficientImprovement", created=2),
        R("kid1", "good", Phase.VALIDATED, score=0.9, created=3),
        R("kid2", "good", Phase.VALIDATED, score=0.9, created=4),
        R("bad", None, Phase.REJECTED, score=5.0, reason="UnsafeChange", created=5),
    ])


def test_dgm_weights_use_functioning_children_and_ignore_ineligible():
    w = dgm_weights(archive())
    assert set(w) == {"base", "good", "mid", "kid1", "kid2"}
    assert w["good"] == pytest.approx(dgm_weight(1.0, 2))
    assert w["kid1"] == pytest.approx(dgm_weight(0.9, 0))
    assert sum(dgm_probabilities(archive()).values()) == pytest.approx(1.0)


def test_bounds_make_perfect_members_ineligible():
    w = dgm_weights(archive(), bounds=(0.0, 1.0))
    assert w["good"] == 0.0 and w["kid1"] > 0
    base = R("base", score=1.0, is_baseline=True)
    # everyone perfect: fall back to the best
    assert select_parents(Archive(base, []), "dgm", 3, 1, bounds=(0.0, 1.0)) == ["base"] * 3


def test_methods_are_reproducible_and_shaped():
    a = archive()
    assert select_parents(a, "greedy", 3, 0) == ["good"] * 3
    assert select_parents(a, "dgm", 5, random.Random(7)) == select_parents(a, "dgm", 5, random.Random(7))
    assert len(select_parents(a, "random", 4, 3)) == 4
    assert set(select_parents(a, "random", 200, 3)) == {"base", "good", "mid", "kid1", "kid2"}
    assert select_parents(a, "dgm", 0, 1) == []


def test_dgm_draw_frequencies_follow_weights():
    a = archive()
    counts = Counter(select_parents(a, "dgm", 20000, random.Random(1)))
    probs = dgm_probabilities(a)
    for name, p in probs.items():
        assert counts[name] / 20000 == pytest.approx(p, abs=0.02)
    assert "bad" not in counts


# --- hgm, adaptive, elite ----------------------------------------------------------------

from dgm_operator.engine import selection  # noqa: E402
from dgm_operator.engine.selection import (  # noqa: E402
    adaptive_width, clades, elite_weights, hgm_counts, stall,
)
from dgm_operator.engine.types import SelectionMethod  # noqa: E402

NEW_METHODS = ("hgm", "adaptive", "elite")


def test_new_methods_are_api_values():
    assert {m.value for m in SelectionMethod} >= {"dgm", "greedy", "random", *NEW_METHODS}


def test_clades_hold_every_descendant():
    c = clades(archive())
    assert sorted(c["good"]) == ["good", "kid1", "kid2"]
    assert sorted(c["base"]) == ["bad", "base", "good", "kid1", "kid2", "mid"]
    assert c["kid1"] == ["kid1"]


def test_hgm_counts_pool_the_clade():
    counts = hgm_counts(archive(), bounds=(0.0, 1.0), evidence=1.0)
    # good: itself 1.0, kids 0.9 and 0.9 -> S = 2.8, F = 0.2 (the unsafe child is not evaluated)
    assert counts["good"] == pytest.approx((2.8, 0.2))
    assert counts["kid1"] == pytest.approx((0.9, 0.1))
    s, f = counts["base"]
    assert s + f == pytest.approx(5.0)  # base, good, mid, kid1, kid2
    with pytest.raises(ValueError, match="evidence"):
        hgm_counts(archive(), evidence=0)


def test_hgm_prefers_the_productive_clade():
    base = R("base", score=0.5, is_baseline=True)
    recs = [R("a", None, Phase.VALIDATED, score=0.6, created=1), R("b", None, Phase.VALIDATED, score=0.6, created=2)]
    recs += [R(f"a{i}", "a", Phase.VALIDATED, score=0.9, created=3 + i) for i in range(5)]
    recs += [R(f"b{i}", "b", Phase.REJECTED, score=0.1, reason="InsufficientImprovement", created=10 + i)
             for i in range(5)]
    counts = Counter(select_parents(Archive(base, recs), "hgm", 3000, random.Random(3), bounds=(0.0, 1.0)))
    assert counts["a"] > 5 * max(1, counts["b"])  # same own score, very different descendants


def test_adaptive_is_greedy_until_stalled_then_broadens():
    base = R("base", score=0.0, is_baseline=True)
    recs = [R("best", None, Phase.VALIDATED, score=1.0, created=1)]
    a = Archive(base, recs)
    assert stall(a) == 0 and adaptive_width(a) == 1
    assert select_parents(a, "adaptive", 5, 1) == ["best"] * 5
    recs += [R(f"w{i}", "best", Phase.REJECTED, score=0.5 - i / 100, reason="InsufficientImprovement",
               created=2 + i) for i in range(3 * selection.PATIENCE)]
    a = Archive(base, recs)
    assert stall(a) == 3 * selection.PATIENCE and adaptive_width(a) == 4
    picks = Counter(select_parents(a, "adaptive", 4000, 2))
    top = {r.name for r in selection.ranked(a)[:4]}
    assert set(picks) <= top and len(picks) > 1  # broadened, within the elite only
    # a new best resets the stall: greedy again
    a = Archive(base, recs + [R("new", "w0", Phase.VALIDATED, score=2.0, created=99)])
    assert select_parents(a, "adaptive", 3, 1) == ["new"] * 3


def test_elite_weights_are_bounded_and_mad_normalised():
    base = R("base", score=0.0, is_baseline=True)
    recs = [R(f"c{i}", None, Phase.VALIDATED, score=float(i), created=i) for i in range(1, 30)]
    w = elite_weights(Archive(base, recs), size=5)
    assert set(w) == {"c25", "c26", "c27", "c28", "c29"}
    assert w["c29"] > w["c27"] > w["c25"]  # median 27, MAD 1
    assert w["c27"] == pytest.approx(0.5)
    same = [R(f"s{i}", None, Phase.VALIDATED, score=1.0, created=i) for i in range(1, 4)]
    assert set(elite_weights(Archive(base, same), size=3).values()) == {0.5}  # MAD 0: all equal


records_strategy = st.lists(
    st.tuples(st.floats(-5, 5, allow_nan=False), st.integers(0, 50),
              st.sampled_from(["Validated", "Rejected", "Failed", "Applied"])),
    min_size=0, max_size=25)


def _build(rows):
    base = R("base", score=0.0, is_baseline=True)
    recs = []
    for i, (score, parent, phase) in enumerate(rows):
        parent_name = recs[parent % len(recs)].name if recs and parent % 3 else None
        recs.append(R(f"c{i}", parent_name, phase, score=None if phase == "Failed" else score,
                      reason="InsufficientImprovement" if phase == "Rejected" else None, created=i + 1))
    return Archive(base, recs)


@settings(max_examples=60, deadline=None)
@given(records_strategy, st.sampled_from([m.value for m in SelectionMethod]), st.integers(0, 6),
       st.integers(0, 2 ** 32 - 1))
def test_every_method_is_deterministic_and_picks_eligible_members(rows, method, k, seed):
    a = _build(rows)
    picks = select_parents(a, method, k, random.Random(seed))
    assert picks == select_parents(a, method, k, random.Random(seed))
    assert len(picks) == k
    eligible = {r.name for r in a.eligible()}
    assert set(picks) <= eligible


@settings(max_examples=40, deadline=None)
@given(records_strategy)
def test_hgm_counts_are_proper_pseudo_counts(rows):
    a = _build(rows)
    counts = hgm_counts(a, evidence=2.0)
    sizes = clades(a)
    eligible = {r.name for r in a.eligible()}
    for name, (s, f) in counts.items():
        assert s >= 0 and f >= 0
        assert s + f == pytest.approx(2.0 * sum(1 for n in sizes[name] if n in eligible))


def test_duplicates_and_failures_count_as_tries_for_the_stall():
    base = R("base", score=0.0, is_baseline=True)
    recs = [R("best", None, Phase.VALIDATED, score=1.0, created=1)]
    recs += [R(f"d{i}", "best", Phase.REJECTED, reason="DuplicateCandidate", created=2 + i)
             for i in range(selection.PATIENCE)]
    a = Archive(base, recs)
    assert stall(a) == selection.PATIENCE and adaptive_width(a) == 2
