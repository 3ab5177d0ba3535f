"""Pydantic v2 models of the dgm.io/v1alpha1 API: the single source of truth.

The CRDs in ``crds/`` and ``docs/reference.md`` are generated from these classes by
``dgm crds`` (see ``crdgen.py``). Python attributes are snake_case; the wire format
(aliases) is camelCase, as Kubernetes wants. CEL rules (``x-kubernetes-validations``)
and other Kubernetes schema extensions live here too, in ``json_schema_extra``, so the
generator only carries them over.

How the seed engine's models map onto the resources:

- seed ``ImprovementCandidate`` -> the ``ImprovementCandidate`` resource:
  ``id`` -> ``metadata.name``; ``agent_id`` -> ``spec.agentRef``; ``improvement_type`` ->
  ``spec.improvementType`` (CamelCase values); ``code_changes`` -> ``spec.changes``;
  ``expected_improvement``/``risk_level`` -> same names in camelCase; ``status`` ->
  ``status.phase`` (+ ``status.conditions``); ``created_at`` -> ``metadata.creationTimestamp``;
  ``updated_at`` -> the conditions' ``lastTransitionTime``.
- seed ``ValidationResult`` -> candidate ``status.validation`` (+ ``status.safety``):
  ``performance_before``/``performance_after`` -> ``metricsBefore``/``metricsAfter``;
  ``improvement_score`` -> ``improvementScore``; ``safety_score`` -> ``status.safety.score``;
  ``test_results`` -> ``tests``; ``validation_time`` -> ``durationSeconds``; ``timestamp`` ->
  ``finishedAt``; ``success`` -> phase ``Validated`` (vs ``Rejected``/``Failed``).
- seed ``DGMArchiveEntry`` -> the candidate resource itself (every candidate is kept, its
  lineage in ``spec.parent``): ``applied``/``application_timestamp`` -> phase ``Applied`` and
  the agent's ``status.revisions[].appliedAt``; ``rollback_info`` -> the agent's
  ``status.revisions`` plus the immutable snapshot ConfigMap named there.
- seed ``PerformanceMetric`` -> ``MetricValue`` (baseline and validation metrics).
- seed ``DGMEngine`` config -> ``DGMAgent.spec.policy`` (``safety_threshold``,
  ``max_concurrent_improvements`` -> ``maxConcurrentCandidates``,
  ``improvement_interval_minutes``) and ``spec.archive``.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Optional, Union

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .constants import AGENT_KIND, AGENTS, API_VERSION, CANDIDATE_KIND, CANDIDATES, GROUP, VERSION  # noqa: F401

# Bounds that keep the CEL cost estimates of the API server within budget.
MAX_LIST = 32
MAX_STAGES = 10
MAX_CHANGED_FILES = 256
MAX_PATH = 253


# ---------------------------------------------------------------------------
# enumerations (identical strings everywhere, see docs/CONTRACTS.md)


# The enumerations shared with the engine are defined once, in the (pure) engine, and
# re-exported here under their API names.
from ..engine.types import Bottleneck  # noqa: E402,F401  (re-exported)
from ..engine.types import Goal as MetricGoal  # noqa: E402
from ..engine.types import ImprovementType  # noqa: E402
from ..engine.types import ParamType as ParameterType  # noqa: E402
from ..engine.types import Phase as CandidatePhase  # noqa: E402
from ..engine.types import ProposerType  # noqa: E402
from ..engine.types import ParameterSampler  # noqa: E402
from ..engine.types import SelectionMethod as ParentSelection  # noqa: E402
from ..engine.types import StagePromotion  # noqa: E402


class HintDirection(str, Enum):
    INCREASE = "increase"
    DECREASE = "decrease"


class ConditionStatus(str, Enum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


# Condition types used by the operator (free strings on the wire).
AGENT_CONDITION_TYPES = ("Ready", "Improving", "Degraded", "Progressing")
CANDIDATE_CONDITION_TYPES = ("SafetyChecked", "Evaluated", "Applied", "RolledBack")


# ---------------------------------------------------------------------------
# base


class WireModel(BaseModel):
    """Base of every API model: camelCase aliases, accepts either name on input."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The Kubernetes (camelCase, JSON-compatible) form, without unset optional fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def to_patch(self) -> dict[str, Any]:
        """A JSON merge patch: only the fields that were set, an explicit None as null
        (which removes the field on the server)."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


Quantity = Union[int, str]


def _k8s(**extra: Any) -> dict[str, Any]:
    return dict(extra)


def _cel(rule: str, message: str, **kw: Any) -> dict[str, Any]:
    out = {"rule": rule, "message": message}
    out.update(kw)
    return out


# ---------------------------------------------------------------------------
# shared pieces


class Condition(WireModel):
    """A Kubernetes-style condition (metav1.Condition)."""

    type: str = Field(description="Type of the condition, e.g. Ready or SafetyChecked.", max_length=316)
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: Optional[str] = Field(None, description="Machine-readable CamelCase reason of the last transition.")
    message: Optional[str] = Field(None, description="Human-readable details.")
    observed_generation: Optional[int] = Field(
        None, ge=0, description="metadata.generation the condition was computed from."
    )
    last_transition_time: Optional[datetime] = Field(
        None, description="When the status last changed (the seed's updated_at)."
    )


CONDITIONS_EXTRA = _k8s(**{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})


class MetricValue(WireModel):
    """One measured metric (the seed's PerformanceMetric)."""

    name: str = Field(description="Metric name, e.g. accuracy or response_time.")
    value: float = Field(description="Measured value (mean over repeats).")
    unit: Optional[str] = Field(None, description="Unit, e.g. seconds or ratio.")
    timestamp: Optional[datetime] = Field(None, description="When the value was measured.")
    context: Optional[dict[str, Any]] = Field(None, description="Free-form details (e.g. per-repeat values).")


# ---------------------------------------------------------------------------
# DGMAgent spec


class TargetSpec(WireModel):
    """The deployed agent the loop improves."""

    deployment: str = Field(description="Name of the agent's Deployment in the same namespace.", min_length=1)
    container: Optional[str] = Field(
        None, description="Container of the Deployment to evaluate and patch; default: the first container."
    )
    config_map: str = Field(
        description="ConfigMap holding the agent's live config/code files; candidates change its keys.",
        min_length=1,
    )


class EnvVar(WireModel):
    name: str = Field(description="Variable name.", min_length=1)
    value: str = Field("", description="Variable value.")


class MetricSpec(WireModel):
    """A metric the evaluation reports and how it enters the improvement score."""

    name: str = Field(description="Key in the evaluation's JSON `metrics` object.", min_length=1, max_length=63)
    goal: MetricGoal = Field(description="maximize or minimize.")
    weight: float = Field(1.0, ge=0.0, description="Weight of this metric in the improvement score.")
    unit: Optional[str] = Field(None, description="Unit shown in status (e.g. seconds, ratio).")


class Resources(WireModel):
    """CPU/memory requests and limits of the evaluation container."""

    requests: Optional[dict[str, Quantity]] = Field(None, description="Resource requests, e.g. cpu: 500m.")
    limits: Optional[dict[str, Quantity]] = Field(None, description="Resource limits, e.g. memory: 512Mi.")


class StageSpec(WireModel):
    """One evaluation stage: cheap stages first, then the full run."""

    name: str = Field(description="Stage name, unique in the list.", min_length=1, max_length=63)
    args: list[str] = Field(default_factory=list, description="Extra arguments appended to evaluation.args.")
    pass_threshold: Optional[float] = Field(
        None,
        description="Minimal improvement score this stage must reach for the next stage to run; unset: always continue.",
    )
    repeats: Optional[int] = Field(None, ge=1, le=20, description="Repeats of this stage; default: evaluation.repeats.")


class SandboxSpec(WireModel):
    """Extra settings of the sandbox pod that runs an evaluation."""

    egress_check: bool = Field(
        True,
        description="Before the candidate's code runs, check from inside the pod that egress is denied "
        "(a connection to the API server's Service must fail); when it is not, the candidate ends "
        "with reason SandboxNotEnforced and never runs.",
    )
    egress_check_seconds: int = Field(
        20, ge=1, le=300, description="How long the check waits for the deny-egress policy to take effect."
    )
    runtime_class_name: Optional[str] = Field(None, description="RuntimeClass of the pod (e.g. gvisor, kata).")
    node_selector: Optional[dict[str, str]] = Field(None, description="Node selector of the pod.")
    tolerations: Optional[list[dict[str, Any]]] = Field(None, description="Tolerations of the pod (core/v1 Toleration).")
    pod_labels: Optional[dict[str, str]] = Field(None, description="Extra labels of the pod.")


class EvaluationMode(str, Enum):
    GRADER = "Grader"
    SINGLE_PROCESS = "SingleProcess"


class AgentUnderTest(WireModel):
    """How the candidate agent runs in its own container of the evaluation pod: the
    candidate's image (else the agent's), its files read-only at /workspace, serving its
    protocol on localhost for the grader."""

    command: list[str] = Field(min_length=1, max_length=MAX_LIST, description="Command that serves the agent.")
    args: Optional[list[str]] = Field(None, description="Arguments of the agent container.")
    env: Optional[list[EnvVar]] = Field(None, description="Environment variables (name/value).")
    port: int = Field(8000, ge=1, le=65535, description="Port the agent serves on localhost (DGM_AGENT_URL for the grader).")


class EvaluationSpec(WireModel):
    """How a candidate (or the baseline) is measured: a sandboxed Job per stage.

    In the default ``Grader`` mode the pod has two containers: the agent under test
    (``agent``) and the grader (``image``/``command``/``args``), which drives it over
    localhost and alone reports the metrics; they share no process, file system or writable
    volume. ``SingleProcess`` runs ``command`` in one container with the candidate's files:
    an explicit opt-out for in-process benchmarks, shown on the agent as condition
    EvaluationIsolated=False."""

    model_config = ConfigDict(
        json_schema_extra=_k8s(
            **{
                "x-kubernetes-validations": [
                    _cel(
                        "(has(self.mode) && self.mode == 'SingleProcess') || has(self.agent)",
                        "evaluation.agent is required unless evaluation.mode is SingleProcess "
                        "(the grader drives the agent under test in its own container)",
                        fieldPath=".agent",
                    )
                ]
            }
        )
    )

    mode: EvaluationMode = Field(EvaluationMode.GRADER, description="Grader (two containers) or SingleProcess (opt-out).")
    agent: Optional[AgentUnderTest] = Field(None, description="The agent under test (Grader mode).")
    image: str = Field(description="Image of the grader (or of the single evaluation container).", min_length=1)
    command: Optional[list[str]] = Field(None, description="Command of the grader container.")
    args: Optional[list[str]] = Field(None, description="Arguments of the grader container.")
    env: Optional[list[EnvVar]] = Field(None, description="Environment variables of the grader (name/value).")
    metrics: list[MetricSpec] = Field(
        min_length=1,
        max_length=MAX_LIST,
        description="Metrics that make the improvement score.",
        json_schema_extra=_k8s(
            **{
                "x-kubernetes-validations": [
                    _cel(
                        "self.all(m, self.exists_one(n, n.name == m.name))",
                        "evaluation.metrics: metric names must be unique",
                    )
                ]
            }
        ),
    )
    repeats: int = Field(1, ge=1, le=20, description="Runs per stage; the mean is used, the spread is the noise.")
    timeout_seconds: int = Field(600, ge=1, description="Deadline of each evaluation Job (activeDeadlineSeconds).")
    resources: Optional[Resources] = Field(None, description="Resources of the evaluation container.")
    stages: list[StageSpec] = Field(
        default_factory=list,
        max_length=MAX_STAGES,
        description="Staged evaluation, cheap stages first; empty: one full stage.",
        json_schema_extra=_k8s(
            **{
                "x-kubernetes-validations": [
                    _cel(
                        "self.all(s, self.exists_one(t, t.name == s.name))",
                        "evaluation.stages: stage names must be unique",
                    )
                ]
            }
        ),
    )
    promotion: StagePromotion = Field(
        StagePromotion.THRESHOLD,
        description="Which children of a cheap stage run the next one: threshold (its passThreshold) or rank "
                    "(the top 1/eta of the children evaluated at that stage, each against its parent on the "
                    "same tasks; passThreshold, when set, is a floor too). See docs/search.md.",
    )
    eta: float = Field(3.0, ge=1.5, le=100.0, description="Rank promotion: the top 1/eta of a stage's children run the next stage.")
    sandbox: Optional[SandboxSpec] = Field(None, description="Sandbox pod settings.")
    protected_files: list[str] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="Globs of ConfigMap keys (evaluator files) that candidates may never change.",
    )


