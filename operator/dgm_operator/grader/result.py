"""What the grader reports: metrics per run, their mean over repeats, and a bounded summary.

The termination log is the only channel from the grader to the operator and its content ends
up in the candidate's status, so everything the agent produced (answers, error texts) passes
through :func:`escape` (printable ASCII only, bounded) before it is written, and the whole
object is cut to :data:`TERMINATION_LOG_LIMIT` bytes by dropping failures first.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

TERMINATION_LOG_LIMIT = 4096
MAX_FAILURES = 10
GOT_LIMIT = 160
EXPECTED_LIMIT = 80
ERROR_LIMIT = 160
TOP_ERROR_LIMIT = 600
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str, limit: int) -> str:
    """``text`` as printable ASCII (``\\n``, ``\\xNN``, ``\\uNNNN`` escapes), at most ``limit``
    characters plus a ``...(+N chars)`` marker saying how much of the original was left out."""
    out: list[str] = []
    used = 0
    for i, ch in enumerate(text):
        if ch in _ESCAPES:
            piece = _ESCAPES[ch]
        elif " " <= ch <= "~":
            piece = ch
        else:
            code = ord(ch)
            piece = f"\\x{code:02x}" if code < 0x100 else (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        if used + len(piece) > limit:
            out.append(f"...(+{len(text) - i} chars)")
            break
        out.append(piece)
        used += len(piece)
    return "".join(out)


@dataclass(frozen=True)
class Outcome:
    """One task sent once: what came back and how long it took."""

    task: str
    expected: tuple[str, ...]
    passed: bool
    seconds: float
    answer: str | None = None  # None: the agent gave no answer (see error)
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.answer is not None and self.error is None


def run_metrics(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """accuracy (passed / tasks), response_time (mean seconds from request to final answer, failed
    tasks included with the time they took), error_rate (tasks without an answer / tasks)."""
    n = len(outcomes)
    return {
        "accuracy": round(sum(o.passed for o in outcomes) / n, 6),
        "response_time": round(statistics.fmean(o.seconds for o in outcomes), 6),
        "error_rate": round(sum(not o.answered for o in outcomes) / n, 6),
    }


def failure_record(o: Outcome) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "task": o.task,
        "expected": escape(o.expected[0], EXPECTED_LIMIT) if len(o.expected) == 1
        else [escape(e, EXPECTED_LIMIT // 2) for e in o.expected[:3]],
        "got": None if o.answer is None else escape(o.answer, GOT_LIMIT),
    }
    if o.error is not None:
        rec["error"] = escape(o.error, ERROR_LIMIT)
    return rec


def summarize(runs: Sequence[Sequence[Outcome]], **info: Any) -> dict[str, Any]:
    """The result object: mean metrics over the runs (plus samples with repeats) and ``tests``."""
    per_run = [run_metrics(r) for r in runs]
    names = list(per_run[0])
    payload: dict[str, Any] = {
        "metrics": {n: round(statistics.fmean(m[n] for m in per_run), 6) for n in names},
        "repeats": len(runs),
    }
    if len(runs) > 1:
        payload["samples"] = {n: [m[n] for m in per_run] for n in names}
    failures: list[dict[str, Any]] = []
    seen: set[str] = set()
    failed_total = 0
    for run in runs:
        for o in run:
            if o.passed:
                continue
            failed_total += 1
            if o.task not in seen:
                seen.add(o.task)
                failures.append(failure_record(o))
    tests: dict[str, Any] = {
        "total": sum(len(r) for r in runs),
        "passed": sum(o.passed for r in runs for o in r),
        "errors": sum(not o.answered for r in runs for o in r),
        **info,
        "failures": failures[:MAX_FAILURES],
    }
    if len(failures) > MAX_FAILURES:
        tests["failuresOmitted"] = len(failures) - MAX_FAILURES
    payload["tests"] = tests
    return payload


def error_payload(message: str, **extra: Any) -> dict[str, Any]:
    """No metrics, and why: the operator decides MetricsUnavailable with this reason."""
    return {"metrics": {}, "error": escape(message, TOP_ERROR_LIMIT), **extra}


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=True)


def fit(payload: dict[str, Any], limit: int = TERMINATION_LOG_LIMIT) -> str:
    """Serialise within ``limit`` bytes: failures are dropped one by one (counted in
    ``failuresOmitted``), then samples, then tests; metrics are never cut."""
    payload = json.loads(json.dumps(payload))  # a private copy
    text = dumps(payload)
    tests = payload.get("tests")
    while len(text.encode()) > limit and isinstance(tests, dict) and tests.get("failures"):
        tests["failures"].pop()
        tests["failuresOmitted"] = int(tests.get("failuresOmitted", 0)) + 1
        text = dumps(payload)
    for key in ("samples", "tests"):
        if len(text.encode()) <= limit:
            break
        if key in payload:
            del payload[key]
            payload.setdefault("truncated", []).append(key)
            text = dumps(payload)
    if len(text.encode()) > limit:
        text = dumps({"metrics": {}, "error": "result larger than the termination log allows", "truncated": True})
    return text
