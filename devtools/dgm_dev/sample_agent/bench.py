"""The sample agent's in-process benchmark: the explicit single-process opt-out.

It runs the agent and its grading in one Python process, so a candidate's ``ranker.py`` could
reach the grading code and the answers: use it for development and benchmarks only. Evaluations
go through the agent's interface with ``dgm grade`` (see docs/grader.md). It reads the same task
suite and scores with the same rules as ``dgm grade``, so both give the same accuracy.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from dgm_operator.grader.suite import SuiteError, load_suite, select_tasks

from .agent import MEMORY_BUDGET_BYTES, QAAgent


def default_suite_path() -> Path:
    """``DGM_TASKS``, else the suite of a source checkout (``devtools/suites/sample-qa.yaml``).

    The suite is deliberately not package data: an installed agent never carries it."""
    env = os.environ.get("DGM_TASKS")
    if env:
        return Path(env)
    path = Path(__file__).resolve().parents[2] / "suites" / "sample-qa.yaml"
    if not path.exists():
        raise SuiteError(f"no task suite at {path}: it is not installed with the agent (by design); "
                         f"pass --tasks FILE or set DGM_TASKS")
    return path


def run_bench(workspace: Path | str, subset: str = "full", seed: int = 0,
              tasks: Path | str | None = None) -> dict[str, Any]:
    """Evaluate the agent in ``workspace``; returns {"metrics": {...}, "tests": {...}}."""
    suite = load_suite(tasks or default_suite_path())
    selected = select_tasks(suite, subset, seed=seed)
    try:
        agent = QAAgent(workspace)
    except Exception as exc:  # a broken workspace fails every question
        return {
            "metrics": {"accuracy": 0.0, "response_time": 0.0, "error_rate": 1.0, "memory_usage": 0.0},
            "tests": {"subset": subset, "questions": len(selected), "passed": False,
                      "error": f"{type(exc).__name__}: {exc}"[:300]},
        }
    correct = errors = abstained = retrieved = 0
    times = []
    first_error = None
    for task in selected:
        try:
            ans = agent.answer(task.input)
        except Exception as exc:
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
            continue
        times.append(ans.seconds)
        if ans.abstained:
            abstained += 1
        elif task.passes(ans.text):
            correct += 1
        if task.metadata.get("passage") in ans.passages:
            retrieved += 1
    n = len(selected)
    metrics = {
        "accuracy": round(correct / n, 4),
        "response_time": round(statistics.fmean(times), 4) if times else 0.0,
        "error_rate": round((errors + abstained) / n, 4),
        "memory_usage": round(agent.memory_bytes() / MEMORY_BUDGET_BYTES, 4),
    }
    tests: dict[str, Any] = {
        "subset": subset,
        "seed": seed,
        "questions": n,
        "correct": correct,
        "abstained": abstained,
        "errors": errors,
        "recall_at_k": round(retrieved / n, 4),
        "chunks": len(agent.chunks),
        "passed": errors == 0,
    }
    if first_error:
        tests["first_error"] = first_error
    return {"metrics": metrics, "tests": tests}
