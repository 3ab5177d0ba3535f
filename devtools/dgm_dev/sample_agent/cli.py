"""``dgm-sample-agent`` (or ``python -m dgm_dev.sample_agent``).

    dgm-sample-agent serve --workspace DIR [--host 127.0.0.1] [--port 0] [--public-url URL]
    dgm-sample-agent bench --workspace DIR [--subset quick|full] [--seed N] [--tasks FILE]
    dgm-sample-agent ask   --workspace DIR QUESTION

``serve`` speaks A2A 1.0 (agent card at /.well-known/agent-card.json, JSON-RPC at /, HTTP+JSON
under /rest) and plain HTTP (POST /ask) on one port; see ``server``. ``bench`` is the
in-process benchmark (the single-process opt-out; evaluations use ``dgm grade``).
"""

from __future__ import annotations

import argparse
import json
import sys

from .agent import READER_SECONDS_PER_TOKEN, QAAgent
from .bench import run_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dgm-sample-agent", description="quickstart sample QA agent")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="evaluate the agent in-process; prints one JSON object")
    b.add_argument("--workspace", required=True)
    b.add_argument("--subset", default="full", help="quick, full, or a subset spec of the task suite (first:N, sample:N)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--tasks", help="task suite (default: DGM_TASKS, else the source checkout's devtools/suites/sample-qa.yaml)")
    s = sub.add_parser("serve", help="serve A2A (card, JSON-RPC, HTTP+JSON) and plain HTTP (POST /ask) on one port")
    s.add_argument("--workspace", required=True)
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: the pod's localhost)")
    s.add_argument("--port", type=int, default=0, help="0 (default): an ephemeral port")
    s.add_argument("--public-url", help="base URL the agent card advertises (default: http://HOST:PORT)")
    s.add_argument("--reader-delay", type=float, default=READER_SECONDS_PER_TOKEN, metavar="SECONDS",
                   help=f"simulated reader latency per context token (default {READER_SECONDS_PER_TOKEN}; 0: none)")
    a = sub.add_parser("ask", help="answer one question")
    a.add_argument("--workspace", required=True)
    a.add_argument("question")
    args = parser.parse_args(argv)
    if args.command == "bench":
        print(json.dumps(run_bench(args.workspace, args.subset, args.seed, args.tasks), sort_keys=True))
        return 0
    if args.command == "serve":
        if args.reader_delay < 0:
            parser.error("--reader-delay must not be negative")
        from .server import serve  # the server's dependencies load only for serve

        return serve(args.workspace, args.host, args.port, args.public_url, args.reader_delay)
    ans = QAAgent(args.workspace).answer(args.question)
    print(json.dumps({"answer": ans.text, "score": ans.score, "passages": ans.passages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
