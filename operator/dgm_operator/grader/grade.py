"""`dgm grade`: drive an agent through a task suite over its own interface and write the result.

    dgm grade --a2a http://127.0.0.1:8000 --tasks /opt/dgm/suites/my-suite.yaml [--subset quick]
    dgm grade --http http://127.0.0.1:8000/ask --tasks suite.yaml

This is the grader container of the evaluation pod: the agent runs in its own container and is
reached on localhost; this process holds the task suite with the expected answers, waits (bounded)
for the agent to serve its card, sends every selected task (``--repeats`` times), measures, and
alone writes one JSON object of at most 4 KiB to the termination log::

    {"metrics": {"accuracy": ..., "response_time": ..., "error_rate": ...},
     "tests": {"total": N, "passed": M, "failures": [{"task": ..., "expected": ..., "got": ...}]}}

When no metrics can be measured (the agent never became ready, the suite is invalid) the object
is ``{"metrics": {}, "error": "<why>"}`` and the exit code is non-zero.
Exit codes: 0 graded, 1 agent unavailable or the result could not be written, 2 bad arguments/suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any, Sequence

from .agents import A2AAgent, AgentUnavailable, HttpAgent, describe
from .result import Outcome, error_payload, fit, summarize
from .suite import SuiteError, Task, load_suite, select_tasks

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
DEFAULT_WAIT_SECONDS = 60.0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        return default


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dgm grade", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--a2a", metavar="URL", help="base URL of an A2A 1.0 agent (its card is at URL/.well-known/agent-card.json)")
    target.add_argument("--http", metavar="URL", help='plain-HTTP agent: POST URL {"input": ...} -> {"output": ...}')
    p.add_argument("--tasks", metavar="FILE", default=os.environ.get("DGM_TASKS"), help="task suite (YAML or JSON); env DGM_TASKS")
    p.add_argument("--subset", help="a subset named in the suite, or all, first:N, sample:N (seeded by --seed)")
    p.add_argument("--limit", type=int, help="then keep only the first N tasks")
    p.add_argument("--seed", type=int, default=0, help="seed of sample:N (default 0)")
    p.add_argument("--repeats", type=int, default=_env_int("DGM_REPEATS", 1), help="runs over the tasks; env DGM_REPEATS (default 1)")
    p.add_argument("--concurrency", type=int, default=1, help="tasks in flight at once (default 1)")
    p.add_argument("--wait", type=float, default=DEFAULT_WAIT_SECONDS, metavar="SECONDS",
                   help=f"how long to wait for the agent to come up (default {DEFAULT_WAIT_SECONDS:g})")
    p.add_argument("--binding", choices=["auto", "jsonrpc", "http+json"], default="auto",
                   help="A2A protocol binding (default: the card's first supported one)")
    p.add_argument("--trust-card-urls", action="store_true",
                   help="use the interface URLs of the agent card as they are (default: re-root them on --a2a)")
    p.add_argument("--max-response-bytes", type=int, default=1024 * 1024, help="largest response read from the agent")
    p.add_argument("--termination-log", default=os.environ.get("DGM_TERMINATION_LOG", DEFAULT_TERMINATION_LOG),
                   help=f"where the result goes (default {DEFAULT_TERMINATION_LOG}; env DGM_TERMINATION_LOG)")
    return p


async def _ask(agent: Any, task: Task) -> Outcome:
    started = time.perf_counter()
    answer: str | None = None
    error: str | None = None
    try:
        answer = await asyncio.wait_for(agent.ask(task.input, task.timeout_seconds), task.timeout_seconds)
    except (asyncio.TimeoutError, TimeoutError):
        error = f"no answer within {task.timeout_seconds:g} s"
    except Exception as exc:  # any failure of the agent is a failed task, never a crash of the grader
        error = describe(exc)
    seconds = time.perf_counter() - started
    if error is None and answer is not None and not answer.strip():
        answer, error = None, "empty answer"
    return Outcome(task.id, task.expected, error is None and task.passes(answer), seconds, answer, error)


async def grade(agent: Any, tasks: Sequence[Task], *, repeats: int, concurrency: int, wait_seconds: float) -> list[list[Outcome]]:
    """Wait for ``agent``, then run ``tasks`` ``repeats`` times; outcomes per run, in task order.
    Raises :class:`~dgm_operator.grader.agents.AgentUnavailable` when the agent never comes up."""
    await agent.wait_ready(wait_seconds)
    gate = asyncio.Semaphore(concurrency)

    async def one(task: Task) -> Outcome:
        async with gate:
            return await _ask(agent, task)

    runs = []
    for _ in range(repeats):
        runs.append(list(await asyncio.gather(*(one(t) for t in tasks))))
    return runs


def _write(path: str, text: str) -> bool:
    try:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(text)
        return True
    except OSError as exc:
        print(f"dgm grade: cannot write the termination log {path}: {exc}", file=sys.stderr)
        return False


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, low in (("repeats", 1), ("concurrency", 1), ("max_response_bytes", 1024)):
        if getattr(args, name) < low:
            parser.error(f"--{name.replace('_', '-')} must be at least {low}")
    if args.wait <= 0:
        parser.error("--wait must be positive")
    started = time.monotonic()
    info: dict[str, Any] = {"subset": args.subset or "all"}
    code = 0
    try:
        if not args.tasks:
            raise SuiteError("--tasks: a task suite file is required (or set DGM_TASKS)")
        suite = load_suite(args.tasks)
        tasks = select_tasks(suite, args.subset, seed=args.seed, limit=args.limit)
        info["suite"] = suite.name
        payload = asyncio.run(_run(args, tasks, info))
        code = 1 if payload.get("error") else 0
    except SuiteError as exc:
        payload, code = error_payload(f"task suite: {exc}"), 2
    except Exception as exc:  # never die without a result: the operator needs the reason
        payload, code = error_payload(f"grader failed: {type(exc).__name__}: {exc}"), 1
    payload["durationSeconds"] = round(time.monotonic() - started, 3)
    text = fit(payload)
    print(text, flush=True)
    if not _write(args.termination_log, text):
        return code or 1
    return code


async def _run(args: argparse.Namespace, tasks: Sequence[Task], info: dict[str, Any]) -> dict[str, Any]:
    agent: Any
    if args.a2a:
        agent = A2AAgent(args.a2a, binding=args.binding, trust_card_urls=args.trust_card_urls,
                         max_response_bytes=args.max_response_bytes)
    else:
        agent = HttpAgent(args.http, max_response_bytes=args.max_response_bytes)
    try:
        runs = await grade(agent, tasks, repeats=args.repeats, concurrency=args.concurrency, wait_seconds=args.wait)
    except AgentUnavailable as exc:
        return error_payload(f"agent unavailable: {exc}", tests={"total": 0, "passed": 0, **info})
    finally:
        await agent.aclose()
    return summarize(runs, **info)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
