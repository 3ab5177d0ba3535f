"""`dgm propose-llm`: the built-in LLM proposer, run inside a proposal Job.

Reads the context document (``--context``, default ``/proposal/context.json``), talks to an
OpenAI-compatible chat-completions endpoint through the ``openai`` client library, and
writes one ``ProposalResult`` (``--out DIR`` writes ``DIR/result.json``; without it the
result block is printed on stdout). Progress and the model's replies (bounded) go to stderr.

Settings come from flags or the environment the Job sets (the key only from a Secret):

==============================  ==========================================================
``DGM_LLM_BASE_URL``            the endpoint, e.g. ``http://vllm.llm.svc:8000/v1``
``DGM_LLM_MODEL``               the model name
``DGM_LLM_API_KEY``             the key (optional: local servers often need none)
``DGM_LLM_TEMPERATURE``         sampling temperature (optional)
``DGM_LLM_MAX_TOKENS``          completion tokens per call (optional)
``DGM_LLM_TIMEOUT_SECONDS``     one request's timeout (default 120)
``DGM_LLM_MAX_FIX_ATTEMPTS``    times a bad reply goes back to the model (default 2)
``DGM_LLM_MAX_RETRIES``         retries of one request on 429/5xx/timeouts (default 3)
``DGM_LLM_TOKEN_BUDGET``        tokens left in the agent's daily budget (optional)
==============================  ==========================================================

Retries of a request use the client library's own policy: exponential backoff with jitter
(0.5 s doubling, at most 8 s) on 408, 409, 429, 5xx, timeouts and connection errors, and a
server's ``Retry-After`` (up to 120 s) honoured. The client library is maintained and does
this correctly; we do not hand-write it.

Exit code: 0 whenever a result was written, a failed proposal included (so the Job's
``result`` container runs and the operator learns the reason and the tokens spent), bad
settings and an unreadable context included; 2 when the command line cannot be parsed; 1
when no result could be written at all.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..engine import llm, proposal
from ..engine.types import ImprovementType

log = logging.getLogger("dgm.propose-llm")

REPLY_LOG_LIMIT = 4000


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    base_url: str
    model: str
    api_key: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_seconds: float = 120.0
    max_fix_attempts: int = 2
    max_retries: int = proposal.DEFAULT_TRANSPORT_RETRIES
    token_budget: int | None = None


def _number(name: str, raw: str | None, kind: type, minimum: float | None = None) -> Any:
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name}: must be >= {minimum:g}, got {raw!r}")
    return value


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    def pick(flag: Any, var: str) -> str | None:
        return str(flag) if flag is not None else env.get(var)

    base_url = pick(args.base_url, "DGM_LLM_BASE_URL")
    model = pick(args.model, "DGM_LLM_MODEL")
    if not base_url or not base_url.startswith(("http://", "https://")):
        raise SettingsError(f"DGM_LLM_BASE_URL (--base-url): an http(s) URL is required, got {base_url!r}")
    if not model:
        raise SettingsError("DGM_LLM_MODEL (--model): the model name is required")
    timeout = _number("DGM_LLM_TIMEOUT_SECONDS", pick(args.timeout_seconds, "DGM_LLM_TIMEOUT_SECONDS"), float, 0.001)
    fixes = _number("DGM_LLM_MAX_FIX_ATTEMPTS", pick(args.max_fix_attempts, "DGM_LLM_MAX_FIX_ATTEMPTS"), int, 0)
    retries = _number("DGM_LLM_MAX_RETRIES", pick(args.max_retries, "DGM_LLM_MAX_RETRIES"), int, 0)
    return Settings(
        base_url=base_url, model=model, api_key=env.get("DGM_LLM_API_KEY") or None,
        temperature=_number("DGM_LLM_TEMPERATURE", pick(args.temperature, "DGM_LLM_TEMPERATURE"), float, 0),
        max_tokens=_number("DGM_LLM_MAX_TOKENS", pick(args.max_tokens, "DGM_LLM_MAX_TOKENS"), int, 1),
        timeout_seconds=120.0 if timeout is None else timeout,
        max_fix_attempts=2 if fixes is None else fixes,
        max_retries=proposal.DEFAULT_TRANSPORT_RETRIES if retries is None else retries,
        token_budget=_number("DGM_LLM_TOKEN_BUDGET", pick(args.token_budget, "DGM_LLM_TOKEN_BUDGET"), int, 0),
    )


class ModelCallError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


class ChatModel:
    """One OpenAI-compatible chat endpoint. ``complete`` returns (text, usage, finish_reason)."""

    def __init__(self, settings: Settings):
        import openai  # imported here: the operator's own process never loads it

        self.openai = openai
        self.settings = settings
        self.client = openai.OpenAI(base_url=settings.base_url, api_key=settings.api_key or "unused",
                                    timeout=settings.timeout_seconds, max_retries=settings.max_retries)
        self.token_param = "max_tokens"
        self.send_temperature = settings.temperature is not None

    def _request(self, messages: Sequence[Mapping[str, str]]) -> Any:
        kwargs: dict[str, Any] = {"model": self.settings.model, "messages": list(messages)}
        if self.send_temperature:
            kwargs["temperature"] = self.settings.temperature
        if self.settings.max_tokens is not None:
            kwargs[self.token_param] = self.settings.max_tokens
        return self.client.chat.completions.create(**kwargs)

    def complete(self, messages: Sequence[Mapping[str, str]]) -> tuple[str, llm.Usage, str | None]:
        openai, s = self.openai, self.settings
        for _ in range(3):  # at most two parameter fallbacks, then the real answer
            try:
                response = self._request(messages)
                break
            except openai.BadRequestError as exc:
                text = str(exc)
                # Newer OpenAI models take max_completion_tokens and no temperature; older
                # servers (vLLM, Ollama, LiteLLM) take max_tokens. Switch once, say so.
                if self.token_param == "max_tokens" and "max_completion_tokens" in text and s.max_tokens is not None:
                    log.warning("the endpoint wants max_completion_tokens: switching")
                    self.token_param = "max_completion_tokens"
                    continue
                if self.send_temperature and "temperature" in text:
                    log.warning("the endpoint does not take a temperature: leaving it out")
                    self.send_temperature = False
                    continue
                raise ModelCallError("ModelRequestRejected", f"{s.base_url} rejected the request: {_brief(exc)}") from exc
            except openai.APITimeoutError as exc:
                raise ModelCallError("ModelTimeout", f"{s.base_url} did not answer within {s.timeout_seconds:g}s "
                                     f"({s.max_retries} retries)") from exc
            except openai.RateLimitError as exc:
                raise ModelCallError("ModelRateLimited", f"{s.base_url} still answered 429 after "
                                     f"{s.max_retries} retries: {_brief(exc)}") from exc
            except openai.APIStatusError as exc:
                raise ModelCallError("ModelError", f"{s.base_url} answered HTTP {exc.status_code}"
                                     f"{' after ' + str(s.max_retries) + ' retries' if exc.status_code >= 500 else ''}"
                                     f": {_brief(exc)}") from exc
            except openai.APIConnectionError as exc:
                raise ModelCallError("ModelUnreachable", f"{s.base_url} unreachable ({s.max_retries} retries): "
                                     f"{_brief(exc)}") from exc
            except (openai.OpenAIError, ValueError, TypeError) as exc:  # e.g. a body that is not JSON
                raise ModelCallError("ModelError", f"{s.base_url} answered something that is not a chat "
                                     f"completion: {type(exc).__name__}: {_brief(exc)}") from exc
        else:  # pragma: no cover - the loop always breaks or raises
            raise ModelCallError("ModelRequestRejected", "the endpoint rejected every request variant")
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise ModelCallError("ModelError", f"{s.base_url} answered with no choices")
        text = choices[0].message.content or ""
        raw_usage = response.usage.model_dump() if getattr(response, "usage", None) is not None else None
        return text, llm.usage_from_api(raw_usage, messages, text), choices[0].finish_reason


def _brief(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:400]


def _log_reply(label: str, text: str) -> None:
    shown = text if len(text) <= REPLY_LOG_LIMIT else text[:REPLY_LOG_LIMIT] + f"\n... [{len(text) - REPLY_LOG_LIMIT} more]"
    sys.stderr.write(f"----- {label} -----\n{shown}\n----- end of {label} -----\n")


def _usage_doc(usage: llm.Usage) -> proposal.ProposalUsage:
    return proposal.ProposalUsage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                                  total_tokens=usage.total_tokens, calls=usage.calls, estimated=usage.estimated)


def _failure_reason(error: llm.EditError) -> str:
    if isinstance(error, llm.EditFormatError):
        return "MalformedReply"
    if isinstance(error, llm.EditApplyError):
        return "EditDoesNotApply"
    return "EditBreaksRules"


def propose(ctx: proposal.ProposalContext, settings: Settings, model: Any, *, show_replies: bool = True) -> proposal.ProposalResult:
    """Diagnose, implement, fix (bounded); always returns a result, a failure included."""
    doc = ctx.to_wire()
    messages: list[dict[str, str]] = [llm.system_message(), llm.diagnose_message(doc)]
    usage = llm.Usage()
    budget = settings.token_budget

    def over_budget() -> bool:
        return budget is not None and usage.total_tokens >= budget

    def fail(reason: str, error: str) -> proposal.ProposalResult:
        log.warning("proposal failed (%s): %s", reason, error)
        return proposal.failure(reason, error, usage=_usage_doc(usage), model=settings.model, attempts=usage.calls)

    if budget is not None and budget <= 0:
        return fail("TokenBudgetExhausted", "no tokens left in today's budget (maxTokensPerDay)")
    try:
        diagnosis, used, _ = model.complete(messages)
        usage += used
        log.info("diagnose: %d prompt + %d completion tokens", used.prompt_tokens, used.completion_tokens)
        if show_replies:
            _log_reply("diagnosis", diagnosis)
        if not diagnosis.strip():
            return fail("MalformedReply", "the model's diagnosis was empty")
        if over_budget():
            return fail("TokenBudgetExhausted", f"the diagnosis used the {budget} tokens left in today's budget")
        messages += [{"role": "assistant", "content": diagnosis}, llm.implement_message()]
        files = ctx.parent.files
        error: llm.EditError | None = None
        for attempt in range(1, settings.max_fix_attempts + 2):
            reply, used, finish = model.complete(messages)
            usage += used
            log.info("implement (reply %d): %d prompt + %d completion tokens", attempt, used.prompt_tokens,
                     used.completion_tokens)
            if show_replies:
                _log_reply(f"reply {attempt}", reply)
            try:
                try:
                    changes = llm.apply_edits(files, llm.parse_edits(reply))
                except llm.EditFormatError as exc:
                    if finish == "length":
                        raise llm.EditFormatError(f"{exc} (the reply was cut at maxTokens "
                                                  f"{settings.max_tokens}: make the edits shorter)") from exc
                    raise
                proposal.preflight(changes, ctx.rules, base_files=files)
            except llm.EditError as exc:
                error = exc
                log.warning("reply %d cannot be used: %s", attempt, exc)
                if attempt > settings.max_fix_attempts:
                    break
                if over_budget():
                    return fail("TokenBudgetExhausted", f"today's budget ({budget} tokens) ran out after reply "
                                f"{attempt}, which could not be used: {exc}")
                messages += [{"role": "assistant", "content": reply}, llm.feedback_message(str(exc))]
                continue
            kind = llm.classify(files, changes, proposal.search_space_files(ctx.rules))
            return proposal.ProposalResult(
                description=llm.description_from(diagnosis), improvement_type=ImprovementType(kind),
                changes=changes, usage=_usage_doc(usage), model=settings.model, attempts=usage.calls)
        assert error is not None
        replies = settings.max_fix_attempts + 1
        return fail(_failure_reason(error), f"no usable edits after {replies} repl{'y' if replies == 1 else 'ies'}: {error}")
    except ModelCallError as exc:
        return fail(exc.reason, exc.message)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dgm propose-llm", description=__doc__.split("\n\n")[0])
    p.add_argument("--context", default=os.environ.get("DGM_PROPOSAL_CONTEXT", proposal.CONTEXT_PATH))
    p.add_argument("--out", default=os.environ.get("DGM_PROPOSAL_OUT"),
                   help="directory for result.json (default: print the result block on stdout)")
    p.add_argument("--base-url")
    p.add_argument("--model")
    p.add_argument("--temperature")
    p.add_argument("--max-tokens")
    p.add_argument("--timeout-seconds")
    p.add_argument("--max-fix-attempts")
    p.add_argument("--max-retries")
    p.add_argument("--token-budget")
    p.add_argument("--print-prompt", action="store_true",
                   help="print the first request's messages and their estimated tokens, call nothing")
    p.add_argument("--quiet", action="store_true", help="do not copy the model's replies to stderr")
    return p


def write_result(result: proposal.ProposalResult, out: str | None) -> None:
    if out:
        path = Path(out)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / ".result.json.tmp"
        tmp.write_text(json.dumps(result.to_wire(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path / "result.json")
    else:
        sys.stdout.write(proposal.render_result(result))
        sys.stdout.flush()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="propose-llm: %(message)s")
    log.setLevel(logging.INFO)
    args = _parser().parse_args(argv)
    try:
        ctx = proposal.load_context(Path(args.context).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        result = proposal.failure("InvalidContext", f"cannot read the context {args.context}: {exc}")
        return _finish(result, args.out)
    if args.print_prompt:
        messages = [llm.system_message(), llm.diagnose_message(ctx.to_wire())]
        for m in messages:
            sys.stdout.write(f"===== {m['role']} =====\n{m['content']}\n")
        prompt = sum(llm.estimate_tokens(m["content"]) for m in messages)
        sys.stdout.write(f"===== estimate =====\n{prompt} prompt tokens (UTF-8 bytes / {llm.CHARS_PER_TOKEN:g})\n")
        return 0
    try:
        settings = settings_from(args, os.environ)
    except SettingsError as exc:
        print(f"dgm propose-llm: {exc}", file=sys.stderr)
        return _finish(proposal.failure("InvalidSettings", str(exc)), args.out)
    log.info("model %s at %s; %d files; about %d prompt tokens", settings.model, settings.base_url,
             len(ctx.parent.files), llm.estimate_tokens(llm.render_context(ctx.to_wire())))
    try:
        result = propose(ctx, settings, ChatModel(settings), show_replies=not args.quiet)
    except Exception as exc:  # a bug or a surprise of the client: still a result, never a silent crash
        log.exception("the proposer crashed")
        result = proposal.failure("ProposerCrashed", f"{type(exc).__name__}: {exc}")
    return _finish(result, args.out)


def _finish(result: proposal.ProposalResult, out: str | None) -> int:
    try:
        write_result(result, out)
    except OSError as exc:
        print(f"dgm propose-llm: cannot write the result: {exc}", file=sys.stderr)
        return 1
    u = result.usage
    log.info("%s; tokens: %d prompt + %d completion = %d in %d calls", "done" if result.ok else f"failed ({result.reason})",
             u.prompt_tokens, u.completion_tokens, u.total_tokens, u.calls)
    return 0
