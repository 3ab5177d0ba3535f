"""`dgm evaluate`: runs a real command and writes the termination-log JSON."""

import json
import sys

from dgm_operator.grader import evaluate


def run(tmp_path, script, *extra):
    log = tmp_path / "termination-log"
    code = evaluate.main(["--termination-log", str(log), *extra, "--", sys.executable, "-c", script])
    return code, json.loads(log.read_text())


def test_metrics_are_read_from_the_last_json_line(tmp_path):
    code, out = run(tmp_path, 'print("warming up"); print(\'{"metrics": {"accuracy": 0.5, "note": "x"}, "tests": {"n": 3}}\')')
    assert code == 0
    assert out["metrics"] == {"accuracy": 0.5}
    assert out["tests"] == {"n": 3}
    assert out["repeats"] == 1


def test_repeats_average_and_keep_samples(tmp_path):
    script = ("import os,json; p=os.path.join(os.environ['TMPDIR'],'n'); n=int(open(p).read()) if os.path.exists(p) else 0;"
              "open(p,'w').write(str(n+1)); print(json.dumps({'metrics': {'accuracy': 0.5 + 0.1*n}}))")
    import os
    os.environ["TMPDIR"] = str(tmp_path)
    code, out = run(tmp_path, script, "--repeats", "3")
    assert code == 0
    assert abs(out["metrics"]["accuracy"] - 0.6) < 1e-9
    assert [round(v, 6) for v in out["samples"]["accuracy"]] == [0.5, 0.6, 0.7]


def test_failing_command_exits_non_zero_with_an_error(tmp_path):
    code, out = run(tmp_path, "import sys; sys.stderr.write('boom'); sys.exit(3)")
    assert code == 3
    assert "exited with 3" in out["error"]
    assert out["stderrTail"] == "boom"


def test_no_metrics_gives_an_empty_metrics_object(tmp_path):
    code, out = run(tmp_path, "print('no json here')")
    assert code == 0
    assert out["metrics"] == {}


def test_result_is_cut_to_the_termination_log_limit():
    payload = {"metrics": {"a": 1.0}, "tests": {"blob": "x" * 10000}}
    text = evaluate.fit(payload)
    assert len(text.encode()) <= evaluate.TERMINATION_LOG_LIMIT
    assert json.loads(text) == {"metrics": {"a": 1.0}, "truncated": ["tests"]}
