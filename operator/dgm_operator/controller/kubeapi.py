"""The operator's view of the Kubernetes API: the interface the reconcilers use.

:class:`~.kube.Kube` implements it over the real client; the unit tests implement it over
dicts (``tests/unit/fakekube.py``). Objects go in and out as plain dicts.
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


class KubeAPI(Protocol):
    def ping(self) -> None:
        """Raises when the API server does not answer."""
        ...
    def get_agent(self, namespace: str, name: str) -> Obj | None: ...

    def get_candidate(self, namespace: str, name: str) -> Obj | None: ...

    def list_candidates(self, namespace: str, agent: str) -> list[Obj]: ...

    def create_candidate(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create; False when it already exists."""
        ...

    def delete_candidate(self, namespace: str, name: str) -> None: ...

    def patch_status(self, obj: Mapping[str, Any], status: Mapping[str, Any]) -> Obj:
        """Merge-patch the status subresource of an agent or candidate; returns the object."""
        ...

    def patch_metadata(self, obj: Mapping[str, Any], metadata: Mapping[str, Any]) -> Obj: ...

    def get_configmap(self, namespace: str, name: str) -> Obj | None: ...

    def get_deployment(self, namespace: str, name: str) -> Obj | None: ...

    def get_job(self, namespace: str, name: str) -> Obj | None: ...

    def create(self, body: Mapping[str, Any]) -> bool:
        """Create a ConfigMap, Job or NetworkPolicy; False when it already exists."""
        ...

    def apply(self, body: Mapping[str, Any]) -> Obj:
        """Server-side apply (field manager dgm-operator) of a ConfigMap or Deployment."""
        ...

    def job_pod_containers(self, namespace: str, job_name: str) -> dict[str, ContainerEnd]:
        """How each container of the Job's newest pod ended (or why it waits), by name."""
        ...

    def list_jobs(self, namespace: str, selector: str) -> list[Obj]:
        """Jobs matching a label selector."""
        ...

    def patch_job_metadata(self, namespace: str, name: str, metadata: Mapping[str, Any]) -> Obj:
        """Merge-patch a Job's metadata (labels, annotations)."""
        ...

    def job_container_log(self, namespace: str, job_name: str, container: str, limit_bytes: int) -> str | None:
        """At most ``limit_bytes`` of one container's log in the Job's newest pod; None when
        there is no pod (or the log cannot be read)."""
        ...

    def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None: ...
