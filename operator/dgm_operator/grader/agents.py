"""Talking to the agent under evaluation: A2A 1.0 through the official ``a2a-sdk`` client, or
plain HTTP (``POST {"input": ...}`` -> ``{"output": ...}``) for agents without A2A.

The agent is untrusted (it runs a candidate's code), so the grader:
- reads at most ``max_response_bytes`` of any response (card, reply), through
  :class:`CappedTransport`, so a huge reply cannot exhaust the grader's memory;
- talks only to the address it was given: the interface URLs an agent card lists are
  re-rooted on that address unless ``trust_card_urls`` is set;
- ignores proxy settings from the environment and never follows redirects.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, AsyncIterator, Protocol, Sequence
from urllib.parse import urlsplit, urlunsplit

import httpx
from a2a.client import ClientCallContext, ClientConfig, ClientFactory
from a2a.client.card_resolver import parse_agent_card
from a2a.helpers import get_data_parts, get_text_parts
from a2a.types import AgentCard, GetTaskRequest, Message, Part, Role, SendMessageRequest, Task, TaskState
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, TransportProtocol

DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
RAW_ERROR_LIMIT = 2000  # raw error text kept per task before escaping (the report bounds it further)
BINDINGS = {"jsonrpc": TransportProtocol.JSONRPC.value, "http+json": TransportProtocol.HTTP_JSON.value}
_POLL_SECONDS = 0.2
_TERMINAL_ERRORS = {
    TaskState.TASK_STATE_FAILED: "failed",
    TaskState.TASK_STATE_CANCELED: "canceled",
    TaskState.TASK_STATE_REJECTED: "rejected",
    TaskState.TASK_STATE_INPUT_REQUIRED: "asked for more input",
    TaskState.TASK_STATE_AUTH_REQUIRED: "asked for authentication",
}


class AgentUnavailable(Exception):
    """The agent never became ready, or cannot be talked to at all (its card is unusable)."""


class NoAnswer(Exception):
    """The agent replied, but with no answer (a failed or rejected task, an HTTP error, ...)."""


class ResponseTooLarge(httpx.ReadError):
    """The agent sent more than the grader reads."""


class _CappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, limit: int, url: str):
        self._inner, self._limit, self._url = inner, limit, url

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise ResponseTooLarge(f"the response from {self._url} exceeds {self._limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class CappedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose response bodies fail once they pass ``limit`` bytes."""

    def __init__(self, limit: int, inner: httpx.AsyncBaseTransport | None = None):
        self._limit = limit
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        return httpx.Response(status_code=response.status_code, headers=response.headers,
                              stream=_CappedStream(stream, self._limit, str(request.url)),
                              extensions=response.extensions, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _http_client(max_response_bytes: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=CappedTransport(max_response_bytes), trust_env=False,
                             follow_redirects=False, timeout=httpx.Timeout(30.0, connect=5.0))


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception (raw, bounded; the report escapes it); just the message
    for :class:`NoAnswer`, whose text already says what the agent did."""
    text = str(exc) or repr(exc)
    return (text if isinstance(exc, NoAnswer) else f"{type(exc).__name__}: {text}")[:RAW_ERROR_LIMIT]


class Agent(Protocol):
    """What the grader needs from an agent: wait until it is up, then ask it things."""

    async def wait_ready(self, wait_seconds: float) -> None: ...

    async def ask(self, text: str, timeout: float) -> str:
        """The agent's answer; raises on no answer (the message says why)."""
        ...

    async def aclose(self) -> None: ...


async def _poll_until_ready(wait_seconds: float, what: str, probe: Any) -> Any:
    """Call ``probe(timeout)`` until it returns without raising or ``wait_seconds`` pass."""
    deadline = time.monotonic() + wait_seconds
    delay, last = 0.1, "no attempt made"
    while True:
        remaining = deadline - time.monotonic()
        try:
            return await probe(max(0.5, min(5.0, remaining)))
        except AgentUnavailable:
            raise
        except Exception as exc:  # not up yet: remember why, retry until the deadline
            last = describe(exc)
        if time.monotonic() + delay > deadline:
            raise AgentUnavailable(f"{what} not available within {wait_seconds:g} s (last error: {last})")
        await asyncio.sleep(delay)
        delay = min(1.0, delay * 2)


def _rebase(url: str, base: str) -> str:
    """``url`` with the scheme and host:port of ``base`` (its path and query kept)."""
    u, b = urlsplit(url), urlsplit(base)
    return urlunsplit((b.scheme, b.netloc, u.path, u.query, ""))


class A2AAgent:
    """An A2A 1.0 agent at ``base_url``: its card at ``/.well-known/agent-card.json``, tasks sent
    with ``SendMessage`` (blocking), a returned Task polled with ``GetTask`` until it is final."""

    def __init__(self, base_url: str, *, binding: str = "auto", trust_card_urls: bool = False,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES):
        self.base_url = base_url.rstrip("/")
        self.binding = binding
        self.trust_card_urls = trust_card_urls
        self.http = _http_client(max_response_bytes)
        self.card: AgentCard | None = None
        self._client: Any = None

    @property
    def card_url(self) -> str:
        return self.base_url + AGENT_CARD_WELL_KNOWN_PATH

    async def _fetch_card(self, timeout: float) -> AgentCard:
        response = await self.http.get(self.card_url, timeout=timeout)
        if response.status_code != 200:
            raise httpx.HTTPStatusError(f"HTTP {response.status_code}", request=response.request, response=response)
        try:
            return parse_agent_card(response.json())
        except Exception as exc:  # served, but not a card: waiting longer will not help
            raise AgentUnavailable(f"{self.card_url} is not a valid A2A agent card: {describe(exc)}") from None

    async def wait_ready(self, wait_seconds: float) -> None:
        card = await _poll_until_ready(wait_seconds, f"A2A agent card at {self.card_url}", self._fetch_card)
        if not self.trust_card_urls:
            for iface in card.supported_interfaces:
                iface.url = _rebase(iface.url, self.base_url)
        wanted = list(BINDINGS.values()) if self.binding == "auto" else [BINDINGS[self.binding]]
        offered = sorted({i.protocol_binding for i in card.supported_interfaces})
        if not any(i.protocol_binding in wanted for i in card.supported_interfaces):
            raise AgentUnavailable(f"the agent card at {self.card_url} offers no {' or '.join(wanted)} interface "
                                   f"(it lists: {', '.join(offered) or 'none'})")
        config = ClientConfig(streaming=False, httpx_client=self.http, supported_protocol_bindings=wanted,
                              use_client_preference=self.binding != "auto")
        try:
            self._client = ClientFactory(config).create(card)
        except ValueError as exc:
            raise AgentUnavailable(f"cannot use the agent card at {self.card_url}: {exc}") from None
        self.card = card

    async def ask(self, text: str, timeout: float) -> str:
        assert self._client is not None, "wait_ready first"
        deadline = time.monotonic() + timeout
        message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])
        reply = None
        async for event in self._client.send_message(SendMessageRequest(message=message),
                                                     context=ClientCallContext(timeout=timeout)):
            reply = event
        if reply is None:
            raise NoAnswer("the agent sent no response")
        if reply.HasField("message"):
            return _message_text(reply.message)
        task: Task = reply.task
        while task.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING,
                                    TaskState.TASK_STATE_UNSPECIFIED):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"task {task.id} still {TaskState.Name(task.status.state)} after {timeout:g} s")
            await asyncio.sleep(min(_POLL_SECONDS, remaining))
            task = await self._client.get_task(GetTaskRequest(id=task.id),
                                               context=ClientCallContext(timeout=max(0.1, deadline - time.monotonic())))
        if task.status.state in _TERMINAL_ERRORS:
            said = _message_text(task.status.message) if task.status.HasField("message") else ""
            raise NoAnswer(f"the agent {_TERMINAL_ERRORS[task.status.state]} the task"
                               + (f": {said[:RAW_ERROR_LIMIT]}" if said else ""))
        texts = [_parts_text(a.parts) for a in task.artifacts]
        if any(texts):
            return "\n".join(t for t in texts if t)
        if task.status.HasField("message"):
            return _message_text(task.status.message)
        return ""

    async def aclose(self) -> None:
        await self.http.aclose()