class SearchParameter(WireModel):
    """One tunable parameter of the agent's configuration (docs/CONTRACTS.md)."""

    model_config = ConfigDict(
        json_schema_extra=_k8s(
            **{
                "x-kubernetes-validations": [
                    _cel(
                        "self.type != 'choice' || (has(self.choices) && size(self.choices) > 0)",
                        "searchSpace: a parameter of type choice needs a non-empty choices list",
                    ),
                    _cel(
                        "!(self.type == 'int' || self.type == 'float') || (has(self.min) && has(self.max))",
                        "searchSpace: a parameter of type int or float needs min and max",
                    ),
                    _cel(
                        "!has(self.min) || !has(self.max) || self.min <= self.max",
                        "searchSpace: min must be less than or equal to max",
                    ),
                ]
            }
        )
    )

    file: str = Field(description="ConfigMap key holding the parameter (.yaml/.yml, .json or .py).", min_length=1, max_length=MAX_PATH)
    key: str = Field(description="Dotted path in YAML/JSON (retrieval.top_k) or a top-level NAME in Python.", min_length=1, max_length=MAX_PATH)
    type: ParameterType = Field(description="int, float, choice or bool.")
    min: Optional[float] = Field(None, description="Lower bound (int/float).")
    max: Optional[float] = Field(None, description="Upper bound (int/float).")
    step: Optional[float] = Field(None, ge=0.0, description="Step of the grid (int/float); unset: continuous.")
    choices: Optional[list[str]] = Field(None, max_length=MAX_LIST, description="Allowed values (choice).")
    hints: Optional[dict[str, HintDirection]] = Field(
        None,
        description="Bottleneck (slow_response, high_memory, high_errors, low_accuracy) -> increase or decrease.",
    )


