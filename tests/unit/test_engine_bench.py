import ast
import json
import pathlib

import dgm_operator.engine as engine
from dgm_operator.engine import bench


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
