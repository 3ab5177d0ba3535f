import ast
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
    assert [run.best_at(c) for c in (0.5, 1.0, 2.0, 2.2, 3.0, 9.0)] == [0.0, 0.1, 0.1, 0.3, 0.3, 0.5]
    assert run.compute_to(0.3) == 2.2 and run.compute_to(0.6) is None


def test_staging_reports_every_saving(capsys):
    assert bench.main(["search", "--seeds", "2", "--budget", "20", "--methods", "dgm,greedy",
                       "--landscapes", "smooth", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["search"]["smooth"]["greedy"]["dgm_vs"]["wins"] + res["search"]["smooth"]["greedy"]["dgm_vs"]["losses"] \
        + res["search"]["smooth"]["greedy"]["dgm_vs"]["ties"] == 2
    assert res["search"]["smooth"]["dgm"]["dgm_vs"] is None
    staging = res["staging"]["smooth"]
    assert {"compute_saved", "compute_saved_all_seeds", "compute_saved_curve"} <= set(staging)
    assert staging["compute_saved_all_seeds"] <= 1.0