class WebhookSpec(WireModel):
    """An external proposer (e.g. an LLM service) called over HTTP."""

    url: str = Field(description="URL the proposer POSTs its request to.", pattern=r"^https?://")
    timeout_seconds: int = Field(30, ge=1, le=3600, description="Request timeout.")


class SecretKeyRef(WireModel):
    """A key of a Secret in the agent's namespace. The operator never reads it: the proposal
    Job gets it through ``env.valueFrom.secretKeyRef``."""

    name: str = Field(description="Secret name.", min_length=1, max_length=253)
    key: str = Field(description="Key in the Secret.", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class EgressPort(WireModel):
    port: int = Field(ge=1, le=65535, description="Destination port.")
    protocol: str = Field("TCP", pattern=r"^(TCP|UDP|SCTP)$", description="TCP, UDP or SCTP.")


class EgressRule(WireModel):
    """One egress rule of the proposal pod's NetworkPolicy (networking.k8s.io/v1 NetworkPolicyEgressRule)."""

    to: Optional[list[dict[str, Any]]] = Field(
        None,
        max_length=MAX_LIST,
        description="Peers (NetworkPolicyPeer: ipBlock, namespaceSelector, podSelector); unset: any destination.",
        json_schema_extra=_k8s(items={"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
    )
    ports: list[EgressPort] = Field(min_length=1, max_length=MAX_LIST, description="Destination ports.")


class LLMProposerSpec(WireModel):
    """The built-in LLM proposer: an OpenAI-compatible chat-completions endpoint, called from
    a proposal Job in the agent's namespace (docs/llm-proposer.md)."""

    base_url: str = Field(
        alias="baseURL",
        min_length=1,
        max_length=2048,
        pattern=r"^https?://[^\s/]+",
        description="OpenAI-compatible endpoint, e.g. http://vllm.llm.svc:8000/v1 or https://api.openai.com/v1.",
    )
    model: str = Field(min_length=1, max_length=256, description="Model name the endpoint serves.")
    api_key_secret_ref: Optional[SecretKeyRef] = Field(
        None, description="Secret key holding the API key (optional: local servers often need none)."
    )
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0, description="Sampling temperature; unset: the server's default.")
    max_tokens: Optional[int] = Field(None, ge=1, le=1_000_000, description="Completion tokens per model call; unset: the server's default.")
    timeout_seconds: int = Field(120, ge=1, le=3600, description="Timeout of one model call (retried on timeouts, 429 and 5xx).")
    max_tokens_per_day: Optional[int] = Field(
        None, ge=1, description="Daily token budget of the agent (UTC days); when spent, proposals pause until the next day."
    )
    max_fix_attempts: int = Field(
        2, ge=0, le=5,
        description="Times a malformed reply, or edits that do not apply, go back to the model with the error.",
    )
    egress: Optional[list[EgressRule]] = Field(
        None,
        max_length=MAX_LIST,
        description="Egress the proposal pod may use besides DNS; unset: TCP to the port of baseURL, any destination.",
    )


class EnvVarSource(WireModel):
    secret_key_ref: SecretKeyRef = Field(description="A key of a Secret in the agent's namespace.")


class ProposerEnvVar(WireModel):
    model_config = ConfigDict(
        json_schema_extra=_k8s(
            **{
                "x-kubernetes-validations": [
                    _cel("has(self.value) != has(self.valueFrom)", "proposer.job.env: set exactly one of value or valueFrom"),
                ]
            }
        )
    )

    name: str = Field(description="Variable name.", min_length=1, max_length=253)
    value: Optional[str] = Field(None, description="Variable value.")
    value_from: Optional[EnvVarSource] = Field(None, description="Value from a Secret key.")


class JobProposerSpec(WireModel):
    """A user's own coding agent, run as the proposal Job's proposer: it reads
    /proposal/context.json and writes /proposal/out (docs/llm-proposer.md)."""

    image: str = Field(min_length=1, description="Image of the coding agent.")
    command: Optional[list[str]] = Field(None, description="Command (the image's entrypoint if unset).")
    args: Optional[list[str]] = Field(None, description="Arguments.")
    env: Optional[list[ProposerEnvVar]] = Field(None, max_length=64, description="Environment (values or Secret keys).")
    timeout_seconds: int = Field(1800, ge=1, le=86400, description="Deadline of the proposal Job (activeDeadlineSeconds).")
    resources: Optional[Resources] = Field(None, description="Resources of the coding agent's container.")
    egress: Optional[list[EgressRule]] = Field(
        None, max_length=MAX_LIST, description="Egress the proposal pod may use besides DNS; unset: none."
    )


class ProposerSpec(WireModel):
    """How the operator proposes candidates on its own."""

    model_config = ConfigDict(
        json_schema_extra=_k8s(
            **{
                "x-kubernetes-validations": [
                    _cel(
                        "self.type != 'webhook' || has(self.webhook)",
                        "proposer.webhook is required when proposer.type is webhook",
                    ),
                    _cel(
                        "self.type != 'parameters' || (has(self.searchSpace) && size(self.searchSpace) > 0)",
                        "proposer.searchSpace must not be empty when proposer.type is parameters",
                    ),
                    _cel(
                        "self.type != 'llm' || has(self.llm)",
                        "proposer.llm is required when proposer.type is llm",
                    ),
                    _cel(
                        "self.type != 'job' || has(self.job)",
                        "proposer.job is required when proposer.type is job",
                    ),
                ]
            }
        )
    )

    type: ProposerType = Field(ProposerType.HEURISTIC, description="heuristic, parameters, webhook, llm or job.")
    search_space: list[SearchParameter] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="Tunable parameters (for heuristic and parameters proposers; shown to llm and job proposers).",
        json_schema_extra=_k8s(
            **{
                "x-kubernetes-validations": [
                    _cel(
                        "self.all(p, self.exists_one(q, q.file == p.file && q.key == p.key))",
                        "proposer.searchSpace: each (file, key) pair must be unique",
                    )
                ]
            }
        ),
    )
    sampler: ParameterSampler = Field(
        ParameterSampler.TPE,
        description="How the parameters proposer picks values: tpe (Optuna TPE), cmaes (Optuna CMA-ES), random, "
                    "each warm-started from the archive's evaluated candidates, or mutation (a Gaussian step "
                    "from the parent's values).",
    )
    webhook: Optional[WebhookSpec] = Field(None, description="External proposer (type webhook).")
    llm: Optional[LLMProposerSpec] = Field(None, description="OpenAI-compatible model (type llm).")
    job: Optional[JobProposerSpec] = Field(None, description="A user's own coding-agent image (type job).")
    seed: Optional[int] = Field(None, description="Random seed of the proposer (reproducible runs).")


class RollbackPolicy(WireModel):
    """When the operator rolls an applied revision back by itself."""

    on_rollout_failure: bool = Field(True, description="Roll back when the rollout does not progress.")
    on_regression: bool = Field(True, description="Roll back when the post-apply evaluation regresses.")


class PolicySpec(WireModel):
    """Safety and pacing of the loop (the seed's engine config)."""

    safety_threshold: float = Field(0.8, ge=0.0, le=1.0, description="Minimal safety score to evaluate a candidate.")
    max_concurrent_candidates: int = Field(3, ge=1, description="Candidates in Testing at the same time.")
    improvement_interval_minutes: int = Field(30, ge=1, description="Minutes between two proposals.")
    min_improvement: float = Field(0.01, ge=0.0, description="Improvement score needed to validate a candidate.")
    auto_apply: bool = Field(False, description="Apply validated candidates without approval (spec.approved).")
    auto_apply_code: bool = Field(
        False,
        description="With autoApply, also apply changes to code (any file but configuration: .yaml, .json, .toml, "
        ".ini, .cfg, .conf, .txt, .md, .csv) without approval. Off by default: code is reviewed by a person.",
    )
    allowed_files: list[str] = Field(
        default_factory=lambda: ["**"],
        max_length=MAX_LIST,
        description="Globs of ConfigMap keys candidates may change.",
    )
    allowed_imports: Optional[list[str]] = Field(
        None,
        max_length=256,
        description="Python modules changed code may import; unset or empty: the engine's default list.",
    )
    max_change_bytes: int = Field(65536, ge=1, description="Maximal total size of a candidate's changes.")
    max_files: int = Field(64, ge=1, le=MAX_CHANGED_FILES, description="Maximal number of files a candidate changes.")
    allowed_images: list[str] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        description="Image references (globs, e.g. registry.example/agent:*, or digests) a candidate's image "
        "may take without approval; any other image change waits for approval even with autoApply.",
    )
    rollback: RollbackPolicy = Field(
        default_factory=RollbackPolicy,
        description="Automatic rollback.",
        json_schema_extra={"default": {}},
    )


