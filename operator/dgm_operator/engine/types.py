"""Small input/output types of the engine (snake_case mirror of docs/CONTRACTS.md).

The enumeration *values* are the exact strings of the API (CamelCase phases and
improvement types, lower-case goals and selection methods) so the operator can pass
them through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ImprovementType(str, Enum):
    PARAMETER_TUNING = "ParameterTuning"
    ALGORITHM_MODIFICATION = "AlgorithmModification"
    ARCHITECTURE_CHANGE = "ArchitectureChange"
    CONFIGURATION_UPDATE = "ConfigurationUpdate"


class Phase(str, Enum):
    PROPOSED = "Proposed"
    TESTING = "Testing"
    VALIDATED = "Validated"
    APPLIED = "Applied"
    REJECTED = "Rejected"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"


class Goal(str, Enum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


class SelectionMethod(str, Enum):
    """Parent selection methods (see :mod:`.selection` for each rule and its source)."""

    DGM = "dgm"
    GREEDY = "greedy"
    RANDOM = "random"
    HGM = "hgm"
    ADAPTIVE = "adaptive"
    ELITE = "elite"


class ParameterSampler(str, Enum):
    """How the ``parameters`` proposer picks values (see :mod:`.sampling`)."""

    TPE = "tpe"
    CMAES = "cmaes"
    RANDOM = "random"
    MUTATION = "mutation"


class StagePromotion(str, Enum):
    """Which children of a cheap stage run the next one (see :func:`.scoring.rank_decision`)."""

    RANK = "rank"
    THRESHOLD = "threshold"


class ProposerType(str, Enum):
    HEURISTIC = "heuristic"
    PARAMETERS = "parameters"
    WEBHOOK = "webhook"
    LLM = "llm"  # an OpenAI-compatible model, called from a proposal Job
    JOB = "job"  # a user's own coding-agent image, run as a proposal Job


class Bottleneck(str, Enum):
    SLOW_RESPONSE = "slow_response"
    HIGH_MEMORY = "high_memory"
    HIGH_ERRORS = "high_errors"
    LOW_ACCURACY = "low_accuracy"


class Severity(str, Enum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class ParamType(str, Enum):
    INT = "int"
    FLOAT = "float"
    CHOICE = "choice"
    BOOL = "bool"


@dataclass(frozen=True)
class MetricSpec:
    """`{name, goal, weight (default 1.0), unit (optional)}`."""

    name: str
    goal: Goal = Goal.MAXIMIZE
    weight: float = 1.0
    unit: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "goal", Goal(self.goal))
        if self.weight < 0:
            raise ValueError(f"metric {self.name!r}: weight must be >= 0, got {self.weight}")


@dataclass(frozen=True)
class SearchParam:
    """One declared search-space parameter (`spec.proposer.searchSpace[]`).

    `hints` maps a bottleneck name to "increase" or "decrease".
    """

    file: str
    key: str
    type: ParamType
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    hints: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", ParamType(self.type))
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "hints", dict(self.hints))
        if self.type in (ParamType.INT, ParamType.FLOAT):
            if self.min is None or self.max is None:
                raise ValueError(f"{self.file}:{self.key}: {self.type.value} needs min and max")
            if self.min > self.max:
                raise ValueError(f"{self.file}:{self.key}: min {self.min} > max {self.max}")
            if self.step is not None and self.step <= 0:
                raise ValueError(f"{self.file}:{self.key}: step must be > 0")
        if self.type is ParamType.CHOICE and not self.choices:
            raise ValueError(f"{self.file}:{self.key}: choice needs choices")
        for bottleneck, direction in self.hints.items():
            if direction not in ("increase", "decrease"):
                raise ValueError(
                    f"{self.file}:{self.key}: hint for {bottleneck!r} must be "
                    f"'increase' or 'decrease', got {direction!r}"
                )

    @property
    def span(self) -> float:
        return float(self.max - self.min) if self.min is not None and self.max is not None else 0.0


@dataclass
class CandidateRecord:
    """What the archive needs to know about one candidate (or the baseline).

    `parent` None/"" means "from the baseline". `reason` is the last decision's reason
    (it tells a safety rejection from an insufficient-improvement one). `score` is the
    absolute fitness (:func:`.scoring.fitness`), None when never evaluated. `created` orders
    records by age (a timestamp or a sequence number).
    """

    name: str
    parent: str | None = None
    phase: Phase = Phase.PROPOSED
    metrics: dict[str, float] = field(default_factory=dict)
    score: float | None = None
    stage_reached: int | None = None
    reason: str | None = None
    created: float = 0.0
    is_baseline: bool = False

    def __post_init__(self) -> None:
        self.phase = Phase(self.phase)


@dataclass(frozen=True)
class ArchiveSummary:
    size: int  # candidates in the archive (the baseline not counted)
    eligible: int  # eligible parents, the baseline included
    best_score: float | None
    best_candidate: str | None


class CandidateDraft(BaseModel):
    """A proposer's output; the operator turns it into an ImprovementCandidate."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    improvement_type: ImprovementType
    description: str = Field(min_length=1)
    changes: dict[str, str]
    expected_improvement: float = 0.0
    risk_level: float = Field(default=0.5, ge=0.0, le=1.0)
    parent: str | None = None
    image: str | None = None

    @field_validator("changes")
    @classmethod
    def _non_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("changes must name at least one file")
        return value


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    file: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity.value, "file": self.file, "message": self.message}


@dataclass(frozen=True)
class SafetyReport:
    score: float
    findings: tuple[Finding, ...]

    def summary(self, limit: int = 3) -> str:
        parts = [f"[{f.severity.value}] {f.rule}" + (f" in {f.file}" if f.file else "") + f": {f.message}"
                 for f in self.findings[:limit]]
        more = len(self.findings) - limit
        if more > 0:
            parts.append(f"... and {more} more")
        return "; ".join(parts)
