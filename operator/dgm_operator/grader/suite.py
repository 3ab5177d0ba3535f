"""Task suites: what the grader asks an agent, what it expects back, and how it compares.

A suite is a YAML (or JSON) file; ``docs/grader.md`` is the user-facing reference::

    name: my-suite
    defaults:                       # optional; each task may override
      scoring: {rule: contains, ignoreCase: true}
      timeoutSeconds: 20
    subsets:                        # optional named subsets, for stage args (--subset quick)
      quick: "sample:25"
    tasks:
      - id: capital-fr
        input: "What is the capital of France?"
        expected: Paris             # a string, or a list of accepted strings
        scoring: exact              # exact | contains | regex, or {rule: ..., ignoreCase: ...}
        timeoutSeconds: 5
        metadata: {topic: geo}      # free-form, never sent to the agent

Nothing here knows any particular agent: a suite is data, written by the people who own the
evaluation, and baked into the evaluation (grader) image where candidates cannot change it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_SUITE_BYTES = 16 * 1024 * 1024
MAX_TASKS = 100_000
DEFAULT_TIMEOUT_SECONDS = 30.0
TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"
_SUBSET_SPEC = re.compile(r"^(all|first:(\d+)|sample:(\d+))$")


class SuiteError(ValueError):
    """A task suite that cannot be used, with the file, the field and the rule in the message."""


class Scoring(BaseModel):
    """How a task's answer is compared with its expected value(s)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    rule: Literal["exact", "contains", "regex"] = Field(
        description="exact: the whole answer (surrounding white space ignored) equals an expected value; "
                    "contains: an expected value occurs in the answer; regex: an expected value, as a Python "
                    "regular expression, matches somewhere in the answer (re.search).")
    ignore_case: bool = Field(False, alias="ignoreCase", description="Compare case-insensitively.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"rule": value} if isinstance(value, str) else value


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    scoring: Scoring = Field(default_factory=lambda: Scoring.model_validate({"rule": "exact"}))
    timeout_seconds: float = Field(DEFAULT_TIMEOUT_SECONDS, alias="timeoutSeconds", gt=0, le=3600)


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=TASK_ID_PATTERN, description="Unique within the suite.")
    input: str = Field(min_length=1, max_length=1_000_000, description="Text sent to the agent.")
    expected: Union[str, list[str]] = Field(description="Accepted answer(s); a task passes when any one matches.")
    scoring: Scoring | None = None
    timeout_seconds: float | None = Field(None, alias="timeoutSeconds", gt=0, le=3600)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("expected")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        values = [value] if isinstance(value, str) else value
        if not values:
            raise ValueError("must name at least one accepted answer")
        if any(not v for v in values):
            raise ValueError("an expected value must not be empty (it would match every answer)")
        return value


class SuiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field("suite", min_length=1, max_length=253)
    description: str = ""
    defaults: Defaults = Field(default_factory=lambda: Defaults.model_validate({}))
    subsets: dict[str, Union[str, list[str]]] = Field(default_factory=dict)
    tasks: list[TaskSpec] = Field(min_length=1, max_length=MAX_TASKS)


@dataclass(frozen=True)
class Task:
    """A task with its scoring and timeout resolved against the suite's defaults."""

    id: str
    input: str
    expected: tuple[str, ...]
    scoring: Scoring
    timeout_seconds: float
    metadata: Mapping[str, Any]

    def passes(self, answer: str | None) -> bool:
        return answer is not None and any(matches(answer, e, self.scoring) for e in self.expected)


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[Task, ...]
    subsets: Mapping[str, str | tuple[str, ...]]


def matches(answer: str, expected: str, scoring: Scoring) -> bool:
    """Whether ``answer`` satisfies one ``expected`` value under ``scoring``."""
    if scoring.rule == "regex":
        return re.search(expected, answer, re.IGNORECASE if scoring.ignore_case else 0) is not None
    a, e = (answer.casefold(), expected.casefold()) if scoring.ignore_case else (answer, expected)
    if scoring.rule == "exact":
        return a.strip() == e.strip()
    return e in a


