"""Evaluation Jobs read back: the one place that says whether a Job has finished, and
its result as a typed value."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import mapping
from .kubeapi import KubeAPI


class JobState(str, enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    MISSING = "missing"


def job_state(job: Mapping[str, Any] | None) -> tuple[JobState, str]:
    """The state of a Job dict and the reason of its finishing condition."""
    if job is None:
        return JobState.MISSING, ""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return JobState.SUCCEEDED, cond.get("reason") or ""
        if cond.get("type") == "Failed":
            return JobState.FAILED, cond.get("reason") or ""
    return JobState.RUNNING, ""


def is_finished(job: Mapping[str, Any] | None) -> bool:
    return job_state(job)[0] in (JobState.SUCCEEDED, JobState.FAILED)


@dataclass(frozen=True)
class JobResult:
    """A finished (or missing) evaluation Job and what its pod reported."""

    job_name: str
    state: JobState
    job_reason: str = ""
    metrics: dict[str, float] | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    tests: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    message: str | None = None
    exit_code: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.state is JobState.SUCCEEDED

    def has_metrics(self, required: list[str]) -> bool:
        return self.succeeded and self.metrics is not None and all(m in self.metrics for m in required)

    def failure_message(self) -> str:
        parts = [f"evaluation Job {self.job_name} failed"]
        if self.job_reason:
            parts.append(f"({self.job_reason})")
        if self.exit_code not in (None, 0):
            parts.append(f"exit code {self.exit_code}")
        if self.error:
            parts.append(f": {self.error}")
        elif self.message and not self.message.lstrip().startswith("{"):
            parts.append(f": {self.message[-300:]}")
        return " ".join(parts)


def read_result(kube: KubeAPI, namespace: str, job_name: str) -> JobResult | None:
    """None while the Job runs; else its result (state MISSING when it does not exist)."""
    job = kube.get_job(namespace, job_name)
    state, reason = job_state(job)
    if state is JobState.RUNNING:
        return None
    if state is JobState.MISSING:
        return JobResult(job_name, state)
    message, exit_code = kube.job_pod_message(namespace, job_name)
    metrics, samples, tests, error = mapping.parse_result(message)
    return JobResult(job_name, state, reason, metrics, samples, tests, error, message, exit_code)
