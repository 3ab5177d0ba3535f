"""``dgm-sample-agent`` (or ``python -m dgm_dev.sample_agent``).

    dgm-sample-agent bench --workspace DIR [--subset quick|full] [--seed N]
    dgm-sample-agent serve --workspace DIR [--host 127.0.0.1] [--port 0]
    dgm-sample-agent ask   --workspace DIR QUESTION
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from .agent import QAAgent
from .bench import run_bench


def _serve(args: argparse.Namespace) -> int:
    agent = QAAgent(args.workspace)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _ask(self, question: str) -> None:
            if not question:
                self._send(400, {"error": "missing question"})
                return
            ans = agent.answer(question)
            self._send(200, {"answer": ans.text, "score": ans.score, "passages": ans.passages})

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if url.path in ("/healthz", "/readyz"):
                self._send(200, {"status": "ok"})
            elif url.path == "/ask":
                self._ask(parse_qs(url.query).get("q", [""])[0])
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            if urlparse(self.path).path != "/ask":
                self._send(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, {"error": "invalid JSON"})
                return
            self._ask(str(body.get("question", "")))

        def log_message(self, fmt: str, *a) -> None:
            pass

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"sample agent serving on http://{args.host}:{server.server_address[1]} "
          f"(workspace {args.workspace}, scorer {agent.method})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dgm-sample-agent", description="quickstart sample QA agent")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="evaluate the agent; prints one JSON object")
    b.add_argument("--workspace", required=True)
    b.add_argument("--subset", choices=["quick", "full"], default="full")
    b.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("serve", help="serve questions over HTTP (GET /ask?q=..., POST /ask, /healthz)")
    s.add_argument("--workspace", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0, help="0 (default): an ephemeral port")
    a = sub.add_parser("ask", help="answer one question")
    a.add_argument("--workspace", required=True)
    a.add_argument("question")
    args = parser.parse_args(argv)
    if args.command == "bench":
        print(json.dumps(run_bench(args.workspace, args.subset, args.seed), sort_keys=True))
        return 0
    if args.command == "serve":
        return _serve(args)
    ans = QAAgent(args.workspace).answer(args.question)
    print(json.dumps({"answer": ans.text, "score": ans.score, "passages": ans.passages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
