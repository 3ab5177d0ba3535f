import math

import pytest
from hypothesis import assume, given, strategies as st

from dgm_operator.engine import scoring as sc
from dgm_operator.engine.types import Goal, MetricSpec

num = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@given(num, num)
def test_sign_by_goal_and_symmetry(value, base):
    up = sc.relative_change(value, base, "maximize")
    down = sc.relative_change(value, base, "minimize")
    assert up == pytest.approx(-down)
    if value > base:
        assert up >= 0
    if value < base:
        assert down >= 0
    assert sc.relative_change(base, base, Goal.MAXIMIZE) == 0


@given(num, num)
def test_capped(value, base):
    assert abs(sc.relative_change(value, base)) <= sc.MAX_RELATIVE_CHANGE


@given(st.floats(0.01, 100), st.floats(0.01, 1.0))
def test_symmetric_changes_cancel(base, frac):
    specs = [MetricSpec("a", "maximize"), MetricSpec("b", "minimize")]
    # a improves by frac, b worsens by frac: equal weights cancel
    score = sc.improvement_score({"a": base * (1 + frac), "b": base * (1 + frac)}, {"a": base, "b": base}, specs)
    assert score == pytest.approx(0.0, abs=1e-9)


def test_weighted_mean_and_zero_baseline():
    specs = [MetricSpec("accuracy", weight=3), MetricSpec("response_time", "minimize", 1)]
    s = sc.improvement_score({"accuracy": 0.88, "response_time": 0.5}, {"accuracy": 0.8, "response_time": 1.0}, specs)
    assert s == pytest.approx((3 * 0.1 + 1 * 0.5) / 4)
    assert sc.relative_change(0.2, 0.0, "minimize") == pytest.approx(-0.2)  # absolute when base is 0


def test_fitness_uncapped_and_errors():
    specs = [MetricSpec("q")]
    assert sc.fitness({"q": 100.0}, {"q": 1.0}, specs) == pytest.approx(99.0)
    with pytest.raises(sc.MetricsError, match="'q' missing"):
        sc.improvement_score({}, {"q": 1}, specs)
    with pytest.raises(sc.MetricsError):
        sc.improvement_score({"q": float("nan")}, {"q": 1}, specs)
    with pytest.raises(sc.MetricsError):
        sc.improvement_score({"q": 1}, {"q": 1}, [MetricSpec("q", weight=0)])


def test_repeats_noise_and_acceptance():
    specs = [MetricSpec("acc")]
    base_runs = [{"acc": 0.80}, {"acc": 0.82}, {"acc": 0.78}]
    noisy = [{"acc": 0.70}, {"acc": 0.95}, {"acc": 0.86}]
    decision, stats = sc.evaluate_repeats(noisy, base_runs, specs, min_improvement=0.01)
    assert stats["acc"].n == 3 and stats["acc"].stdev > 0.05
    assert not decision.accepted and "noise" in decision.message
    steady = [{"acc": 0.85}, {"acc": 0.851}, {"acc": 0.849}]
    decision, _ = sc.evaluate_repeats(steady, base_runs, specs, min_improvement=0.01)
    assert decision.accepted
    decision, _ = sc.evaluate_repeats(steady, base_runs, specs, min_improvement=0.10)
    assert not decision.accepted and "minImprovement" in decision.message
    single = sc.aggregate_repeats([{"acc": 0.9}])
    assert single["acc"] == sc.MetricStats(0.9, 0.0, 1)


@given(st.floats(-1, 1), st.floats(0, 1), st.floats(0, 1))
def test_acceptance_requires_both_bounds(gain, noise, min_imp):
    d = sc.decide_acceptance(gain, noise, min_imp)
    assert d.accepted == (gain > min_imp and gain > 2 * noise)


def test_stage_decision():
    assert sc.stage_decision(0, 0.5, 0.4, 2).action == "continue"
    assert sc.stage_decision(0, 0.3, 0.4, 2).action == "stop"
    assert sc.stage_decision(1, 0.5, 0.4, 2).action == "done"
    assert sc.stage_decision(0, math.nan, 0.4, 2).action == "stop"
    with pytest.raises(ValueError):
        sc.stage_decision(2, 0.5, 0.4, 2)


# --- rank-based promotion ----------------------------------------------------------------

import math as _math  # noqa: E402

from hypothesis import given as _given, settings as _settings, strategies as _st  # noqa: E402

from dgm_operator.engine.scoring import rank_decision  # noqa: E402


def test_rank_decision_top_one_in_eta():
    assert rank_decision(0, 0.1, [], 2).action == "continue"  # alone: top of one
    assert rank_decision(0, 0.1, [0.2, 0.3], 2, eta=3).action == "stop"
    assert rank_decision(0, 0.3, [0.2, 0.1], 2, eta=3).action == "continue"
    assert rank_decision(1, 0.3, [0.2, 0.1], 2, eta=3).action == "done"
    assert rank_decision(0, 0.3, [0.3, 0.3], 2, eta=3).action == "continue"  # ties favour the child
    stopped = rank_decision(0, 0.3, [0.2], 2, eta=2, floor=0.5)
    assert stopped.action == "stop" and "floor" in stopped.message
    assert rank_decision(0, float("nan"), [], 2).action == "stop"
    with pytest.raises(ValueError, match="eta"):
        rank_decision(0, 0.1, [], 2, eta=1.0)
    with pytest.raises(ValueError, match="out of range"):
        rank_decision(2, 0.1, [], 2)


@_settings(max_examples=60, deadline=None)
@_given(_st.lists(_st.floats(-1, 1, allow_nan=False), min_size=1, max_size=40), _st.sampled_from([2.0, 3.0, 4.0]))
def test_rank_promotes_at_most_the_quota_of_a_batch(scores, eta):
    # judged against the whole batch, at most ceil(n / eta) children (plus ties) go on
    promoted = [s for i, s in enumerate(scores)
                if rank_decision(0, s, scores[:i] + scores[i + 1:], 2, eta).action == "continue"]
    quota = _math.ceil(len(scores) / eta)
    assert len(promoted) >= 1
    cutoff = sorted(scores, reverse=True)[quota - 1]
    assert all(s >= cutoff for s in promoted)
