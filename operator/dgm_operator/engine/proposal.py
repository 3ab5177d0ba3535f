"""The proposal Job's contract, as pure data: its input, its output, its budget and deadline.

A proposal (``spec.proposer.type: llm`` or ``job``) runs as a Job in the agent's namespace, so
the operator never holds a model key. This module says what goes in and what comes out; the
Job manifest is in ``controller/proposal_builders.py`` and the program that calls the model in
``proposal/``.

Input: :class:`ProposalContext`, one JSON document mounted read-only at
``/proposal/context.json`` (apiVersion ``dgm.io/v1alpha1``, kind ``ProposalContext``;
schema in docs/llm-proposer.md). It is bounded (:func:`fit_context`) to fit a ConfigMap.

Output: :class:`ProposalResult`, one JSON document (kind ``ProposalResult``) printed on one
line between :data:`BEGIN` and :data:`END` marker lines by the Job's ``result`` container,
which only our own code writes to. The operator reads that container's log (``pods/log``)
and parses it with :func:`parse_result_log`: size-bounded, exactly one block, strict schema.
A failed proposal is a result too (``error`` and ``reason`` set), so the tokens it spent
are still counted.

Budget: :func:`token_budget_exhausted` is the pure policy behind ``maxTokensPerDay``; the
ledger is one counter per agent and UTC day (:func:`charge`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, Final, Literal, Mapping, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from . import llm, policies, pyanalysis, safety
from .policies import Decision
from .types import ImprovementType, ParamType, SearchParam

API_VERSION: Final = "dgm.io/v1alpha1"
CONTEXT_KIND: Final = "ProposalContext"
RESULT_KIND: Final = "ProposalResult"

CONTEXT_PATH = "/proposal/context.json"
OUT_DIR = "/proposal/out"

BEGIN = "-----BEGIN DGM PROPOSAL RESULT-----"
END = "-----END DGM PROPOSAL RESULT-----"

#: a ConfigMap holds 1 MiB; leave room for its metadata
MAX_CONTEXT_BYTES = 900 * 1024
#: what the operator reads of the result container's log
MAX_RESULT_LOG_BYTES = 1024 * 1024
#: description and error fields of a result
MAX_TEXT = 8192

CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
#: the candidate CRD's limit on spec.changes
MAX_CHANGED_FILES = 256
REASON = re.compile(r"^[A-Z][A-Za-z0-9]*$")


class _Doc(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# ------------------------------------------------------------------------------ the context


class ContextMetric(_Doc):
    name: str
    goal: Literal["maximize", "minimize"] = "maximize"
    weight: float = 1.0
    unit: Optional[str] = None


class Objective(_Doc):
    metrics: list[ContextMetric]
    min_improvement: Optional[float] = None


class ContextBaseline(_Doc):
    revision: Optional[int] = None
    metrics: dict[str, float] = Field(default_factory=dict)


class ParentEvaluation(_Doc):
    tests: Optional[dict[str, Any]] = None  # the grader's `tests` object (per-task failures)


class ContextParent(_Doc):
    name: Optional[str] = None  # None: the agent's current revision
    description: Optional[str] = None
    files: dict[str, str]
    metrics: dict[str, float] = Field(default_factory=dict)
    score: Optional[float] = None
    evaluation: Optional[ParentEvaluation] = None


class LineageEntry(_Doc):
    name: str
    parent: Optional[str] = None
    phase: Optional[str] = None
    reason: Optional[str] = None
    message: Optional[str] = None
    score: Optional[float] = None
    description: Optional[str] = None
    diff: Optional[str] = None  # unified diff against its parent's files (bounded)


class ContextParameter(_Doc):
    file: str
    key: str
    type: Literal["int", "float", "choice", "bool"]
    min: Optional[float] = None
    max: Optional[float] = None
    step: Optional[float] = None
    choices: Optional[list[str]] = None


class Rules(_Doc):
    allowed_files: list[str] = Field(default_factory=lambda: ["**"])
    protected_files: list[str] = Field(default_factory=list)
    max_change_bytes: int = 65536
    max_files: int = 64
    allowed_imports: list[str] = Field(default_factory=list)
    safety_threshold: float = 0.8
    search_space: list[ContextParameter] = Field(default_factory=list)
    rejected: list[str] = Field(default_factory=list)  # what the safety analysis rejects, in words


class ProposalContext(_Doc):
    """``/proposal/context.json``: everything a proposer may look at."""

    api_version: Literal["dgm.io/v1alpha1"] = API_VERSION
    kind: Literal["ProposalContext"] = CONTEXT_KIND
    agent: str
    namespace: str
    proposal: str  # the name the resulting candidate gets
    objective: Objective
    baseline: ContextBaseline = Field(default_factory=ContextBaseline)
    parent: ContextParent
    lineage: list[LineageEntry] = Field(default_factory=list)
    rules: Rules = Field(default_factory=Rules)


def safety_rule_lines() -> list[str]:
    """What the static safety analysis (engine.safety) rejects, in words for a model."""
    builtins = sorted(k for k, v in pyanalysis.DANGEROUS_BUILTINS.items() if v == pyanalysis.FORBIDDEN)
    members = sorted(m for m, (kind, _) in pyanalysis.FORBIDDEN_MEMBERS.items() if kind == pyanalysis.FORBIDDEN)
    examples = [m for m in ("subprocess", "socket", "importlib", "inspect", "pickle", "threading", "shutil")
                if m in safety.FORBIDDEN_MODULES]
    return [
        f"Never reference (not even without calling) {', '.join(builtins)}; getattr, setattr and "
        "delattr only with a literal name; type() only with one argument.",
        f"Never use members that run processes or reach the interpreter ({len(members)} of them, e.g. "
        f"{', '.join(m for m in members if m in ('os.system', 'os.popen', 'os.environ', 'sys.modules'))}).",
        f"Never import process, network, import-system, introspection or serialisation modules "
        f"({', '.join(examples)}, ...), private modules, or names starting with '_' from a module.",
        "No dunder attributes other than plain data (__name__, __class__, __dict__, ...) and data-model "
        "methods; no frame or code internals (f_globals, gi_frame, co_code, ...); no module used as a "
        "value or patched (json.dumps = f).",
        "Do not write files (open() for writing is rejected); no new .py file named like a standard module.",
        "Python files are UTF-8 without another coding cookie and without bidirectional control characters.",
        "YAML and JSON files stay valid: one document, no duplicate keys, no unknown tags.",
    ]


def fit_context(ctx: ProposalContext, limit: int = MAX_CONTEXT_BYTES) -> ProposalContext:
    """``ctx`` within ``limit`` bytes of JSON: lineage diffs go first, then the lineage, then
    the grader's tests. Raises ValueError when the parent's files alone do not fit."""
    def size(c: ProposalContext) -> int:
        return len(json.dumps(c.to_wire(), separators=(",", ":")).encode())

    if size(ctx) <= limit:
        return ctx
    ctx = ctx.model_copy(deep=True)
    for entry in ctx.lineage:
        entry.diff = None
    if size(ctx) <= limit:
        return ctx
    ctx.lineage = []
    if size(ctx) <= limit:
        return ctx
    ctx.parent.evaluation = None
    if size(ctx) <= limit:
        return ctx
    raise ValueError(f"the proposal context needs {size(ctx)} bytes with the parent's files alone, "
                     f"more than the {limit} a ConfigMap can carry")


def context_document(ctx: ProposalContext) -> str:
    """The JSON text of the ConfigMap key ``context.json``."""
    return json.dumps(ctx.to_wire(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def load_context(text: str) -> ProposalContext:
    """Parse ``context.json``; ValueError naming the field and the rule on bad input."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"context.json is not JSON: {exc}") from exc
    try:
        return ProposalContext.model_validate(data)
    except ValidationError as exc:
        raise ValueError("context.json is invalid: " + _problems(exc)) from exc


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors()[:8])


