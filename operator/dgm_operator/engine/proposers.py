"""Proposers: (agent context, random.Random) -> a candidate draft.

All proposers share one interface, :class:`Proposer` (``propose(ctx, rng)``), and return a
:class:`~.types.CandidateDraft` whose `changes` hold the full new content of each changed
file (unchanged files are left out), starting from the selected parent's files.

* ``heuristic``: the seed's bottleneck rules on the parent's metrics (the baseline's when
  the parent has none): response_time > 1.0 -> slow_response, memory_usage > 0.8 ->
  high_memory, error_rate > 0.1 -> high_errors, accuracy < 0.8 -> low_accuracy; the
  improvement type from the seed's mapping. It moves every search-space parameter whose
  `hints` name a detected bottleneck in the hinted direction, by its `step` (or 10 % of the
  range), clamped, in the file's own format. With no bottleneck (or no hinted parameter
  that can still move) it falls back to a small parameter mutation.
* ``parameters``: samples declared parameters with Optuna (``sampler`` tpe, the default,
  cmaes or random), warm-started from the archive's evaluated candidates passed in
  ``AgentContext.trials`` (see :mod:`.sampling`); ``sampler: mutation`` mutates the
  parent's values instead (see :func:`mutate_parameters`).
* ``webhook``: asks an external service (an LLM, a person's tool, ...).

Webhook protocol: ``POST <url>`` with ``Content-Type: application/json`` and body::

    {
      "apiVersion": "dgm.io/v1alpha1",
      "kind": "ProposalRequest",
      "agent": "my-agent",
      "metrics": [{"name": "accuracy", "goal": "maximize", "weight": 1.0, "unit": null}],
      "baselineMetrics": {"accuracy": 0.71},
      "parent": {"name": "my-agent-c3", "files": {"config.yaml": "..."},
                 "metrics": {"accuracy": 0.74}},
      "searchSpace": [{"file": "config.yaml", "key": "retrieval.top_k", "type": "int",
                       "min": 1, "max": 20, "step": 1, "choices": [], "hints": {}}],
      "archive": {"size": 12, "eligible": 9, "bestScore": 0.08, "bestCandidate": "my-agent-c7"}
    }

(`parent.name` is null when the parent is the baseline). A 2xx reply must be a JSON object::

    {
      "improvementType": "ParameterTuning",     # or AlgorithmModification, ArchitectureChange,
                                                # ConfigurationUpdate
      "description": "raise top_k for recall",  # non-empty
      "changes": {"config.yaml": "full new content"},   # at least one file
      "expectedImprovement": 0.05,              # optional, default 0
      "riskLevel": 0.2,                         # optional, in [0, 1], default 0.5
      "image": null                             # optional new container image
    }

Unknown fields are rejected. A timeout, a connection error, a non-2xx status, a body that is
not JSON, or a reply that fails validation raise :class:`WebhookError` saying which.
"""

from __future__ import annotations

import json
import math
import random
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import configfiles, sampling
from .types import (
    ArchiveSummary,
    Bottleneck,
    CandidateDraft,
    ImprovementType,
    MetricSpec,
    ParameterSampler,
    ParamType,
    ProposerType,
    SearchParam,
)


class ProposerError(RuntimeError):
    """A proposer could not produce a candidate."""


class WebhookError(ProposerError):
    """The webhook proposer's call failed or its reply was invalid."""


@dataclass
class AgentContext:
    """Everything a proposer may look at. `parent_files` are the full file set of the
    selected parent (the baseline's files when `parent` is None)."""

    agent_name: str
    files: Mapping[str, str]
    metrics: Sequence[MetricSpec] = ()
    search_space: Sequence[SearchParam] = ()
    baseline_metrics: Mapping[str, float] = field(default_factory=dict)
    parent: str | None = None
    parent_files: Mapping[str, str] | None = None
    parent_metrics: Mapping[str, float] | None = None
    archive: ArchiveSummary | None = None
    # every evaluated archive member as (parameter values by "file:key", fitness), see
    # :func:`trial_params`; the Optuna samplers' history
    trials: Sequence[sampling.Trial] = ()

    @property
    def working_files(self) -> Mapping[str, str]:
        return self.parent_files if self.parent_files is not None else self.files

    @property
    def working_metrics(self) -> Mapping[str, float]:
        return self.parent_metrics if self.parent_metrics else self.baseline_metrics


class Proposer(Protocol):
    def propose(self, ctx: AgentContext, rng: random.Random) -> CandidateDraft: ...


# --- seed heuristics --------------------------------------------------------------------

