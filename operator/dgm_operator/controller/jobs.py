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


# waiting reasons after which a container will not start without someone's help
FATAL_WAITING_REASONS = frozenset({
    "ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})
RESULT_CONTAINERS = ("grader", "evaluate")  # the only containers whose report is read
EGRESS_CHECK = "egress-check"
AGENT = "agent"


@dataclass(frozen=True)
class JobResult:
    """A finished (or missing, or stuck) evaluation Job and what its pod reported. Metrics
    come only from the grader's (or the single evaluation container's) termination log."""

    job_name: str
    state: JobState
    job_reason: str = ""
    metrics: dict[str, float] | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    tests: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    message: str | None = None
    exit_code: int | None = None
    container_reason: str = ""  # e.g. OOMKilled, of the container that failed
    failed_container: str = ""
    sandbox_error: str | None = None  # the egress check found egress open
    image_error: str | None = None  # a container cannot start (e.g. ErrImageNeverPull)
    agent_image_id: str = ""

    @property
    def succeeded(self) -> bool:
        return self.state is JobState.SUCCEEDED

    def has_metrics(self, required: list[str]) -> bool:
        return self.succeeded and self.metrics is not None and all(m in self.metrics for m in required)

    def failure_message(self) -> str:
        parts = [f"evaluation Job {self.job_name} failed"]
        if self.job_reason:
            parts.append(f"({self.job_reason})")
        if self.failed_container:
            parts.append(f"container {self.failed_container}" + (f" {self.container_reason}" if self.container_reason else ""))
        if self.exit_code not in (None, 0):
            parts.append(f"exit code {self.exit_code}")
        if self.sandbox_error or self.image_error:
            parts.append(f": {self.sandbox_error or self.image_error}")
        elif self.error:
            parts.append(f": {self.error}")
        elif self.message and not self.message.lstrip().startswith("{"):
            parts.append(f": {self.message[-300:]}")
        return " ".join(parts)


def read_result(kube: KubeAPI, namespace: str, job_name: str) -> JobResult | None:
    """None while the Job runs; else its result (state MISSING when it does not exist). A
    running Job whose container cannot start (its image is not on the node, say) is
    reported FAILED with the kubelet's reason instead of waiting for its deadline."""
    job = kube.get_job(namespace, job_name)
    state, reason = job_state(job)
    if state is JobState.MISSING:
        return JobResult(job_name, state)
    containers = kube.job_pod_containers(namespace, job_name)
    stuck = next(((name, c) for name, c in containers.items() if c.waiting and c.reason in FATAL_WAITING_REASONS), None)
    if state is JobState.RUNNING and stuck is None:
        return None
    agent_image_id = containers[AGENT].image_id if AGENT in containers else ""
    if stuck is not None:
        name, c = stuck
        return JobResult(job_name, JobState.FAILED, reason or "ContainerCannotStart", failed_container=name,
                         container_reason=c.reason, image_error=f"container {name}: {c.reason}: {(c.message or '')[:300]}",
                         agent_image_id=agent_image_id)
    egress = containers.get(EGRESS_CHECK)
    if egress is not None and egress.exit_code not in (None, 0):
        _, _, _, error = mapping.parse_result(egress.message)
        return JobResult(job_name, JobState.FAILED, reason, failed_container=EGRESS_CHECK,
                         sandbox_error=error or f"the egress check exited {egress.exit_code}",
                         exit_code=egress.exit_code, agent_image_id=agent_image_id)
    main_name = next((n for n in RESULT_CONTAINERS if n in containers), "")
    main = containers.get(main_name)
    message, exit_code = (main.message, main.exit_code) if main else (None, None)
    metrics, samples, tests, error = mapping.parse_result(message)
    failed = next(((n, c) for n, c in containers.items() if c.reason == "OOMKilled"), None) or \
        next(((n, c) for n, c in containers.items() if c.exit_code not in (None, 0) and not c.waiting), None)
    return JobResult(job_name, state, reason, metrics, samples, tests, error, message, exit_code,
                     container_reason=failed[1].reason if failed else "", failed_container=failed[0] if failed else "",
                     agent_image_id=agent_image_id)