def _parts_text(parts: Sequence[Part]) -> str:
    """The text parts joined by newlines; without any, the data parts as JSON."""
    text = "\n".join(get_text_parts(parts))
    if text:
        return text
    return "\n".join(json.dumps(d, sort_keys=True, default=str) for d in get_data_parts(parts))


def _message_text(message: Message) -> str:
    return _parts_text(message.parts)


class HttpAgent:
    """An agent without A2A: ``POST url`` with ``{"input": text}``, answer in ``{"output": ...}``
    (a JSON string; ``null`` means no answer). Ready once the URL answers any HTTP request."""

    def __init__(self, url: str, *, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES):
        self.url = url
        self.http = _http_client(max_response_bytes)

    async def _probe(self, timeout: float) -> None:
        await self.http.get(self.url, timeout=timeout)

    async def wait_ready(self, wait_seconds: float) -> None:
        await _poll_until_ready(wait_seconds, f"HTTP agent at {self.url}", self._probe)

    async def ask(self, text: str, timeout: float) -> str:
        response = await self.http.post(self.url, json={"input": text}, timeout=timeout)
        if not 200 <= response.status_code < 300:
            raise NoAnswer(f"HTTP {response.status_code}: {response.text[:RAW_ERROR_LIMIT]}")
        try:
            body = response.json()
        except ValueError:
            raise NoAnswer(f"the reply is not JSON: {response.text[:RAW_ERROR_LIMIT]}") from None
        if not isinstance(body, dict) or "output" not in body:
            raise NoAnswer(f"the reply has no 'output' field: {response.text[:RAW_ERROR_LIMIT]}")
        output = body["output"]
        if output is None:
            raise NoAnswer("the agent gave no answer (output is null)")
        return output if isinstance(output, str) else json.dumps(output)

    async def aclose(self) -> None:
        await self.http.aclose()
