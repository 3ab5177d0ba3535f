"""A STAND-IN for an OpenAI-compatible chat-completions server, for tests only.

It is not a model. It serves the documented protocol (``POST /v1/chat/completions`` with
``{"model", "messages", ...}``, answering ``{"id", "object": "chat.completion", "choices":
[{"index", "message": {"role": "assistant", "content"}, "finish_reason"}], "usage"}``, and
``GET /v1/models``) and answers each request with the next entry of a script, so tests can
make it return valid edits, edits that do not apply, malformed replies, slow answers
(timeouts), 429s with ``Retry-After`` and 5xx errors, in a chosen order.

Script (JSON): ``{"replies": [ENTRY, ...], "cycle": false}``. An entry:

``content``        the assistant's reply text
``status``         HTTP status (default 200); an error status answers an OpenAI error object
``headers``        extra response headers, e.g. ``{"Retry-After": "1"}``
``delay``          seconds to wait before answering (longer than the client's timeout: a timeout)
``usage``          the ``usage`` object; default: counted as characters / 4; ``null``: left out
``finish_reason``  default ``stop``
``raw``            a raw response body (e.g. not JSON) instead of a chat completion

When the script runs out it answers HTTP 500 with ``x-should-retry: false``, unless ``cycle``
is true (then it starts over). ``GET /stand-in/requests`` returns what it received (each
request's body, its ``Authorization`` header and its arrival time), for tests to check.

Standard library only, so it also runs as a plain script in any Python image:
``python llm_standin.py --script script.json --port 8000``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Script:
    def __init__(self, replies: list[dict[str, Any]], cycle: bool = False):
        self.replies, self.cycle = list(replies), cycle
        self.received: list[dict[str, Any]] = []
        self._next = 0
        self._lock = threading.Lock()

    @classmethod
    def load(cls, data: dict[str, Any]) -> "Script":
        replies = data.get("replies")
        if not isinstance(replies, list) or not all(isinstance(r, dict) for r in replies):
            raise ValueError("script: 'replies' must be a list of objects")
        return cls(replies, bool(data.get("cycle", False)))

    def take(self, request: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            self.received.append(request)
            if self._next >= len(self.replies):
                if not self.cycle or not self.replies:
                    return None
                self._next = 0
            entry = self.replies[self._next]
            self._next += 1
            return entry


def _estimate(text: str) -> int:
    return max(1, len(text) // 4)


def completion(entry: dict[str, Any], request: dict[str, Any], number: int) -> dict[str, Any]:
    content = str(entry.get("content", ""))
    body: dict[str, Any] = {
        "id": f"chatcmpl-standin-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model") or "stand-in",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": entry.get("finish_reason", "stop")}],
    }
    if "usage" not in entry:
        prompt = sum(_estimate(str(m.get("content", ""))) for m in request.get("messages") or [])
        completion_tokens = _estimate(content)
        body["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
                         "total_tokens": prompt + completion_tokens}
    elif entry["usage"] is not None:
        body["usage"] = entry["usage"]
    return body


def make_handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, str(v))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                pass

        def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(obj).encode(), headers)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._json(200, {"object": "list", "data": [{"id": "stand-in", "object": "model"}]})
            elif self.path == "/stand-in/requests":
                self._json(200, script.received)
            else:
                self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            try:
                request = json.loads(raw)
            except ValueError:
                self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
                return
            entry = script.take({"body": request, "authorization": self.headers.get("Authorization"),
                                 "time": time.time()})
            number = len(script.received)
            if entry is None:
                self._json(500, {"error": {"message": "stand-in script exhausted", "type": "server_error"}},
                           {"x-should-retry": "false"})
                return
            if entry.get("delay"):
                time.sleep(float(entry["delay"]))
            status = int(entry.get("status", 200))
            headers = {str(k): str(v) for k, v in (entry.get("headers") or {}).items()}
            if "raw" in entry:
                self._send(status, str(entry["raw"]).encode(), headers, "application/json")
            elif status >= 400:
                self._json(status, {"error": {"message": entry.get("content") or f"stand-in error {status}",
                                              "type": "rate_limit_error" if status == 429 else "server_error"}},
                           headers)
            else:
                self._json(status, completion(entry, request, number), headers)

    return Handler


class StandIn:
    """The stand-in on ``host:port`` (0: any free port) in a background thread."""

    def __init__(self, script: Script, host: str = "127.0.0.1", port: int = 0):
        self.script = script
        self.server = ThreadingHTTPServer((host, port), make_handler(script))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "StandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dgm llm-standin", description="a STAND-IN OpenAI-compatible server for tests")
    p.add_argument("--script", required=True, help="JSON script file (see the module docstring)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    with open(args.script, encoding="utf-8") as fh:
        script = Script.load(json.load(fh))
    standin = StandIn(script, args.host, args.port)
    print(f"stand-in (not a model) serving {standin.base_url}", flush=True)
    try:
        standin.server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