class ArchiveSpec(WireModel):
    """The open-ended archive of candidates."""

    parent_selection: ParentSelection = Field(
        ParentSelection.ADAPTIVE,
        description="adaptive (greedy until stalled, then broaden; the default, chosen by `dgm bench search`), "
                    "dgm (the DGM paper's rule), greedy, random, hgm (clade-metaproductivity Thompson sampling) "
                    "or elite (DGM weights on a bounded, median/MAD-normalised elite). See docs/search.md.",
    )
    max_candidates: int = Field(200, ge=1, description="Candidates kept per agent (oldest non-applied pruned first).")


class DGMAgentSpec(WireModel):
    """Desired state of a self-improving agent."""

    target: TargetSpec = Field(description="The deployed agent.")
    evaluation: EvaluationSpec = Field(description="How candidates are measured.")
    proposer: ProposerSpec = Field(
        default_factory=ProposerSpec,
        description="Built-in or external proposer.",
        json_schema_extra={"default": {"type": "heuristic"}},
    )
    policy: PolicySpec = Field(
        default_factory=PolicySpec, description="Safety and pacing.", json_schema_extra={"default": {}}
    )
    archive: ArchiveSpec = Field(
        default_factory=ArchiveSpec, description="Archive settings.", json_schema_extra={"default": {}}
    )
    paused: bool = Field(False, description="Stop proposing and applying (running Jobs finish).")
    rollback_to_revision: Optional[int] = Field(
        None, ge=1, description="Declarative rollback request: make this revision current."
    )