BOTTLENECK_RULES: tuple[tuple[str, str, float, Bottleneck], ...] = (
    ("response_time", ">", 1.0, Bottleneck.SLOW_RESPONSE),
    ("memory_usage", ">", 0.8, Bottleneck.HIGH_MEMORY),
    ("error_rate", ">", 0.1, Bottleneck.HIGH_ERRORS),
    ("accuracy", "<", 0.8, Bottleneck.LOW_ACCURACY),
)


def detect_bottlenecks(metrics: Mapping[str, float] | None) -> list[Bottleneck]:
    found = []
    for name, op, limit, bottleneck in BOTTLENECK_RULES:
        value = (metrics or {}).get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if (op == ">" and value > limit) or (op == "<" and value < limit):
            found.append(bottleneck)
    return found


def select_improvement_type(bottlenecks: Sequence[Bottleneck | str]) -> ImprovementType:
    names = {Bottleneck(b) for b in bottlenecks}
    if Bottleneck.SLOW_RESPONSE in names or Bottleneck.HIGH_MEMORY in names:
        return ImprovementType.PARAMETER_TUNING
    if Bottleneck.LOW_ACCURACY in names:
        return ImprovementType.ALGORITHM_MODIFICATION
    if Bottleneck.HIGH_ERRORS in names:
        return ImprovementType.CONFIGURATION_UPDATE
    return ImprovementType.PARAMETER_TUNING


EXPECTED_AND_RISK = {
    ImprovementType.PARAMETER_TUNING: (0.15, 0.2),
    ImprovementType.ALGORITHM_MODIFICATION: (0.25, 0.4),
    ImprovementType.CONFIGURATION_UPDATE: (0.10, 0.1),
    ImprovementType.ARCHITECTURE_CHANGE: (0.30, 0.6),
}


# --- parameter values -------------------------------------------------------------------

def current_value(param: SearchParam, files: Mapping[str, str]) -> Any:
    """The parameter's value in `files`, or a default inside the space when absent/invalid."""
    text = files.get(param.file)
    value: Any = None
    if text is not None:
        try:
            value = configfiles.get_value(param.file, text, param.key)
        except (KeyError, configfiles.ConfigFileError):
            value = None
    return coerce(param, value)


def coerce(param: SearchParam, value: Any) -> Any:
    """`value` made valid for `param` (clamped, rounded, snapped); a default when unusable."""
    if param.type is ParamType.BOOL:
        return value if isinstance(value, bool) else False
    if param.type is ParamType.CHOICE:
        return value if isinstance(value, str) and value in param.choices else param.choices[0]
    lo, hi = float(param.min or 0.0), float(param.max or 0.0)  # int/float params always have both
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        value = (lo + hi) / 2
    value = min(hi, max(lo, float(value)))
    if param.step:
        value = lo + round((value - lo) / param.step) * param.step
        if value > hi + 1e-12:
            value -= param.step
        value = min(hi, max(lo, value))
    if param.type is ParamType.INT:
        value = int(round(value))
        value = min(int(math.floor(hi)), max(int(math.ceil(lo)), value))
        return value
    return round(value, 12)


def mutate_value(param: SearchParam, value: Any, rng: random.Random, scale: float = 0.15) -> Any:
    """A Gaussian-ish step of `scale` x range (at least one step/unit for ints), clamped;
    choices resampled among the others, bools flipped."""
    if param.type is ParamType.BOOL:
        return not bool(value)
    if param.type is ParamType.CHOICE:
        others = [c for c in param.choices if c != value]
        return rng.choice(others) if others else value
    span = param.span
    if span <= 0:
        return coerce(param, value)
    delta = rng.gauss(0.0, scale * span)
    quantum = param.step or (1 if param.type is ParamType.INT else 0)
    if quantum and abs(delta) < quantum:
        delta = math.copysign(quantum, delta if delta else rng.choice((-1, 1)))
    new = coerce(param, value + delta)
    if new == value and quantum:  # stuck against a bound: go the other way
        new = coerce(param, value - delta)
    return new


def render_changes(files: Mapping[str, str], updates: Mapping[tuple[str, str], Any]) -> dict[str, str]:
    """Write `updates` ((file, key) -> value) into the files; only changed files are returned."""
    by_file: dict[str, dict[str, Any]] = {}
    for (filename, key), value in updates.items():
        by_file.setdefault(filename, {})[key] = value
    changes = {}
    for filename, values in sorted(by_file.items()):
        old = files.get(filename, "")
        try:
            new = configfiles.set_values(filename, old, values)
        except configfiles.ConfigFileError as exc:
            raise ProposerError(str(exc)) from exc
        if new != old:
            changes[filename] = new
    return changes


