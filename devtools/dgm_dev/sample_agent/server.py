"""The sample agent as a service: A2A 1.0 (the official ``a2a-sdk``) and plain HTTP on one port.

Routes:
- ``GET /.well-known/agent-card.json``: the A2A agent card;
- ``POST /``: A2A JSON-RPC (``SendMessage``, ``GetTask``, ...); ``/rest/...``: A2A HTTP+JSON
  (``POST /rest/message:send``, ...);
- ``POST /ask`` with ``{"input": ...}`` (or ``{"question": ...}``) -> ``{"output": ..., "answer": ...}``,
  ``GET /ask?q=...``: plain HTTP; ``GET /healthz``, ``/readyz``.

A question becomes an A2A Task: an answer is an artifact and the task ``COMPLETED``; when the
agent abstains (retrieval score below ``min_score``) the task is ``REJECTED``; when the
workspace's code fails the task is ``FAILED``, with the reason in the status message. A workspace
that cannot be loaded at all still serves (every task fails with the reason), as the in-process
benchmark scores such a workspace 0 rather than failing.

The reader of the agent is simulated (an LLM would be priced per context token): an answer is
held for ``delay_per_token`` seconds per context token before it is sent, so the response time a
grader measures from outside depends on ``top_k`` and ``chunk_size`` as in the benchmark.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import uvicorn
from a2a.helpers import new_task_from_user_message, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Part
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .agent import READER_SECONDS_PER_TOKEN, Answer, QAAgent

JSONRPC_PATH = "/"
REST_PREFIX = "/rest"
MAX_QUESTION_CHARS = 10_000


class Answerer:
    """The agent, or why it could not be loaded; answers off the event loop."""

    def __init__(self, workspace: Path | str, delay_per_token: float):
        self.delay_per_token = delay_per_token
        self.agent: QAAgent | None = None
        self.load_error: str | None = None
        try:
            self.agent = QAAgent(workspace)
        except Exception as exc:  # served anyway: each task fails with this reason
            self.load_error = f"the workspace could not be loaded: {type(exc).__name__}: {exc}"[:500]

    async def answer(self, question: str) -> Answer:
        if self.agent is None:
            raise RuntimeError(self.load_error)
        ans = await asyncio.to_thread(self.agent.answer, question[:MAX_QUESTION_CHARS])
        if self.delay_per_token > 0:
            await asyncio.sleep(self.delay_per_token * ans.context_tokens)
        return ans


class SampleAgentExecutor(AgentExecutor):
    def __init__(self, answerer: Answerer):
        self.answerer = answerer

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        try:
            ans = await self.answerer.answer(context.get_user_input())
        except Exception as exc:
            await updater.failed(new_text_message(f"{type(exc).__name__}: {exc}"[:500], task_id=task.id,
                                                  context_id=task.context_id))
            return
        if ans.abstained:
            await updater.reject(new_text_message(
                f"no answer: best retrieval score {ans.score:g} is below min_score", task_id=task.id,
                context_id=task.context_id))
            return
        await updater.add_artifact([Part(text=ans.text or "")], name="answer")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        if context.current_task is not None:
            updater = TaskUpdater(event_queue, context.current_task.id, context.current_task.context_id)
            await updater.cancel()


def agent_card(base_url: str) -> AgentCard:
    base = base_url.rstrip("/")
    return AgentCard(
        name="dgm sample QA agent",
        description="Answers questions about (fictional) towns from its passages; behaviour set by "
                    "config.yaml and ranker.py in its workspace.",
        version="0.1.0",
        supported_interfaces=[
            AgentInterface(protocol_binding=TransportProtocol.JSONRPC.value, protocol_version=PROTOCOL_VERSION_CURRENT,
                           url=base + JSONRPC_PATH),
            AgentInterface(protocol_binding=TransportProtocol.HTTP_JSON.value, protocol_version=PROTOCOL_VERSION_CURRENT,
                           url=base + REST_PREFIX),
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="towns-qa", name="Town facts",
                           description="Founding year, founder, river, economy, festival and population of a town.",
                           tags=["qa", "retrieval"], examples=["Who founded Linvenmouth?"])],
    )


def build_app(workspace: Path | str, base_url: str, delay_per_token: float = READER_SECONDS_PER_TOKEN) -> Starlette:
    answerer = Answerer(workspace, delay_per_token)
    card = agent_card(base_url)
    handler = DefaultRequestHandler(agent_executor=SampleAgentExecutor(answerer), task_store=InMemoryTaskStore(),
                                    agent_card=card)

    async def ask(request: Request) -> JSONResponse:
        if request.method == "GET":
            question = request.query_params.get("q", "")
        else:
            try:
                body: Any = await request.json()
            except ValueError:
                return JSONResponse({"error": "invalid JSON"}, status_code=400)
            if not isinstance(body, dict):
                return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
            question = str(body.get("input") or body.get("question") or "")
        if not question:
            return JSONResponse({"error": "missing input"}, status_code=400)
        try:
            ans = await answerer.answer(question)
        except Exception as exc:
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"[:500]}, status_code=500)
        return JSONResponse({"output": ans.text, "answer": ans.text, "score": ans.score, "passages": ans.passages})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok" if answerer.agent is not None else "degraded",
                             **({"error": answerer.load_error} if answerer.load_error else {})})

    routes = [
        *create_agent_card_routes(card),
        *create_jsonrpc_routes(handler, rpc_url=JSONRPC_PATH),
        *create_rest_routes(handler, path_prefix=REST_PREFIX),
        Route("/ask", ask, methods=["GET", "POST"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/readyz", health, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: an ephemeral one), bound before the card is
    built so that the card names the real port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(workspace: Path | str, host: str = "127.0.0.1", port: int = 0, public_url: str | None = None,
          delay_per_token: float = READER_SECONDS_PER_TOKEN) -> int:
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    local = f"http://{shown}:{bound}"
    app = build_app(workspace, public_url or local, delay_per_token)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    print(f"sample agent serving on {local} (A2A card {local}/.well-known/agent-card.json, plain HTTP {local}/ask; "
          f"workspace {workspace})", flush=True)
    server.run(sockets=[sock])
    return 0
