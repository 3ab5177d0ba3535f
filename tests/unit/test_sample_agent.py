"""The quickstart sample agent: real runs of its benchmark on the bundled data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from dgm_dev.sample_agent.agent import QAAgent, default_workspace, load_dataset
from dgm_dev.sample_agent.bench import run_bench

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


def test_dataset_is_bundled_and_sized():
    data = load_dataset()
    assert 60 <= len(data["passages"]) <= 120 and 60 <= len(data["questions"]) <= 120
    ids = {p["id"] for p in data["passages"]}
    for q in data["questions"]:
        assert q["passage"] in ids
        passage = next(p for p in data["passages"] if p["id"] == q["passage"])
        assert q["answer"] in passage["text"]


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
    q = load_dataset()["questions"][0]
    ans = agent.answer(q["question"])
    assert ans.text and ans.passages