def mutate_parameters(ctx: AgentContext, rng: random.Random, scale: float = 0.15,
                      rate: float | None = None) -> tuple[dict[str, str], list[str]]:
    """Mutate each parameter with probability `rate` (default 1/n, at least one)."""
    space = list(ctx.search_space)
    if not space:
        raise ProposerError("no search space declared: nothing to mutate")
    files = ctx.working_files
    rate = 1.0 / len(space) if rate is None else rate
    for _attempt in range(20):
        chosen = [p for p in space if rng.random() < rate] or [rng.choice(space)]
        updates, notes = {}, []
        for param in chosen:
            old = current_value(param, files)
            new = mutate_value(param, old, rng, scale)
            if new != old:
                updates[(param.file, param.key)] = new
                notes.append(f"{param.file}:{param.key} {old!r} -> {new!r}")
        changes = render_changes(files, updates) if updates else {}
        if changes:
            return changes, notes
    raise ProposerError("search space admits no change from the parent's values")


# --- proposers --------------------------------------------------------------------------

def trial_params(space: Sequence[SearchParam], files: Mapping[str, str]) -> dict[str, Any]:
    """The parameter values of one merged file set, by trial name (``file:key``)."""
    return {sampling.param_name(p): current_value(p, files) for p in space}


def sample_parameters(ctx: AgentContext, rng: random.Random,
                      sampler: ParameterSampler) -> tuple[dict[str, str], list[str]]:
    """Optuna's next point over the search space, written into the parent's files."""
    space = list(ctx.search_space)
    if not space:
        raise ProposerError("no search space declared: nothing to sample")
    files = ctx.working_files
    try:
        point = sampling.suggest(space, ctx.trials, rng.getrandbits(31), sampler)
    except sampling.SamplingError as exc:
        raise ProposerError(str(exc)) from exc
    updates, notes = {}, []
    for param in space:
        old = current_value(param, files)
        new = coerce(param, point[sampling.param_name(param)])
        if new != old:
            updates[(param.file, param.key)] = new
            notes.append(f"{param.file}:{param.key} {old!r} -> {new!r}")
    changes = render_changes(files, updates) if updates else {}
    return changes, notes


class ParametersProposer:
    def __init__(self, scale: float = 0.15, rate: float | None = None,
                 sampler: ParameterSampler | str = ParameterSampler.TPE) -> None:
        self.scale, self.rate, self.sampler = scale, rate, ParameterSampler(sampler)

    def propose(self, ctx: AgentContext, rng: random.Random) -> CandidateDraft:
        if self.sampler is not ParameterSampler.MUTATION:
            changes, notes = sample_parameters(ctx, rng, self.sampler)
            if changes:
                return CandidateDraft(
                    improvement_type=ImprovementType.PARAMETER_TUNING,
                    description=f"{self.sampler.value} sample: " + ", ".join(notes),
                    changes=changes, expected_improvement=0.05, risk_level=0.2, parent=ctx.parent,
                )
            # the sampler's point is the parent itself: a small mutation instead
        changes, notes = mutate_parameters(ctx, rng, self.scale, self.rate)
        return CandidateDraft(
            improvement_type=ImprovementType.PARAMETER_TUNING,
            description="parameter mutation: " + ", ".join(notes),
            changes=changes, expected_improvement=0.05, risk_level=0.2, parent=ctx.parent,
        )


class HeuristicProposer:
    def __init__(self, fraction: float = 0.1) -> None:
        self.fraction = fraction

    def propose(self, ctx: AgentContext, rng: random.Random) -> CandidateDraft:
        bottlenecks = detect_bottlenecks(ctx.working_metrics)
        kind = select_improvement_type(bottlenecks)
        files = ctx.working_files
        updates: dict[tuple[str, str], Any] = {}
        notes = []
        for param in ctx.search_space:
            directions = {param.hints[b.value] for b in bottlenecks if b.value in param.hints}
            if len(directions) != 1:
                continue  # not hinted, or contradictory hints
            direction = directions.pop()
            old = current_value(param, files)
            new = self._move(param, old, direction)
            if new != old:
                updates[(param.file, param.key)] = new
                notes.append(f"{direction} {param.file}:{param.key} {old!r} -> {new!r}")
        changes = render_changes(files, updates) if updates else {}
        if changes:
            expected, risk = EXPECTED_AND_RISK[kind]
            return CandidateDraft(
                improvement_type=kind,
                description=f"address {', '.join(b.value for b in bottlenecks)}: " + "; ".join(notes),
                changes=changes, expected_improvement=expected, risk_level=risk, parent=ctx.parent,
            )
        changes, mut_notes = mutate_parameters(ctx, rng, scale=0.1)
        why = ("no bottleneck detected" if not bottlenecks
               else f"no hinted parameter can move for {', '.join(b.value for b in bottlenecks)}")
        return CandidateDraft(
            improvement_type=ImprovementType.PARAMETER_TUNING,
            description=f"{why}; small parameter mutation: " + ", ".join(mut_notes),
            changes=changes, expected_improvement=0.02, risk_level=0.1, parent=ctx.parent,
        )

    def _move(self, param: SearchParam, value: Any, direction: str) -> Any:
        sign = 1 if direction == "increase" else -1
        if param.type is ParamType.BOOL:
            return direction == "increase"
        if param.type is ParamType.CHOICE:
            # choices are taken as ordered from "less" to "more"
            i = param.choices.index(value)
            return param.choices[min(len(param.choices) - 1, max(0, i + sign))]
        step = param.step or max(param.span * self.fraction, 1 if param.type is ParamType.INT else 0)
        return coerce(param, value + sign * step)


