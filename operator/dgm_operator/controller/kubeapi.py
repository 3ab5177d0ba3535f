"""The operator's view of the Kubernetes API: the interface the reconcilers use.

:class:`~.kube.Kube` implements it over the real client, :class:`~.readmodel.CachedKube`
over the in-memory read model (reads from memory, writes to the API); the unit tests
implement it over dicts (``tests/unit/fakekube.py``). Objects go in and out as plain dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

Obj = dict[str, Any]


@dataclass(frozen=True)
class ContainerEnd:
    """A container of an evaluation pod: its termination message, exit code and reason
    (e.g. OOMKilled, Error, or a waiting reason such as ErrImageNeverPull), and the image ID
    the node reports (a digest where it has one)."""

    message: str | None
    exit_code: int | None
    reason: str = ""
    image_id: str = ""
    waiting: bool = False
    running: bool = False


class NotFound(LookupError):
    """A write addressed an object that does not exist (HTTP 404)."""


class Conflict(RuntimeError):
    """A write with a precondition found the object changed since it was read (HTTP 409)."""


class KubeAPI(Protocol):
    def ping(self) -> None:
        """Raises when the API server does not answer."""
        ...
    def get_agent(self, namespace: str, name: str) -> Obj | None: ...

    def get_candidate(self, namespace: str, name: str) -> Obj | None: ...

    def list_candidates(self, namespace: str, agent: str) -> list[Obj]:
        """The candidates labelled with the agent. The read model answers decided ones with a
        summary (metadata, spec.agentRef/parent, status phase/reason/validation score and
        metricsAfter): what the archive, the phase counts and the attention check read."""
        ...

    def create_candidate(self, namespace: str, body: Mapping[str, Any]) -> Obj | None:
        """Create; the created object, None when it already exists."""
        ...

    def delete_candidate(self, namespace: str, name: str) -> None: ...

    def patch_status(self, obj: Mapping[str, Any], status: Mapping[str, Any], *, precondition: bool = False) -> Obj:
        """Merge-patch the status subresource of an agent or candidate; returns the object.
        Raises :class:`NotFound` when it does not exist. With ``precondition`` the patch
        carries ``obj``'s resourceVersion, and :class:`Conflict` is raised when the object
        changed since (for a write computed from what was read, such as the revision history)."""
        ...

    def patch_metadata(self, obj: Mapping[str, Any], metadata: Mapping[str, Any]) -> Obj:
        """Merge-patch the labels/annotations of an agent, candidate, ConfigMap or Deployment."""
        ...

    def get_configmap(self, namespace: str, name: str) -> Obj | None: ...

    def get_deployment(self, namespace: str, name: str) -> Obj | None: ...

    def get_job(self, namespace: str, name: str) -> Obj | None:
        """The Job's metadata and status (its pod template is not needed and not kept)."""
        ...

    def create(self, body: Mapping[str, Any]) -> Obj | None:
        """Create a ConfigMap, Job or NetworkPolicy; the created object, None when it already exists."""
        ...

    def apply(self, body: Mapping[str, Any]) -> Obj:
        """Server-side apply (field manager dgm-operator) of a ConfigMap or Deployment."""
        ...

    def job_pod_containers(self, namespace: str, job_name: str) -> dict[str, ContainerEnd]:
        """How each container of the Job's newest pod ended (or why it waits), by name."""
        ...

    def list_jobs(self, namespace: str, selector: str) -> list[Obj]:
        """The Jobs the operator manages (``app.kubernetes.io/managed-by: dgm-operator``) that
        match a label selector of equality (``k=v``), inequality (``k!=v``), existence (``k``)
        and absence (``!k``) terms."""
        ...

    def patch_job_metadata(self, namespace: str, name: str, metadata: Mapping[str, Any]) -> Obj:
        """Merge-patch a Job's metadata (labels, annotations)."""
        ...

    def job_container_log(self, namespace: str, job_name: str, container: str, limit_bytes: int) -> str | None:
        """At most ``limit_bytes`` of one container's log in the Job's newest pod; None when
        there is no pod (or the log cannot be read)."""
        ...

    def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None: ...
