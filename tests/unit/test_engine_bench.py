import ast
import math
import json
import pathlib

import dgm_operator.engine as engine
from dgm_dev.bench import search as bench


def test_bench_small_run_json(capsys):
    assert bench.main(["search", "--seeds", "2", "--budget", "24", "--methods", "dgm,greedy,random",
                       "--landscapes", "smooth,deceptive", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["search"]) == {"smooth", "deceptive"}
    for methods in res["search"].values():
        for r in methods.values():
            assert 0.0 <= r["best_mean"] <= 1.0 and 0.0 <= r["reach95_fraction"] <= 1.0
    assert set(res["staging"]) == {"smooth", "deceptive"}


def test_landscapes_have_optimum_one():
    assert bench.make_landscape("deceptive", 0).true([1.0] * bench.DIM) == 1.0
    assert abs(bench.make_landscape("deceptive", 0).true([0.0] * bench.DIM) - 0.8) < 1e-12


def test_engine_is_pure():
    root = pathlib.Path(engine.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                mods = [node.module]
            for mod in mods:
                assert not mod.startswith(("kubernetes", "kopf", "dgm_operator.api")), (path.name, mod)


def test_equal_budget_and_open_archive(monkeypatch):
    # every archive method spends exactly the budget (baseline included) and keeps every child
    seen = []
    original = bench.select_parents

    def spy(archive, method, k, rng, bounds=None):
        seen.append((method, len(archive), k))
        return original(archive, method, k, rng, bounds=bounds)

    monkeypatch.setattr(bench, "select_parents", spy)
    for method in ("dgm", "greedy", "random"):
        seen.clear()
        run = bench.run_archive(method, bench.make_landscape("deceptive", 0), 25, 0)
        assert run.trace[-1][0] == 25.0 and len(run.trace) == 25
        # generation g sees the baseline's 4 * g children: nothing pruned, k children for every method
        assert [(m, n, k) for m, n, k in seen] == [(method, 4 * g, bench.K_CHILDREN) for g in range(len(seen))]


def test_bounds_normalisation_is_raw_quality():
    from dgm_operator.engine.scoring import fitness
    from dgm_operator.engine.selection import normalise_scores

    reference = {"quality": 0.37}
    bounds = (fitness({"quality": 0.0}, reference, bench.SPECS), fitness({"quality": 1.0}, reference, bench.SPECS))
    for q in (0.0, 0.2, 0.37, 0.8, 1.0):
        score = fitness({"quality": q}, reference, bench.SPECS)
        assert abs(normalise_scores({"a": score}, bounds)["a"] - q) < 1e-12


def test_sign_test_and_pairing():
    assert abs(bench.sign_test(0, 10) - 2 / 1024) < 1e-12
    assert bench.sign_test(5, 5) == 1.0 and bench.sign_test(0, 0) == 1.0
    assert bench.paired([0.9, 0.8, 0.7], [0.8, 0.8, 0.9]) == {"wins": 1, "losses": 1, "ties": 1, "sign_p": 1.0}


def test_best_at_follows_the_trace():
    run = bench.RunResult(best=0.5, trace=[(1.0, 0.1), (2.2, 0.3), (3.2, 0.5)])
    assert [run.best_at(c) for c in (0.5, 1.0, 2.0, 2.2, 3.0, 9.0)] == [-math.inf, 0.1, 0.1, 0.3, 0.3, 0.5]
    assert run.compute_to(0.3) == 2.2 and run.compute_to(0.6) is None


def test_staging_reports_every_saving(capsys):
    assert bench.main(["search", "--seeds", "2", "--budget", "20", "--methods", "dgm,greedy",
                       "--landscapes", "smooth", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    vs = res["search"]["smooth"]["greedy"]["default_vs"]
    assert vs["wins"] + vs["losses"] + vs["ties"] == 2
    assert res["search"]["smooth"][res["default"]]["default_vs"] is None
    for rule in ("rank", "threshold"):
        staging = res["staging"]["smooth"][rule]
        assert {"compute_saved_reached", "compute_saved_all_seeds", "reached_fraction"} <= set(staging)
        assert staging["compute_saved_all_seeds"] <= 1.0


def test_rugged_nk_is_rescaled_to_its_exact_range():
    import itertools
    land = bench.make_landscape("rugged", 3)
    keys = [p.key for p in land.space]
    assert len(keys) == 16 and land.bounds == (0.0, 1.0)
    values = [land.quality(dict(zip(keys, bits)), None)[0]
              for bits in itertools.islice(itertools.product((False, True), repeat=16), 0, 65536, 33)]
    assert all(0.0 <= v <= 1.0 for v in values)
    # the instance depends on the seed
    start = {k: False for k in keys}
    assert land.quality(start, None) != bench.make_landscape("rugged", 4).quality(start, None)


def test_duplicates_are_not_evaluated():
    run = bench.run_archive("greedy", bench.make_landscape("rugged", 0), 60, 0)
    # 16 bools: greedy re-proposes neighbours it already has; those cost nothing
    assert run.duplicates > 0
    assert run.trace[-1][0] <= 60.0 and len(run.trace) == int(run.trace[-1][0])


def test_user_landscape_through_module_callable(tmp_path, monkeypatch, capsys):
    (tmp_path / "mylands.py").write_text(
        "from dgm_dev.bench.search import Landscape, box\n"
        "def make(seed):\n"
        "    def quality(p, rng):\n"
        "        t = 1 - abs(p['x0'] - 0.7) - abs(p['x1'] - 0.2)\n"
        "        return t + rng.gauss(0, 0.01), t\n"
        "    return Landscape('mine', box(2), quality, bounds=(-1.0, 1.0), optimum=1.0)\n"
        "def broken(seed):\n"
        "    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert bench.main(["search", "--seeds", "2", "--budget", "30", "--methods", "greedy,adaptive",
                       "--landscapes", "", "--landscape", "mylands:make", "--no-staging", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["search"]) == {"mine"}
    assert res["search"]["mine"]["greedy"]["best_mean"] > 0.5
    import pytest
    with pytest.raises(SystemExit):
        bench.main(["search", "--landscape", "mylands:broken"])
    assert "returned int, not a Landscape" in capsys.readouterr().err


def test_sample_agent_landscape_runs_the_real_benchmark():
    land = bench.make_landscape("sample-agent", 0)
    start = {p.key: v for p, v in zip(land.space, [bench.current_value(p, bench._start_files(land))
                                                   for p in land.space])}
    assert land.quality(start, None) == (0.0, 0.0)  # the default config is the reference
    better = {**start, "retrieval.scorer": "bm25", "text.stopwords": True}
    observed, true = land.quality(better, None)
    assert observed == true and true != 0.0
    assert land.cheap is not None and land.cheap_cost == 0.25


def test_rank_staging_promotes_about_one_in_eta():
    run = bench.run_archive("greedy", bench.make_landscape("smooth", 1), 60, 1, staging="rank", eta=3.0)
    full = len(run.trace) - 1
    children = round((run.trace[-1][0] - 1 - 0.2 - full) / 0.2)
    assert children > 0 and full <= children / 3 + 5
