"""The quickstart sample agent: real runs of its benchmark on the bundled data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from dgm_dev.sample_agent.agent import QAAgent, default_workspace, load_passages
from dgm_dev.sample_agent.bench import run_bench
from dgm_operator.grader.suite import load_suite

ROOT = Path(__file__).resolve().parents[2]
METRICS = {"accuracy", "response_time", "error_rate", "memory_usage"}


def _workspace(tmp_path: Path, config: str | None = None, ranker: str | None = None) -> Path:
    shutil.copytree(default_workspace(), tmp_path / "ws")
    ws = tmp_path / "ws"
    if config is not None:
        (ws / "config.yaml").write_text(config)
    if ranker is not None:
        (ws / "ranker.py").write_text(ranker)
    return ws


SUITE = ROOT / "devtools/suites/sample-qa.yaml"


def test_passages_ship_with_the_agent_and_questions_with_the_grader():
    data = load_passages()
    assert set(data) == {"license", "name", "passages"}  # no questions, no answers
    tasks = load_suite(SUITE).tasks
    assert 60 <= len(data["passages"]) <= 120 and len(tasks) == 100
    texts = {p["id"]: p["text"] for p in data["passages"]}
    for t in tasks:
        assert t.expected[0] in texts[t.metadata["passage"]]


def test_the_suite_and_passages_are_what_the_generator_makes(tmp_path):
    (tmp_path / "devtools/dgm_dev/sample_agent/data").mkdir(parents=True)
    (tmp_path / "devtools/suites").mkdir(parents=True)
    subprocess.run([sys.executable, str(ROOT / "devtools/suites/gen_sample_qa.py"), "--root", str(tmp_path)], check=True)
    for rel in ("devtools/dgm_dev/sample_agent/data/towns.json", "devtools/suites/sample-qa.yaml"):
        assert (tmp_path / rel).read_text() == (ROOT / rel).read_text(), rel


def test_bench_reports_the_four_metrics(tmp_path):
    result = run_bench(_workspace(tmp_path), subset="quick")
    assert set(result["metrics"]) == METRICS
    m = result["metrics"]
    assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["error_rate"] <= 1.0
    assert m["response_time"] > 0 and m["memory_usage"] > 0
    assert result["tests"]["questions"] == 25 and result["tests"]["subset"] == "quick"
    assert len(json.dumps(result)) < 4096


def test_bench_cli_prints_one_json_object(tmp_path):
    ws = _workspace(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "dgm_dev.sample_agent", "bench", "--workspace", str(ws), "--subset", "quick"],
        check=True, capture_output=True, text=True,
    ).stdout
    assert set(json.loads(out)["metrics"]) == METRICS


def test_tuning_the_config_changes_accuracy(tmp_path):
    base = run_bench(_workspace(tmp_path / "a"))["metrics"]["accuracy"]
    good = yaml.safe_load((ROOT / "examples/quickstart/candidate-good.yaml").read_text())["spec"]["changes"]
    tuned = run_bench(_workspace(tmp_path / "b", config=good["config.yaml"]))["metrics"]["accuracy"]
    assert tuned > base + 0.1


def test_settings_trigger_the_seed_bottlenecks(tmp_path):
    cfg = yaml.safe_load((default_workspace() / "config.yaml").read_text())
    cfg["retrieval"].update(top_k=12, chunk_size=4)
    cfg["text"]["ngrams"] = 3
    m = run_bench(_workspace(tmp_path, config=yaml.safe_dump(cfg)), subset="quick")["metrics"]
    assert m["response_time"] > 1.0  # slow_response
    assert m["memory_usage"] > 0.8  # high_memory
    cfg = yaml.safe_load((default_workspace() / "config.yaml").read_text())
    cfg["retrieval"]["min_score"] = 4.0
    m = run_bench(_workspace(tmp_path / "x", config=yaml.safe_dump(cfg)), subset="quick")["metrics"]
    assert m["error_rate"] > 0.1  # high_errors


def test_ranker_code_from_the_workspace_is_used(tmp_path):
    broken = "def score(query, doc, stats, method='overlap'):\n    raise RuntimeError('boom')\n"
    result = run_bench(_workspace(tmp_path, ranker=broken), subset="quick")
    assert result["metrics"]["error_rate"] == 1.0 and "boom" in result["tests"]["first_error"]


def test_quickstart_configmap_holds_the_default_workspace():
    cm = yaml.safe_load((ROOT / "examples/quickstart/configmap.yaml").read_text())
    for name in ("config.yaml", "ranker.py"):
        assert cm["data"][name] == (default_workspace() / name).read_text()


def test_answer_returns_a_sentence():
    agent = QAAgent(default_workspace())
    ans = agent.answer(load_suite(SUITE).tasks[0].input)
    assert ans.text and ans.passages