def _where(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_suite(data: Any, source: str = "suite") -> Suite:
    """Validate suite data (already parsed from YAML/JSON) into a :class:`Suite`."""
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: a task suite must be a mapping with a 'tasks' list, got {type(data).__name__}")
    try:
        spec = SuiteSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise SuiteError(f"{source}: {_where(first['loc'])}: {first['msg']}{more}") from None
    tasks: list[Task] = []
    seen: set[str] = set()
    for i, t in enumerate(spec.tasks):
        if t.id in seen:
            raise SuiteError(f"{source}: tasks[{i}].id: {t.id!r} is used by an earlier task; ids must be unique")
        seen.add(t.id)
        scoring = t.scoring or spec.defaults.scoring
        expected = (t.expected,) if isinstance(t.expected, str) else tuple(t.expected)
        if scoring.rule == "regex":
            for e in expected:
                try:
                    re.compile(e)
                except re.error as err:
                    raise SuiteError(f"{source}: tasks[{i}].expected: {e!r} is not a valid regular expression ({err})") from None
        tasks.append(Task(t.id, t.input, expected, scoring, t.timeout_seconds or spec.defaults.timeout_seconds,
                          dict(t.metadata)))
    subsets: dict[str, str | tuple[str, ...]] = {}
    for name, sub in spec.subsets.items():
        if isinstance(sub, str):
            if not _SUBSET_SPEC.match(sub):
                raise SuiteError(f"{source}: subsets.{name}: {sub!r} is not one of all, first:N, sample:N")
            subsets[name] = sub
        else:
            unknown = [s for s in sub if s not in seen]
            if unknown:
                raise SuiteError(f"{source}: subsets.{name}: unknown task id(s) {unknown[:5]}")
            subsets[name] = tuple(sub)
    return Suite(spec.name, tuple(tasks), subsets)


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that rejects duplicate mapping keys (a silently dropped task is a wrong grade)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        keys.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file (YAML or JSON); raises :class:`SuiteError`."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_SUITE_BYTES:
            raise SuiteError(f"{p}: the suite is {size} bytes; at most {MAX_SUITE_BYTES} are read")
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteError(f"{p}: cannot read the task suite: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{p}: the task suite is not UTF-8 text ({exc.reason})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SuiteError(f"{p}: not valid YAML/JSON: {exc}") from None
    return parse_suite(data, str(p))


def select_tasks(suite: Suite, subset: str | None = None, *, seed: int = 0, limit: int | None = None) -> list[Task]:
    """The tasks a stage runs.

    ``subset``: a name from the suite's ``subsets``, or ``all``, ``first:N`` or ``sample:N`` (a
    deterministic shuffle with ``seed``, then the first N). ``limit`` then keeps the first N.
    """
    tasks = list(suite.tasks)
    spec: str | tuple[str, ...] = "all" if subset is None else suite.subsets.get(subset, subset)
    if isinstance(spec, tuple):
        wanted = set(spec)
        tasks = [t for t in tasks if t.id in wanted]
    else:
        m = _SUBSET_SPEC.match(spec)
        if not m:
            names = ", ".join(sorted(suite.subsets)) or "none"
            raise SuiteError(f"--subset: {spec!r} is neither a subset of the suite ({names}) nor all, first:N, sample:N")
        if m.group(2) is not None:
            tasks = tasks[: int(m.group(2))]
        elif m.group(3) is not None:
            random.Random(seed).shuffle(tasks)
            tasks = tasks[: int(m.group(3))]
    if limit is not None:
        if limit < 1:
            raise SuiteError(f"--limit: must be at least 1, got {limit}")
        tasks = tasks[:limit]
    if not tasks:
        raise SuiteError(f"--subset: {subset!r} selects no task")
    return tasks
