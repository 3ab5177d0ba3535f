import random

import pytest
from hypothesis import given, settings, strategies as st

from dgm_operator.engine import sampling
from dgm_operator.engine.proposers import AgentContext, ParametersProposer, ProposerError, make_proposer, trial_params
from dgm_operator.engine.types import SearchParam

SPACE = (
    SearchParam("config.yaml", "a", "float", 0.0, 1.0),
    SearchParam("config.yaml", "n", "int", 1, 12, 1),
    SearchParam("config.yaml", "m", "float", 0.0, 5.0, 0.5),
    SearchParam("config.yaml", "c", "choice", choices=("x", "y", "z")),
    SearchParam("config.yaml", "b", "bool"),
)


def objective(p):
    return -(p["config.yaml:a"] - 0.7) ** 2 - (p["config.yaml:n"] - 5) ** 2 / 100 + (p["config.yaml:c"] == "y") * 0.1


def in_space(point):
    assert 0.0 <= point["config.yaml:a"] <= 1.0
    assert point["config.yaml:n"] in range(1, 13)
    assert point["config.yaml:m"] in [i * 0.5 for i in range(11)]
    assert point["config.yaml:c"] in ("x", "y", "z") and point["config.yaml:b"] in (False, True)


@pytest.mark.parametrize("kind", ["tpe", "cmaes", "random"])
def test_samplers_stay_in_space_and_are_deterministic(kind):
    trials = []
    for i in range(25):
        point = sampling.suggest(SPACE, trials, i, kind)
        in_space(point)
        trials.append((point, objective(point)))
    assert sampling.suggest(SPACE, trials, 99, kind) == sampling.suggest(SPACE, trials, 99, kind)


def test_tpe_is_warm_started_from_the_archive():
    # a history concentrated on a good region: TPE's next points come from near it, random's do not
    rng = random.Random(0)
    history = []
    for _ in range(60):
        p = {"config.yaml:a": rng.random(), "config.yaml:n": rng.randint(1, 12), "config.yaml:m": 0.5 * rng.randint(0, 10),
             "config.yaml:c": rng.choice("xyz"), "config.yaml:b": rng.random() < 0.5}
        history.append((p, objective(p)))
    def err(kind):
        points = [sampling.suggest(SPACE, history, s, kind) for s in range(12)]
        return sum(abs(p["config.yaml:a"] - 0.7) for p in points) / len(points)
    assert err("tpe") < err("random")


def test_duplicates_of_archived_points_are_asked_again():
    space = (SearchParam("c.yaml", "b1", "bool"), SearchParam("c.yaml", "b2", "bool"))
    seen = [({"c.yaml:b1": x, "c.yaml:b2": y}, float(x + y)) for x in (False, True) for y in (False, True)][:3]
    point = sampling.suggest(space, seen, 0, "tpe")
    assert (point["c.yaml:b1"], point["c.yaml:b2"]) == (True, True)  # the only point not yet evaluated


def test_bad_trials_are_left_out_and_bad_input_named():
    trials = [({"config.yaml:a": 7.0}, 1.0), ({"config.yaml:a": 0.5}, float("nan")), ({}, 0.3)]
    in_space(sampling.suggest(SPACE, trials, 1, "tpe"))
    with pytest.raises(sampling.SamplingError, match="searchSpace is empty"):
        sampling.suggest((), [], 1, "tpe")
    with pytest.raises(ValueError):
        sampling.suggest(SPACE, [], 1, "annealing")


@settings(max_examples=25, deadline=None)
@given(st.floats(-50, 50, allow_nan=False), st.floats(0.01, 50, allow_nan=False),
       st.one_of(st.none(), st.sampled_from([0.1, 0.25, 1.0, 3.0])), st.integers(0, 10 ** 6))
def test_float_and_int_ranges_with_steps(lo, width, step, seed):
    space = (SearchParam("p.json", "f", "float", lo, lo + width, step), SearchParam("p.json", "i", "int", -3, 9, 2))
    point = sampling.suggest(space, [], seed, "random")
    assert lo - 1e-9 <= point["p.json:f"] <= lo + width + 1e-9
    assert point["p.json:i"] in (-3, -1, 1, 3, 5, 7, 9)


def test_parameters_proposer_samples_from_the_archive_trials():
    files = {"config.yaml": "a: 0.1\nn: 2\nm: 1.0\nc: x\nb: false\n"}
    ctx = AgentContext("agent", files, search_space=SPACE,
                       trials=[(trial_params(SPACE, files), 0.0)])
    draft = ParametersProposer().propose(ctx, random.Random(4))
    assert draft.description.startswith("tpe sample:") and set(draft.changes) == {"config.yaml"}
    again = ParametersProposer().propose(ctx, random.Random(4))
    assert again.changes == draft.changes
    mutation = make_proposer("parameters", {"sampler": "mutation"}).propose(ctx, random.Random(4))
    assert mutation.description.startswith("parameter mutation:")
    with pytest.raises(ProposerError, match="no search space"):
        ParametersProposer().propose(AgentContext("agent", files), random.Random(1))
