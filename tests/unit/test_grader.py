"""`dgm grade`: real agent processes on loopback (the sample agent and an echo agent, both served
with the real a2a-sdk server), the real a2a-sdk client, the termination log read back as the
operator reads it."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from dgm_dev.sample_agent.agent import QAAgent, default_workspace
from dgm_dev.sample_agent.bench import run_bench
from dgm_operator.controller.mapping import parse_result
from dgm_operator.grader import grade, result
from dgm_operator.grader.suite import SuiteError, load_suite, parse_suite, select_tasks

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "devtools" / "suites" / "sample-qa.yaml"
ECHO_AGENT = Path(__file__).with_name("a2a_echo_agent.py")


class Served:
    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=60):
            self.stop()
            raise RuntimeError(f"{argv} printed nothing within 60 s")
        line = self.proc.stdout.readline()
        self.url = line.split("serving on ", 1)[1].split()[0]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _sample_workspace(tmp_path: Path, config: dict | None = None) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(default_workspace(), ws)
    if config is not None:
        (ws / "config.yaml").write_text(yaml.safe_dump(config))
    return ws


def _serve_sample(ws: Path) -> Served:
    return Served([sys.executable, "-m", "dgm_dev.sample_agent", "serve", "--workspace", str(ws), "--reader-delay", "0"])


@pytest.fixture(scope="module")
def sample_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    ws = _sample_workspace(tmp_path_factory.mktemp("sample"))
    served = _serve_sample(ws)
    yield ws, served.url
    served.stop()


@pytest.fixture(scope="module")
def echo_agent() -> Iterator[str]:
    served = Served([sys.executable, str(ECHO_AGENT)])
    yield served.url
    served.stop()


def run_grade(tmp_path: Path, *args: str) -> tuple[int, dict, bytes]:
    log = tmp_path / "termination-log"
    code = grade.main([*args, "--termination-log", str(log)])
    raw = log.read_bytes()
    return code, json.loads(raw), raw


def write_suite(tmp_path: Path, suite: dict, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(suite))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the sample agent through A2A gives what the in-process benchmark gives ----------------------

def test_a2a_accuracy_equals_the_in_process_benchmark(sample_agent, tmp_path):
    ws, url = sample_agent
    code, out, raw = run_grade(tmp_path, "--a2a", url, "--tasks", str(SUITE), "--concurrency", "4")
    bench = run_bench(ws, "full")
    assert code == 0
    assert out["metrics"]["accuracy"] == bench["metrics"]["accuracy"]
    assert out["metrics"]["error_rate"] == bench["metrics"]["error_rate"]
    assert out["tests"]["total"] == 100 and out["tests"]["passed"] == bench["tests"]["correct"]
    assert set(out["metrics"]) == {"accuracy", "response_time", "error_rate"} and out["metrics"]["response_time"] > 0
    assert len(raw) <= 4096
    metrics, _, tests, error = parse_result(raw.decode())  # what the operator reads back
    assert metrics == out["metrics"] and error is None and tests["failures"]


def test_http_json_binding_and_stage_subset_on_a_tuned_workspace(tmp_path):
    good = yaml.safe_load((ROOT / "examples/quickstart/candidate-good.yaml").read_text())["spec"]["changes"]["config.yaml"]
    ws = _sample_workspace(tmp_path, yaml.safe_load(good))
    served = _serve_sample(ws)
    try:
        code, out, _ = run_grade(tmp_path, "--a2a", served.url, "--binding", "http+json", "--tasks", str(SUITE),
                                 "--subset", "quick")
    finally:
        served.stop()
    bench = run_bench(ws, "quick")
    assert code == 0 and out["tests"]["total"] == 25 and out["tests"]["subset"] == "quick"
    assert out["metrics"]["accuracy"] == bench["metrics"]["accuracy"]
    assert out["metrics"]["accuracy"] > run_bench(default_workspace(), "quick")["metrics"]["accuracy"]


def test_abstentions_and_broken_code_count_as_errors_as_in_the_benchmark(tmp_path):
    cfg = yaml.safe_load((default_workspace() / "config.yaml").read_text())
    cfg["retrieval"]["min_score"] = 4.0
    ws = _sample_workspace(tmp_path, cfg)
    (tmp_path / "broken").mkdir()
    broken = _sample_workspace(tmp_path / "broken")
    (broken / "ranker.py").write_text("def score(query, doc, stats, method='overlap'):\n    raise RuntimeError('boom')\n")
    for workspace in (ws, broken):
        served = _serve_sample(workspace)
        try:
            code, out, _ = run_grade(tmp_path, "--a2a", served.url, "--tasks", str(SUITE), "--subset", "quick")
        finally:
            served.stop()
        bench = run_bench(workspace, "quick")["metrics"]
        assert code == 0
        assert out["metrics"]["error_rate"] == bench["error_rate"] > 0.1
        assert out["metrics"]["accuracy"] == bench["accuracy"]
    failure = out["tests"]["failures"][0]
    assert failure["got"] is None and "failed the task" in failure["error"] and "boom" in failure["error"]


def test_plain_http_mode(sample_agent, tmp_path):
    ws, url = sample_agent
    code, out, _ = run_grade(tmp_path, "--http", url + "/ask", "--tasks", str(SUITE), "--subset", "quick", "--limit", "10")
    assert code == 0 and out["tests"]["total"] == 10
    agent = QAAgent(ws)  # the same ten tasks answered in-process
    tasks = select_tasks(load_suite(SUITE), "quick", limit=10)
    assert out["tests"]["passed"] == sum(t.passes(agent.answer(t.input).text) for t in tasks) > 0


def test_repeats_run_every_task_again_and_keep_samples(sample_agent, tmp_path):
    _, url = sample_agent
    code, out, _ = run_grade(tmp_path, "--a2a", url, "--tasks", str(SUITE), "--subset", "first:5", "--repeats", "3")
    assert code == 0 and out["repeats"] == 3 and out["tests"]["total"] == 15
    assert len(out["samples"]["accuracy"]) == 3 and len(set(out["samples"]["accuracy"])) == 1


def test_the_cli_runs_it_and_lists_it(sample_agent, tmp_path):
    _, url = sample_agent
    log = tmp_path / "tl"
    proc = subprocess.run([str(Path(sys.executable).with_name("dgm")), "grade", "--a2a", url, "--tasks", str(SUITE),
                           "--limit", "3", "--termination-log", str(log)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(log.read_text())["tests"]["total"] == 3
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == json.loads(log.read_text())
    usage = subprocess.run([str(Path(sys.executable).with_name("dgm")), "--help"], capture_output=True, text=True).stdout
    assert "grade" in usage and "evaluate" in usage


# -- scoring rules -------------------------------------------------------------------------------

SCORING_SUITE = {
    "name": "rules",
    "tasks": [
        {"id": "exact-pass", "input": "  Paris ", "expected": "Paris", "scoring": "exact"},
        {"id": "exact-case-fail", "input": "paris", "expected": "Paris", "scoring": "exact"},
        {"id": "exact-case-pass", "input": "paris", "expected": "Paris", "scoring": {"rule": "exact", "ignoreCase": True}},
        {"id": "exact-partial-fail", "input": "Paris, France", "expected": "Paris", "scoring": "exact"},
        {"id": "contains-pass", "input": "It is Paris.", "expected": "Paris", "scoring": "contains"},
        {"id": "contains-case-fail", "input": "it is paris.", "expected": "Paris", "scoring": "contains"},
        {"id": "contains-case-pass", "input": "IT IS PARIS.", "expected": "Paris",
         "scoring": {"rule": "contains", "ignoreCase": True}},
        {"id": "regex-pass", "input": "founded in 1320 AD", "expected": r"\b1[0-9]{3}\b", "scoring": "regex"},
        {"id": "regex-fail", "input": "founded in 13200", "expected": r"\b1[0-9]{3}\b", "scoring": "regex"},
        {"id": "regex-case-pass", "input": "PARIS", "expected": "^par", "scoring": {"rule": "regex", "ignoreCase": True}},
        {"id": "any-of-pass", "input": "Lutetia", "expected": ["Paris", "Lutetia"], "scoring": "exact"},
        {"id": "task-status-message", "input": "task:Paris", "expected": "Paris", "scoring": "exact"},
        {"id": "data-part", "input": "data:Paris", "expected": '"answer": "Paris"', "scoring": "contains"},
        {"id": "rejected", "input": "reject:Paris", "expected": "Paris", "scoring": "contains"},
        {"id": "raises", "input": "fail:Paris", "expected": "Paris", "scoring": "contains"},
        {"id": "slow", "input": "sleep:5", "expected": "woke", "scoring": "exact", "timeoutSeconds": 0.5},
    ],
}


def test_each_scoring_rule_passes_and_fails(echo_agent, tmp_path):
    code, out, _ = run_grade(tmp_path, "--a2a", echo_agent, "--tasks", str(write_suite(tmp_path, SCORING_SUITE)))
    assert code == 0
    failed = {f["task"]: f for f in out["tests"]["failures"]}
    passed = {t["id"] for t in SCORING_SUITE["tasks"]} - set(failed)
    assert passed == {"exact-pass", "exact-case-pass", "contains-pass", "contains-case-pass", "regex-pass",
                      "regex-case-pass", "any-of-pass", "task-status-message", "data-part"}
    assert failed["exact-case-fail"]["got"] == "paris" and "error" not in failed["exact-case-fail"]
    assert failed["rejected"]["got"] is None and failed["rejected"]["error"] == "the agent rejected the task: Paris"
    assert failed["raises"]["got"] is None and failed["raises"]["error"]
    assert failed["slow"]["error"] == "no answer within 0.5 s"
    n = len(SCORING_SUITE["tasks"])
    assert out["tests"]["passed"] == 9 and out["tests"]["errors"] == 3
    assert out["metrics"]["accuracy"] == round(9 / n, 6) and out["metrics"]["error_rate"] == round(3 / n, 6)


# -- hostile or dead agents ----------------------------------------------------------------------

def test_a_dead_agent_gives_no_metrics_and_the_reason(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    code, out, raw = run_grade(tmp_path, "--a2a", url, "--tasks", str(SUITE), "--wait", "1")
    assert code == 1 and len(raw) <= 4096
    metrics, _, _, error = parse_result(raw.decode())
    assert metrics is None
    assert error.startswith("agent unavailable: A2A agent card at " + url + "/.well-known/agent-card.json not available within 1 s")
    assert "ConnectError" in error


def test_a_server_that_is_not_an_a2a_agent_is_reported(sample_agent, tmp_path):
    _, url = sample_agent
    code, out, _ = run_grade(tmp_path, "--a2a", url + "/healthz", "--tasks", str(SUITE), "--wait", "1")
    assert code == 1 and out["metrics"] == {} and "not available within 1 s" in out["error"] and "404" in out["error"]


def test_large_output_is_bounded_and_escaped_and_the_log_stays_small(echo_agent, tmp_path):
    hostile = "\x1b[31m\u00e9\n\"}\\" + "A" * 50_000
    suite = {"name": "big", "tasks": [{"id": f"t{i:03d}", "input": f"repeat:1:{hostile}{i}", "expected": "never",
                                        "scoring": "contains"} for i in range(40)]}
    code, out, raw = run_grade(tmp_path, "--a2a", echo_agent, "--tasks", str(write_suite(tmp_path, suite)))
    assert code == 0 and len(raw) <= 4096 and raw.isascii()
    assert out["tests"]["total"] == 40 and out["tests"]["passed"] == 0
    failures = out["tests"]["failures"]
    assert failures and out["tests"]["failuresOmitted"] == 40 - len(failures)
    got = failures[0]["got"]
    # 10 characters escape to 18, then 142 "A" fill the 160 allowed; the rest is counted, not copied
    assert got == '\\x1b[31m\\xe9\\n"}\\\\' + "A" * 142 + f"...(+{len(hostile) + 1 - 152} chars)"


def test_a_reply_larger_than_the_grader_reads_is_an_error_not_a_crash(echo_agent, tmp_path):
    suite = {"name": "huge", "tasks": [{"id": "huge", "input": "repeat:300000:xy", "expected": "xy", "scoring": "contains"},
                                       {"id": "small", "input": "xy", "expected": "xy", "scoring": "exact"}]}
    code, out, _ = run_grade(tmp_path, "--a2a", echo_agent, "--tasks", str(write_suite(tmp_path, suite)),
                             "--max-response-bytes", "100000")
    assert code == 0 and out["tests"]["passed"] == 1
    assert out["tests"]["failures"][0]["task"] == "huge" and "exceeds 100000 bytes" in out["tests"]["failures"][0]["error"]


def test_card_urls_are_re_rooted_on_the_address_the_grader_was_given(tmp_path):
    elsewhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    served = Served([sys.executable, str(ECHO_AGENT), "--card-url", elsewhere])
    try:
        suite = write_suite(tmp_path, {"tasks": [{"id": "a", "input": "hello", "expected": "hello"}]})
        code, out, _ = run_grade(tmp_path, "--a2a", served.url, "--tasks", str(suite))
        assert code == 0 and out["metrics"]["accuracy"] == 1.0
        code, out, _ = run_grade(tmp_path, "--a2a", served.url, "--tasks", str(suite), "--trust-card-urls")
        assert out["metrics"]["error_rate"] == 1.0 and "connection attempts failed" in out["tests"]["failures"][0]["error"]
    finally:
        served.stop()


# -- suites, subsets, the result format ----------------------------------------------------------

@pytest.mark.parametrize("suite, message", [
    ({"tasks": []}, "tasks: List should have at least 1 item"),
    ({"tasks": [{"id": "a", "input": "x", "expected": "y", "scoring": "fuzzy"}]}, "tasks[0].scoring.rule: Input should be"),
    ({"tasks": [{"id": "a", "input": "x", "expected": ""}]}, "tasks[0].expected: Value error, an expected value must not be empty"),
    ({"tasks": [{"id": "a", "input": "x", "expected": "("}], "defaults": {"scoring": "regex"}},
     "tasks[0].expected: '(' is not a valid regular expression"),
    ({"tasks": [{"id": "a", "input": "x", "expected": "y"}, {"id": "a", "input": "z", "expected": "y"}]},
     "tasks[1].id: 'a' is used by an earlier task"),
    ({"tasks": [{"id": "a", "input": "x", "expected": "y", "timeoutSeconds": 0}]}, "tasks[0].timeoutSeconds: Input should be greater than 0"),
    ({"tasks": [{"id": "a", "input": "x", "expected": "y", "answer": "y"}]}, "tasks[0].answer: Extra inputs are not permitted"),
    ({"tasks": [{"id": "a", "input": "x", "expected": "y"}], "subsets": {"q": "some:3"}}, "subsets.q: 'some:3' is not one of"),
    ({"tasks": [{"id": "a", "input": "x", "expected": "y"}], "subsets": {"q": ["b"]}}, "subsets.q: unknown task id(s) ['b']"),
    ([1, 2], "a task suite must be a mapping"),
])
def test_bad_suites_are_rejected_naming_the_field(suite, message):
    with pytest.raises(SuiteError) as err:
        parse_suite(suite, "s.yaml")
    assert message in str(err.value) and str(err.value).startswith("s.yaml: ")


def test_duplicate_yaml_keys_and_a_missing_file_are_clear(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("tasks:\n- id: a\n  input: x\n  expected: y\n  expected: z\n")
    with pytest.raises(SuiteError, match="duplicate key 'expected'"):
        load_suite(path)
    code, out, _ = run_grade(tmp_path, "--a2a", "http://127.0.0.1:1", "--tasks", str(tmp_path / "nope.yaml"))
    assert code == 2 and out["metrics"] == {} and "cannot read the task suite" in out["error"]


def test_subsets_match_the_in_process_selection():
    suite = load_suite(SUITE)
    assert len(suite.tasks) == 100
    quick = select_tasks(suite, "quick", seed=0)
    assert [t.id for t in quick] == [t.id for t in select_tasks(suite, "sample:25", seed=0)]
    assert [t.id for t in quick] != [t.id for t in select_tasks(suite, "sample:25", seed=1)]
    assert [t.id for t in select_tasks(suite, "first:3")] == ["q000", "q001", "q002"]
    assert len(select_tasks(suite, "full", limit=7)) == 7
    with pytest.raises(SuiteError, match="neither a subset of the suite"):
        select_tasks(suite, "slow")


def test_escape_is_bounded_printable_ascii():
    assert result.escape("ok", 10) == "ok"
    assert result.escape("a\nb\\c\x00\u2603\U0001F600", 100) == "a\\nb\\\\c\\x00\\u2603\\U0001f600"
    cut = result.escape("\u2603" * 100, 20)
    assert cut == "\\u2603" * 3 + "...(+97 chars)"
    assert result.escape("x" * 10, 10) == "x" * 10


def test_fit_drops_failures_before_anything_else():
    failures = [{"task": f"t{i}", "expected": "e", "got": "g" * 150} for i in range(50)]
    payload = {"metrics": {"accuracy": 0.5}, "samples": {"accuracy": [0.5]}, "tests": {"total": 50, "failures": failures}}
    out = json.loads(result.fit(payload))
    assert out["metrics"] == {"accuracy": 0.5} and out["samples"] == {"accuracy": [0.5]}
    assert 0 < len(out["tests"]["failures"]) < 50
    assert out["tests"]["failuresOmitted"] == 50 - len(out["tests"]["failures"])
    assert len(result.fit(payload).encode()) <= 4096


# -- the answers are out of the agent's reach ----------------------------------------------------

def test_no_installed_package_holds_the_questions_or_answers():
    """The suite is data of the evaluation image only: neither the agent's package (nor any file
    installed with dgm_dev or dgm_operator) contains a question of it."""
    import dgm_dev
    import dgm_operator

    questions = [t.input for t in load_suite(SUITE).tasks]
    for package in (dgm_dev, dgm_operator):
        root = Path(package.__file__).parent
        assert not SUITE.resolve().is_relative_to(root.resolve())
        for path in root.rglob("*"):
            if path.is_file() and path.suffix in {".py", ".json", ".yaml", ".yml", ".txt"}:
                text = path.read_text(encoding="utf-8", errors="replace")
                assert not any(q in text for q in questions[:20]), f"{path} holds the task suite's questions"