def safety_policy(rules: Rules) -> safety.SafetyPolicy:
    params = tuple(SearchParam(file=p.file, key=p.key, type=ParamType(p.type), min=p.min, max=p.max, step=p.step,
                               choices=tuple(p.choices or ())) for p in rules.search_space)
    return safety.SafetyPolicy(
        allowed_files=tuple(rules.allowed_files or ["**"]),
        protected_files=tuple(rules.protected_files),
        max_change_bytes=rules.max_change_bytes,
        max_files=rules.max_files,
        allowed_imports=frozenset(rules.allowed_imports) if rules.allowed_imports else safety.DEFAULT_ALLOWED_IMPORTS,
        search_space=params,
    )


def preflight(changes: Mapping[str, str], rules: Rules, base_files: Mapping[str, str] | None = None) -> None:
    """Raise :class:`~.llm.EditRuleError` when the operator's safety analysis would reject
    ``changes`` on top of ``base_files`` (the parent's files), as the operator analyses the
    merged workspace. The operator still runs it: this only saves an evaluation and tells the
    model why, so it can fix the change."""
    bad = [n for n in changes if not CONFIGMAP_KEY.match(n)]
    if bad:
        raise llm.EditRuleError(f"file names must be plain ConfigMap keys (letters, digits, '-', '_', '.'): "
                                f"{', '.join(bad)}")
    llm.check_files(changes, rules.allowed_files or ["**"], rules.protected_files)
    report = safety.analyze(changes, safety_policy(rules), base_files=base_files)
    if report.score < rules.safety_threshold:
        raise llm.EditRuleError(f"the safety analysis rejects the change (score {report.score:.2f} < "
                                f"{rules.safety_threshold:.2f}): {report.summary(limit=5)}")