class _WebhookReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    improvementType: ImprovementType
    description: str = Field(min_length=1)
    changes: dict[str, str] = Field(min_length=1)
    expectedImprovement: float = 0.0
    riskLevel: float = Field(default=0.5, ge=0.0, le=1.0)
    image: str | None = None


def webhook_request(ctx: AgentContext) -> dict[str, Any]:
    """The documented request body (see the module docstring)."""
    summary = ctx.archive
    return {
        "apiVersion": "dgm.io/v1alpha1",
        "kind": "ProposalRequest",
        "agent": ctx.agent_name,
        "metrics": [{"name": m.name, "goal": m.goal.value, "weight": m.weight, "unit": m.unit} for m in ctx.metrics],
        "baselineMetrics": dict(ctx.baseline_metrics),
        "parent": {"name": ctx.parent, "files": dict(ctx.working_files),
                   "metrics": dict(ctx.parent_metrics or {})},
        "searchSpace": [
            {"file": p.file, "key": p.key, "type": p.type.value, "min": p.min, "max": p.max, "step": p.step,
             "choices": list(p.choices), "hints": dict(p.hints)}
            for p in ctx.search_space
        ],
        "archive": None if summary is None else {
            "size": summary.size, "eligible": summary.eligible,
            "bestScore": summary.best_score, "bestCandidate": summary.best_candidate,
        },
    }


class WebhookProposer:
    def __init__(self, url: str, timeout_seconds: float = 30.0, headers: Mapping[str, str] | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s), got {url!r}")
        self.url, self.timeout, self.headers = url, timeout_seconds, dict(headers or {})

    def propose(self, ctx: AgentContext, rng: random.Random) -> CandidateDraft:
        body = json.dumps(webhook_request(ctx)).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json", **self.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode("utf-8", "replace") if exc.fp else ""
            raise WebhookError(f"webhook {self.url} answered HTTP {exc.code} {exc.reason}: {detail}".rstrip(": ")) from exc
        except TimeoutError as exc:
            raise WebhookError(f"webhook {self.url} timed out after {self.timeout:g}s") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise WebhookError(f"webhook {self.url} timed out after {self.timeout:g}s") from exc
            raise WebhookError(f"webhook {self.url} unreachable: {exc.reason}") from exc
        except OSError as exc:
            raise WebhookError(f"webhook {self.url} failed: {exc}") from exc
        if not 200 <= status < 300:
            raise WebhookError(f"webhook {self.url} answered HTTP {status}")
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WebhookError(f"webhook {self.url} reply is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise WebhookError(f"webhook {self.url} reply must be a JSON object, got {type(payload).__name__}")
        try:
            reply = _WebhookReply.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'reply'}: {e['msg']}" for e in exc.errors())
            raise WebhookError(f"webhook {self.url} reply is invalid: {problems}") from exc
        return CandidateDraft(
            improvement_type=reply.improvementType, description=reply.description, changes=reply.changes,
            expected_improvement=reply.expectedImprovement, risk_level=reply.riskLevel, parent=ctx.parent,
            image=reply.image,
        )


def make_proposer(kind: ProposerType | str, settings: Mapping[str, Any] | None = None) -> Proposer:
    """Build a proposer from its type and settings (parameters: `sampler`, `scale`, `rate`;
    webhook: `url`, `timeout_seconds`, `headers`)."""
    kind = ProposerType(kind)
    settings = dict(settings or {})
    if kind is ProposerType.HEURISTIC:
        return HeuristicProposer(**settings)
    if kind is ProposerType.PARAMETERS:
        return ParametersProposer(**settings)
    if kind in (ProposerType.LLM, ProposerType.JOB):
        raise ProposerError(f"proposer {kind.value} runs as a proposal Job in the agent's namespace, "
                            "not in the operator's process (see engine/proposal.py)")
    if "url" not in settings:
        raise ValueError("webhook proposer needs a url")
    return WebhookProposer(**settings)