# ---------------------------------------------------------------------------
# DGMAgent status


class StageMetrics(WireModel):
    """Metrics measured by one evaluation stage (stages compare like with like)."""

    name: str = Field(description="Stage name.")
    metrics: Optional[list[MetricValue]] = Field(None, description="Metrics of the stage.")
    improvement_score: Optional[float] = Field(None, description="Score of the stage against the same stage of the baseline.")


class Baseline(WireModel):
    """Measured performance of the current revision."""

    revision: Optional[int] = Field(None, description="Revision measured.")
    metrics: Optional[list[MetricValue]] = Field(None, description="Measured metrics (the last stage).")
    stages: Optional[list[StageMetrics]] = Field(None, description="Metrics of every stage, for staged evaluation.")
    score: Optional[float] = Field(None, description="Aggregate score of the baseline.")
    job_name: Optional[str] = Field(None, description="Evaluation Job of the baseline.")
    measured_at: Optional[datetime] = Field(None, description="When the baseline was measured.")


class RevisionRecord(WireModel):
    """One applied revision (replaces the seed's rollback_info)."""

    revision: int = Field(ge=1, description="Revision number (1 = the original files).")
    candidate: Optional[str] = Field(None, description="Candidate that produced it (none for revision 1).")
    snapshot: Optional[str] = Field(None, description="Immutable snapshot ConfigMap holding its files.")
    image: Optional[str] = Field(None, description="Container image of this revision.")
    image_id: Optional[str] = Field(
        None, alias="imageID", description="The image as the node reported it when the revision was evaluated (a digest where it has one)."
    )
    applied_at: Optional[datetime] = Field(None, description="When it was applied.")
    score: Optional[float] = Field(None, description="Score measured for it.")
    rolled_back_at: Optional[datetime] = Field(None, description="When it was rolled back, if it was.")