# ------------------------------------------------------------------------------- the result


class ProposalUsage(_Doc):
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    total_tokens: int = Field(0, ge=0)
    calls: int = Field(0, ge=0)
    estimated: bool = False


class ProposalResult(_Doc):
    """What a proposal Job returns: a change, or an error. Tokens are reported either way."""

    api_version: Literal["dgm.io/v1alpha1"] = API_VERSION
    kind: Literal["ProposalResult"] = RESULT_KIND
    description: str = Field("", max_length=MAX_TEXT)
    improvement_type: Optional[ImprovementType] = None
    changes: dict[str, str] = Field(default_factory=dict)
    expected_improvement: Optional[float] = None
    risk_level: Optional[float] = Field(None, ge=0.0, le=1.0)
    usage: ProposalUsage = Field(default_factory=ProposalUsage)
    model: Optional[str] = Field(None, max_length=256)
    attempts: int = Field(0, ge=0)
    error: Optional[str] = Field(None, max_length=MAX_TEXT)
    reason: Optional[str] = Field(None, max_length=64, pattern=REASON.pattern)

    @model_validator(mode="after")
    def _change_or_error(self) -> "ProposalResult":
        if self.error:
            if self.changes:
                raise ValueError("a result with an error carries no changes")
            return self
        if not self.changes:
            raise ValueError("a result without an error needs at least one changed file in changes")
        if len(self.changes) > MAX_CHANGED_FILES:
            raise ValueError(f"changes: at most {MAX_CHANGED_FILES} files, got {len(self.changes)}")
        bad = sorted(name for name in self.changes if not CONFIGMAP_KEY.match(name))[:5]
        if bad:
            raise ValueError(f"changes: file names are ConfigMap keys (letters, digits, '-', '_', '.'; "
                             f"no directories): {', '.join(repr(b) for b in bad)}")
        if not self.description.strip():
            raise ValueError("a result with changes needs a non-empty description")
        return self

    @property
    def ok(self) -> bool:
        return not self.error


class ResultError(ValueError):
    """The proposal Job's output cannot be read; the message says why."""


