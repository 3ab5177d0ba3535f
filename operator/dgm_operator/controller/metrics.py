"""Prometheus metrics of the operator (served by `dgm run --metrics-port`, default 9090)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ..engine.types import Phase

CANDIDATES = Gauge("dgm_candidates", "Candidates of an agent by phase.", ["namespace", "agent", "phase"])
EVALUATION_SECONDS = Histogram(
    "dgm_evaluation_duration_seconds", "Duration of a candidate's evaluation stage (Job created to finished).",
    ["namespace", "agent", "stage"], buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600))
IMPROVEMENT_SCORE = Histogram(
    "dgm_improvement_score", "Improvement score of evaluated candidates against the current revision.",
    ["namespace", "agent"], buckets=(-1, -0.5, -0.2, -0.1, -0.05, 0, 0.01, 0.05, 0.1, 0.2, 0.5, 1, 2))
APPLIES = Counter("dgm_applies_total", "Candidates applied as a new revision.", ["namespace", "agent"])
ROLLBACKS = Counter("dgm_rollbacks_total", "Rollbacks by reason.", ["namespace", "agent", "reason"])
DECISIONS = Counter("dgm_decisions_total", "Terminal decisions on candidates by phase and reason.",
                    ["namespace", "agent", "phase", "reason"])
API_WRITES = Counter("dgm_api_writes_total", "Write requests the operator sent to the API server.", ["verb", "kind"])
ERRORS = Counter("dgm_reconcile_errors_total", "Reconciliations that raised, by kind.", ["kind"])
PROPOSER_TOKENS = Counter("dgm_proposer_tokens_total", "Model tokens spent by proposal Jobs (llm and job proposers), "
                          "by kind: prompt or completion.", ["namespace", "agent", "kind"])
PROPOSER_ERRORS = Counter("dgm_proposer_errors_total", "Proposals that produced no candidate, by reason "
                          "(MalformedReply, EditDoesNotApply, ModelTimeout, ...).", ["namespace", "agent", "reason"])

PHASES = tuple(phase.value for phase in Phase)


def set_candidate_counts(namespace: str, agent: str, phases: list[str]) -> None:
    for phase in PHASES:
        CANDIDATES.labels(namespace, agent, phase).set(sum(1 for p in phases if p == phase))


def count_proposal(namespace: str, agent: str, *, prompt_tokens: int, completion_tokens: int,
                   error_reason: str | None) -> None:
    """Count one finished proposal: its tokens, and its reason when it failed."""
    PROPOSER_TOKENS.labels(namespace, agent, "prompt").inc(max(0, prompt_tokens))
    PROPOSER_TOKENS.labels(namespace, agent, "completion").inc(max(0, completion_tokens))
    if error_reason:
        PROPOSER_ERRORS.labels(namespace, agent, error_reason).inc()

# What the read model and the scheduler do (the operator quiet at rest, and keeping pace).
API_READS = Counter("dgm_api_reads_total", "Read requests (get, list, watch) the operator sent to the API server.",
                    ["verb", "resource"])
READ_MODEL_OBJECTS = Gauge("dgm_read_model_objects", "Objects held in the read model, by kind.", ["kind"])
READ_MODEL_MISSES = Counter("dgm_read_model_misses_total",
                            "Reads the read model could not answer from memory (sent to the API), by kind.", ["kind"])
AGENT_PASSES = Counter("dgm_agent_passes_total", "Agent reconcile passes by what started them.", ["trigger"])
AGENT_PASS_LAG = Histogram(
    "dgm_agent_pass_lag_seconds", "How late a scheduled agent pass started after it was due.", ["trigger"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
ACTIVE = Gauge("dgm_active", "1 on the replica that acts (kopf peering: the highest priority), else 0.")
