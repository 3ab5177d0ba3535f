"""A tiny A2A 1.0 agent for the grader's tests, served with the real a2a-sdk server (not a mock
of the protocol): it answers with one Message whose text follows from the input.

    python tests/unit/a2a_echo_agent.py [--card-url URL]      # prints "serving on http://127.0.0.1:PORT"

Inputs: ``repeat:N:TEXT`` -> TEXT repeated N times; ``sleep:SECONDS`` -> "woke" after a pause;
``fail:TEXT`` -> the executor raises; ``data:TEXT`` -> a data part ``{"answer": TEXT}``; ``task:TEXT`` -> a completed Task whose status message is
TEXT (no artifact); ``reject:TEXT`` -> a rejected Task; anything else is echoed back.
"""

from __future__ import annotations

import argparse
import asyncio
import socket

import uvicorn
from a2a.helpers import new_message, new_task_from_user_message, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, Part
from google.protobuf.struct_pb2 import Value
from starlette.applications import Starlette


class EchoExecutor(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = context.get_user_input()
        if text.startswith(("task:", "reject:")):
            assert context.message is not None
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
            updater = TaskUpdater(event_queue, task.id, task.context_id)
            said = new_text_message(text.split(":", 1)[1], task_id=task.id, context_id=task.context_id)
            await (updater.complete(said) if text.startswith("task:") else updater.reject(said))
            return
        if text.startswith("repeat:"):
            _, n, body = text.split(":", 2)
            text = body * int(n)
        elif text.startswith("sleep:"):
            await asyncio.sleep(float(text.split(":", 1)[1]))
            text = "woke"
        elif text.startswith("fail:"):
            raise RuntimeError(text.split(":", 1)[1])
        elif text.startswith("data:"):
            value = Value()
            value.struct_value.update({"answer": text.split(":", 1)[1]})
            await event_queue.enqueue_event(new_message([Part(data=value)]))
            return
        await event_queue.enqueue_event(new_text_message(text))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--card-url", help="base URL the card advertises (default: the real one)")
    args = parser.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    card = AgentCard(name="echo", description="test agent", version="0",
                     supported_interfaces=[AgentInterface(protocol_binding="JSONRPC", protocol_version="1.0",
                                                          url=(args.card_url or url) + "/")],
                     capabilities=AgentCapabilities(streaming=False),
                     default_input_modes=["text/plain"], default_output_modes=["text/plain"])
    handler = DefaultRequestHandler(agent_executor=EchoExecutor(), task_store=InMemoryTaskStore(), agent_card=card)
    app = Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, rpc_url="/")])
    print(f"serving on {url}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])


if __name__ == "__main__":
    main()