def render_result(result: ProposalResult) -> str:
    """The result block: the markers on their own lines, the JSON on one line between them
    (a JSON string cannot hold a raw newline, so no content can forge a marker line)."""
    body = json.dumps(result.to_wire(), separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    return f"{BEGIN}\n{body}\n{END}\n"


def failure(reason: str, error: str, *, usage: ProposalUsage | None = None, model: str | None = None,
            attempts: int = 0) -> ProposalResult:
    return ProposalResult(error=llm.truncate(error, MAX_TEXT - 100) or reason, reason=reason,
                          usage=usage or ProposalUsage(), model=model, attempts=attempts)


def parse_result_log(log: str | bytes, limit: int = MAX_RESULT_LOG_BYTES) -> ProposalResult:
    """The one result block of the result container's log. Raises :class:`ResultError` when
    the log is larger than ``limit`` bytes, holds no block, holds two, is cut inside one, or
    when the document is not JSON or breaks the schema."""
    raw = log.encode("utf-8", "replace") if isinstance(log, str) else bytes(log)
    if len(raw) > limit:
        raise ResultError(f"the proposal's output is larger than {limit} bytes")
    lines = [line.rstrip("\r ") for line in raw.decode("utf-8", "replace").split("\n")]
    begins = [i for i, line in enumerate(lines) if line == BEGIN]
    ends = [i for i, line in enumerate(lines) if line == END]
    if not begins:
        raise ResultError("the proposal printed no result block")
    if len(begins) > 1 or len(ends) > 1:
        raise ResultError(f"the proposal printed {max(len(begins), len(ends))} result blocks; exactly one is allowed")
    if not ends or ends[0] < begins[0]:
        raise ResultError("the proposal's result block is not terminated (the output was cut)")
    body = "\n".join(lines[begins[0] + 1:ends[0]]).strip()
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ResultError(f"the proposal's result is not JSON: {exc}") from exc
    return validate_result(data)


def validate_result(data: Any) -> ProposalResult:
    if not isinstance(data, dict):
        raise ResultError(f"the proposal's result must be a JSON object, got {type(data).__name__}")
    try:
        return ProposalResult.model_validate(data)
    except ValidationError as exc:
        raise ResultError("the proposal's result is invalid: " + _problems(exc)) from exc


# ------------------------------------------------------------------------------- the budget


def utc_day(now: dt.datetime) -> str:
    return now.astimezone(dt.timezone.utc).date().isoformat()


def next_utc_day(now: dt.datetime) -> dt.datetime:
    day = now.astimezone(dt.timezone.utc).date() + dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def tokens_today(ledger: Mapping[str, Any] | None, now: dt.datetime) -> int:
    """Tokens spent on ``now``'s UTC day, from the agent's ledger ``{day, used}``."""
    if not ledger or ledger.get("day") != utc_day(now):
        return 0
    return int(ledger.get("used") or 0)


#: proposal Jobs remembered in the ledger, so a Job read twice (after a restart) counts once
CHARGED_MEMORY = 32


def charge(ledger: Mapping[str, Any] | None, tokens: int, now: dt.datetime, job: str | None = None) -> dict[str, Any]:
    """The ledger ``{day, used, total, charged}`` after proposal Job ``job`` spent ``tokens``
    at ``now``. A new UTC day starts ``used`` from zero; a Job already in ``charged`` is not
    counted again (idempotent)."""
    ledger = dict(ledger or {})
    charged = list(ledger.get("charged") or [])
    if job is not None and job in charged:
        return ledger
    tokens = max(0, int(tokens))
    out: dict[str, Any] = {"day": utc_day(now), "used": tokens_today(ledger, now) + tokens,
                           "total": int(ledger.get("total") or 0) + tokens}
    if job is not None:
        charged.append(job)
    if charged:
        out["charged"] = charged[-CHARGED_MEMORY:]
    return out


def remaining_tokens(used_today: int, max_per_day: int | None) -> int | None:
    return None if max_per_day is None else max(0, max_per_day - used_today)


def token_budget_exhausted(used_today: int, max_per_day: int | None, now: dt.datetime) -> Decision | None:
    """The policy behind ``spec.proposer.llm.maxTokensPerDay`` (:func:`.policies.token_budget_exhausted`,
    part of the PROPOSAL_CHAIN) on plain values."""
    return policies.token_budget_exhausted(policies.Facts(tokens_today=used_today, max_tokens_per_day=max_per_day,
                                                          now=now))


# ------------------------------------------------------------------------------ the deadline

#: retries of one request on 429, 5xx, timeouts and connection errors (the client's backoff)
DEFAULT_TRANSPORT_RETRIES = 3
#: the time a retry may wait (the client's exponential backoff tops out at 8 s)
RETRY_WAIT_ALLOWANCE = 10
#: pulling the image and starting the pod
STARTUP_ALLOWANCE = 120


def model_calls(max_fix_attempts: int) -> int:
    """Calls of one LLM proposal at most: diagnose, implement, and each fix."""
    return 2 + max(0, max_fix_attempts)


def proposal_deadline_seconds(timeout_seconds: int, max_fix_attempts: int,
                              transport_retries: int = DEFAULT_TRANSPORT_RETRIES) -> int:
    """``activeDeadlineSeconds`` of an LLM proposal Job: every call may time out on every try."""
    per_call = timeout_seconds * (1 + transport_retries) + RETRY_WAIT_ALLOWANCE * transport_retries
    return STARTUP_ALLOWANCE + model_calls(max_fix_attempts) * per_call


def result_from_files(files: Mapping[str, str], description: str, *, parent_files: Mapping[str, str],
                      usage: ProposalUsage | None = None) -> ProposalResult:
    """A result from a directory of changed files (the ``type: job`` output contract):
    files identical to the parent's are left out."""
    changes = {k: v for k, v in sorted(files.items()) if parent_files.get(k) != v}
    if not changes:
        return failure("NoChange", "the proposer wrote no file that differs from the parent's", usage=usage)
    return ProposalResult(description=description.strip() or "proposal of a coding-agent Job", changes=changes,
                          improvement_type=ImprovementType(llm.classify(parent_files, changes)),
                          usage=usage or ProposalUsage())


def search_space_files(rules: Rules) -> list[str]:
    return sorted({p.file for p in rules.search_space})


def bounded_tests(tests: Mapping[str, Any] | None, limit: int = llm.PROMPT_TESTS_LIMIT) -> dict[str, Any] | None:
    """The grader's ``tests`` object when its JSON fits ``limit`` bytes, else a note saying so
    with the list-free keys kept (lists of failures are what grows)."""
    if not tests:
        return None
    if len(json.dumps(tests)) <= limit:
        return dict(tests)
    small = {k: v for k, v in tests.items() if not isinstance(v, (list, dict))}
    small["truncated"] = True
    return small if len(json.dumps(small)) <= limit else {"truncated": True}


def lineage_entries(parent_files: Mapping[str, str], children: Sequence[Mapping[str, Any]],
                    limit: int = llm.PROMPT_LINEAGE_LIMIT) -> list[LineageEntry]:
    """Lineage entries for the prompt from plain candidate dicts (``name``, ``phase``, ``reason``,
    ``message``, ``score``, ``description``, ``changes``, ``created``), newest first."""
    ordered = sorted(children, key=lambda c: c.get("created") or 0, reverse=True)[:limit]
    out = []
    for c in ordered:
        out.append(LineageEntry(
            name=str(c["name"]), parent=c.get("parent"), phase=c.get("phase"), reason=c.get("reason"),
            message=llm.truncate(str(c["message"]), 400) if c.get("message") else None,
            score=c.get("score"),
            description=llm.truncate(str(c["description"]), 400) if c.get("description") else None,
            diff=llm.unified_diff(parent_files, c.get("changes") or {}) or None,
        ))
    return out