class ArchiveStatus(WireModel):
    size: Optional[int] = Field(None, description="Candidates in the archive.")
    best_score: Optional[float] = Field(None, description="Best improvement score seen.")
    best_candidate: Optional[str] = Field(None, description="Candidate with the best score.")


class TokenLedger(WireModel):
    """Model tokens an agent's proposals spent: today (UTC) against maxTokensPerDay, and in all."""

    day: Optional[str] = Field(None, description="UTC day of `used` (YYYY-MM-DD).")
    used: Optional[int] = Field(None, ge=0, description="Tokens spent on that day.")
    total: Optional[int] = Field(None, ge=0, description="Tokens spent since the agent was created.")
    charged: Optional[list[str]] = Field(
        None, max_length=64, description="The last proposal Jobs counted (so a Job read twice counts once)."
    )


class ProposalOutcome(WireModel):
    """What the newest proposal became. It stays until the next one, so that a failure is still
    visible in status (and in the Improving condition) after its Event has expired."""

    result: str = Field(description="Started (its proposal Job runs), Proposed (a candidate was created) or Failed.")
    candidate: Optional[str] = Field(None, description="The candidate it created or would have created.")
    job_name: Optional[str] = Field(None, description="The proposal Job (llm and job proposers).")
    reason: Optional[str] = Field(None, description="Why it failed, e.g. MalformedReply, ProposalJobFailed.")
    message: Optional[str] = Field(None, description="What happened (bounded).")
    time: Optional[datetime] = Field(None, description="When the operator recorded it.")


class DGMAgentStatus(WireModel):
    """Observed state of the loop."""

    phase: Optional[str] = Field(None, description="Summary, e.g. Pending, Baselining, Ready, Improving, Paused, Degraded.")
    conditions: Optional[list[Condition]] = Field(
        None, description="Ready, Improving, Degraded, ...", json_schema_extra=CONDITIONS_EXTRA
    )
    observed_generation: Optional[int] = Field(None, description="metadata.generation last acted upon.")
    baseline: Optional[Baseline] = Field(None, description="Performance of the current revision.")
    current_revision: Optional[int] = Field(None, description="Revision live in the Deployment.")
    revisions: Optional[list[RevisionRecord]] = Field(None, description="History of applied revisions.")
    archive: Optional[ArchiveStatus] = Field(None, description="Archive summary.")
    active_candidates: Optional[int] = Field(None, description="Candidates being evaluated.")
    last_proposal_time: Optional[datetime] = Field(None, description="When the operator last proposed a candidate.")
    proposals: Optional[int] = Field(None, ge=0, description="Candidates proposed so far (names the next one).")
    handled_rollback: Optional[str] = Field(
        None, description="The last rollback request acted upon (spec.rollbackToRevision or the dgm.io/rollback-to annotation)."
    )
    handled_propose: Optional[str] = Field(None, description="The last dgm.io/propose annotation value acted upon.")
    proposals_in_flight: Optional[int] = Field(None, ge=0, description="Proposal Jobs running or not read back yet (llm and job proposers).")
    tokens: Optional["TokenLedger"] = Field(None, description="Model tokens spent by proposals (llm and job proposers).")
    last_proposal: Optional[ProposalOutcome] = Field(None, description="What the newest proposal became (kept until the next).")


