"""The sample agent's benchmark (package code, not part of the ConfigMap candidates edit)."""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

from .agent import MEMORY_BUDGET_BYTES, QAAgent, load_dataset

QUICK_SIZE = 25


def select_questions(dataset: dict[str, Any], subset: str, seed: int) -> list[dict[str, Any]]:
    questions = list(dataset["questions"])
    random.Random(seed).shuffle(questions)
    return questions[:QUICK_SIZE] if subset == "quick" else questions


def is_correct(answer: str | None, gold: str) -> bool:
    return answer is not None and gold.lower() in answer.lower()


def run_bench(workspace: Path | str, subset: str = "full", seed: int = 0) -> dict[str, Any]:
    """Evaluate the agent in ``workspace``; returns {"metrics": {...}, "tests": {...}}."""
    dataset = load_dataset()
    questions = select_questions(dataset, subset, seed)
    try:
        agent = QAAgent(workspace, dataset)
    except Exception as exc:  # a broken workspace fails every question
        return {
            "metrics": {"accuracy": 0.0, "response_time": 0.0, "error_rate": 1.0, "memory_usage": 0.0},
            "tests": {"subset": subset, "questions": len(questions), "passed": False,
                      "error": f"{type(exc).__name__}: {exc}"[:300]},
        }
    correct = errors = abstained = retrieved = 0
    times = []
    first_error = None
    for q in questions:
        try:
            ans = agent.answer(q["question"])
        except Exception as exc:
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
            continue
        times.append(ans.seconds)
        if ans.abstained:
            abstained += 1
        elif is_correct(ans.text, q["answer"]):
            correct += 1
        if q["passage"] in ans.passages:
            retrieved += 1
    n = len(questions)
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
