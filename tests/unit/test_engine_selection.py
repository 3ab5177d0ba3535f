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