# ---------------------------------------------------------------------------
# ImprovementCandidate


class ImprovementCandidateSpec(WireModel):
    """A proposed change of an agent (the seed's ImprovementCandidate).

    Fields map from the seed as: id -> metadata.name, agent_id -> agentRef,
    code_changes -> changes, improvement_type/expected_improvement/risk_level unchanged.
    """

    model_config = ConfigDict(
        json_schema_extra=_k8s(
            **{
                "x-kubernetes-validations": [
                    _cel(
                        "(has(self.changes) && size(self.changes) > 0) || (has(self.image) && size(self.image) > 0)",
                        "spec: at least one of changes (non-empty) or image must be set",
                    )
                ]
            }
        )
    )

    agent_ref: str = Field(description="Name of the DGMAgent in the same namespace.", min_length=1, max_length=253)
    parent: Optional[str] = Field(None, description="Parent candidate in the archive; empty: from the baseline.")
    improvement_type: ImprovementType = Field(
        description="ParameterTuning, AlgorithmModification, ArchitectureChange or ConfigurationUpdate."
    )
    description: str = Field("", description="What the change does and why.")
    changes: dict[str, str] = Field(
        default_factory=dict,
        description="ConfigMap key (file name) -> new content (the seed's code_changes).",
        json_schema_extra=_k8s(
            maxProperties=MAX_CHANGED_FILES,
            **{
                "x-kubernetes-validations": [
                    _cel(
                        "self.all(k, !k.startsWith('/') && !k.split('/').exists(s, s == '..'))",
                        "spec.changes: file names must be relative paths (no leading '/', no '..' segment)",
                    )
                ]
            },
        ),
    )
    image: Optional[str] = Field(None, description="New image of the agent's container (optional).")
    expected_improvement: float = Field(0.0, description="The proposer's estimate of the improvement.")
    risk_level: float = Field(0.5, ge=0.0, le=1.0, description="The proposer's risk estimate, 0..1.")
    approved: bool = Field(False, description="Approval gate when policy.autoApply is false.")


class SafetyFinding(WireModel):
    rule: str = Field(description="Rule that fired, e.g. forbidden-import.")
    severity: str = Field(description="low, medium, high or critical.")
    file: Optional[str] = Field(None, description="File of the finding.")
    message: str = Field(description="What was found.")


class SafetyStatus(WireModel):
    """Result of the static safety analysis (the seed's SafetyMonitor)."""

    score: Optional[float] = Field(None, ge=0.0, le=1.0, description="Safety score, 0..1 (the seed's safety_score).")
    findings: Optional[list[SafetyFinding]] = Field(None, description="Findings of the analysis.")


class ValidationStatus(WireModel):
    """Evaluation of a candidate (the seed's ValidationResult).

    performance_before/after -> metricsBefore/metricsAfter, improvement_score ->
    improvementScore, test_results -> tests, validation_time -> durationSeconds,
    timestamp -> finishedAt; success -> phase Validated.
    """

    job_name: Optional[str] = Field(None, description="Evaluation Job of the last stage run.")
    stage: Optional[str] = Field(None, description="Stage reached.")
    stages_passed: Optional[list[str]] = Field(None, description="Stages whose threshold was met.")
    metrics_before: Optional[list[MetricValue]] = Field(None, description="Metrics of the parent/baseline.")
    metrics_after: Optional[list[MetricValue]] = Field(None, description="Metrics of the candidate.")
    stage_results: Optional[list[StageMetrics]] = Field(None, description="Metrics and score of each stage run.")
    improvement_score: Optional[float] = Field(None, description="Weighted relative improvement over the baseline.")
    noise: Optional[float] = Field(None, description="Spread of the score over repeats.")
    repeats: Optional[int] = Field(None, description="Runs measured.")
    duration_seconds: Optional[float] = Field(None, description="Evaluation time (the seed's validation_time).")
    tests: Optional[dict[str, Any]] = Field(None, description="Free-form test results of the evaluation.")
    agent_image_id: Optional[str] = Field(
        None, alias="agentImageID", description="Image ID (a digest where the node reports one) the agent under test ran with."
    )
    started_at: Optional[datetime] = Field(None, description="Start of the evaluation.")
    finished_at: Optional[datetime] = Field(None, description="End of the evaluation.")


class TokenUsage(WireModel):
    prompt: int = Field(0, ge=0, description="Prompt tokens.")
    completion: int = Field(0, ge=0, description="Completion tokens.")
    total: int = Field(0, ge=0, description="Total tokens.")


