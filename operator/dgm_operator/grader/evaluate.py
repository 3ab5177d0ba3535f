"""`dgm evaluate -- CMD ...`: the evaluation side of the sandbox contract.

Runs a benchmark command (``DGM_REPEATS`` times, default 1), reads the JSON object the
command prints last on stdout (``{"metrics": {...}, "tests": {...}}``), aggregates the
repeats (mean per metric, with the samples kept so the operator can judge noise) and
writes one JSON object of at most 4 KiB to the termination log, where the kubelet (or the
dev cluster's local node) turns it into the container's terminated ``message``.

Exit code: that of the first failing run, else 0. A run that prints no metrics still exits
0 here: deciding ``MetricsUnavailable`` is the operator's job, from what it reads back.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

TERMINATION_LOG_LIMIT = 4096
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def last_json_object(text: str) -> dict[str, Any] | None:
    """The last line of ``text`` that parses as a JSON object, else the whole text if it does."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def numeric_metrics(result: dict[str, Any] | None) -> dict[str, float]:
    """The finite numeric entries of ``result["metrics"]``; anything else is dropped."""
    if not result or not isinstance(result.get("metrics"), dict):
        return {}
    out: dict[str, float] = {}
    for name, value in result["metrics"].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf"):
            out[str(name)] = float(value)
    return out


def aggregate(runs: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Mean of each metric present in every run, the samples, and the last run's tests."""
    per_run = [numeric_metrics(r) for r in runs]
    names = set(per_run[0]) if per_run else set()
    for metrics in per_run[1:]:
        names &= set(metrics)
    out: dict[str, Any] = {"metrics": {n: statistics.fmean(m[n] for m in per_run) for n in sorted(names)}}
    if len(per_run) > 1:
        out["samples"] = {n: [m[n] for m in per_run] for n in sorted(names)}
    tests = next((r.get("tests") for r in reversed(runs) if r and isinstance(r.get("tests"), dict)), None)
    if tests is not None:
        out["tests"] = tests
    return out


def fit(payload: dict[str, Any], limit: int = TERMINATION_LOG_LIMIT) -> str:
    """Serialise ``payload`` within ``limit`` bytes, dropping the least important parts first."""
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    for key in ("tests", "samples", "stderrTail"):
        if len(text.encode()) <= limit:
            break
        if key in payload:
            payload = {k: v for k, v in payload.items() if k != key}
            payload.setdefault("truncated", []).append(key)
            text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > limit:
        text = json.dumps({"error": "result larger than the termination log allows", "truncated": True})
    return text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dgm evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("DGM_REPEATS", "1") or 1))
    parser.add_argument("--termination-log", default=os.environ.get("DGM_TERMINATION_LOG", DEFAULT_TERMINATION_LOG))
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a benchmark command is required after --")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    runs: list[dict[str, Any] | None] = []
    started = time.monotonic()
    exit_code = 0
    payload: dict[str, Any]
    for i in range(args.repeats):
        try:
            proc = subprocess.run(command, capture_output=True, text=True)
        except OSError as exc:
            payload, exit_code = {"error": f"cannot run {command[0]!r}: {exc}"}, 127
            break
        sys.stderr.write(proc.stderr)
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            payload = {"error": f"run {i + 1} of {args.repeats} exited with {proc.returncode}",
                       "stderrTail": proc.stderr[-1024:]}
            exit_code = proc.returncode
            break
        runs.append(last_json_object(proc.stdout))
    else:
        payload = aggregate(runs)
        payload["repeats"] = args.repeats
    payload["durationSeconds"] = round(time.monotonic() - started, 3)
    with open(args.termination_log, "w", encoding="utf-8") as fh:
        fh.write(fit(payload))
    return exit_code