class ProposalStatus(WireModel):
    """How an llm or job proposer produced the candidate."""

    job_name: Optional[str] = Field(None, description="The proposal Job.")
    model: Optional[str] = Field(None, description="Model that wrote the change.")
    tokens: Optional[TokenUsage] = Field(None, description="Tokens the proposal spent (from the API's usage).")
    calls: Optional[int] = Field(None, ge=0, description="Model calls (diagnose, implement, fixes).")
    estimated: Optional[bool] = Field(None, description="True when the endpoint reported no usage and tokens were estimated.")


class ImprovementCandidateStatus(WireModel):
    """Observed state of a candidate."""

    phase: Optional[CandidatePhase] = Field(None, description="Lifecycle phase.")
    conditions: Optional[list[Condition]] = Field(
        None,
        description="SafetyChecked, Evaluated, Applied, RolledBack.",
        json_schema_extra=CONDITIONS_EXTRA,
    )
    observed_generation: Optional[int] = Field(None, description="metadata.generation last acted upon.")
    safety: Optional[SafetyStatus] = Field(None, description="Static safety analysis.")
    validation: Optional[ValidationStatus] = Field(None, description="Evaluation result.")
    revision: Optional[int] = Field(None, description="Agent revision created by applying this candidate.")
    files_digest: Optional[str] = Field(
        None, description="Digest of the merged file set and image it is evaluated with (sha256:...), set when its "
                          "evaluation starts; a later proposal with the same digest is a DuplicateCandidate.")
    duplicate_of: Optional[str] = Field(None, description="The candidate this one duplicates (reason DuplicateCandidate).")
    proposal: Optional[ProposalStatus] = Field(None, description="The proposal Job that wrote it (llm and job proposers).")
    reason: Optional[str] = Field(None, description="Reason of the last decision (CamelCase).")
    message: Optional[str] = Field(None, description="Details of the last decision.")


# ---------------------------------------------------------------------------
# whole objects


class _Resource(WireModel):
    KIND: ClassVar[str] = ""
    PLURAL: ClassVar[str] = ""
    ROOT_VALIDATIONS: ClassVar[list[dict[str, Any]]] = []

    api_version: str = Field(API_VERSION, description="dgm.io/v1alpha1")
    kind: str = Field("", description="Kind of the object.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")

    def model_post_init(self, __context: Any) -> None:
        if not self.kind:
            self.kind = self.KIND

    @property
    def name(self) -> Optional[str]:
        return self.metadata.get("name")

    @property
    def namespace(self) -> Optional[str]:
        return self.metadata.get("namespace")


def _spec_frozen_rule() -> str:
    """Root transition rule: once validation started, the spec may change only in `approved`."""
    parts = []
    for name, field in ImprovementCandidateSpec.model_fields.items():
        if name == "approved":
            continue
        a = field.alias or name
        if field.is_required():
            parts.append(f"self.spec.{a} == oldSelf.spec.{a}")
        else:
            parts.append(
                f"has(self.spec.{a}) == has(oldSelf.spec.{a}) && "
                f"(!has(self.spec.{a}) || self.spec.{a} == oldSelf.spec.{a})"
            )
    started = "has(oldSelf.status) && has(oldSelf.status.phase) && oldSelf.status.phase != 'Proposed'"
    return f"!({started}) || (" + " && ".join(f"({p})" for p in parts) + ")"


class DGMAgent(_Resource):
    """A deployed agent under a Darwin Goedel Machine improvement loop (the seed's DGMEngine)."""

    KIND: ClassVar[str] = AGENT_KIND
    PLURAL: ClassVar[str] = AGENTS

    spec: DGMAgentSpec
    status: Optional[DGMAgentStatus] = None


class ImprovementCandidate(_Resource):
    """A proposed change of an agent, kept with its lineage as an archive entry.

    The resource is the seed's DGMArchiveEntry as well as its ImprovementCandidate:
    validation_result -> status.validation, applied/application_timestamp -> phase Applied
    and the agent's status.revisions[].appliedAt, rollback_info -> the agent's
    status.revisions and snapshot ConfigMaps.
    """

    KIND: ClassVar[str] = CANDIDATE_KIND
    PLURAL: ClassVar[str] = CANDIDATES
    # carried to the root of the CRD schema by crdgen (status is visible only there)
    ROOT_VALIDATIONS: ClassVar[list[dict[str, Any]]] = [
        _cel(
            _spec_frozen_rule(),
            "spec is immutable once validation has started (status.phase is not Proposed); "
            "only spec.approved may change",
            reason="FieldValueForbidden",
            fieldPath=".spec",
        )
    ]

    spec: ImprovementCandidateSpec
    status: Optional[ImprovementCandidateStatus] = None


RESOURCES: tuple[type[_Resource], ...] = (DGMAgent, ImprovementCandidate)
