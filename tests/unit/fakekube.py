"""A dict-backed fake of the project's own :class:`~dgm_operator.controller.kubeapi.KubeAPI`.

It is not a fake of the Kubernetes API server: it implements the few operations the
reconcilers use, with the semantics they rely on (AlreadyExists on create, JSON merge patch
of status, server-side apply of the fields the operator owns), and records every write and
Event so tests can check what a pass did. Integration tests use the real API server.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any, Mapping

from dgm_operator.api import constants
from dgm_operator.controller.kubeapi import Conflict, ContainerEnd, NotFound

KINDS = {"DGMAgent": "agent", "ImprovementCandidate": "candidate", "ConfigMap": "configmap",
         "Deployment": "deployment", "Job": "job", "NetworkPolicy": "networkpolicy"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


@dataclass
class Write:
    verb: str
    kind: str
    name: str
    body: dict[str, Any]


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[Write] = []
        self.reads: list[tuple[str, str, str]] = []  # (verb, kind, name) of every read
        self.events: list[tuple[str, str, str, bool]] = []  # (object name, reason, message, warning)
        self.pods: dict[str, dict[str, ContainerEnd]] = {}  # Job name -> its pod's containers
        self.container_logs: dict[tuple[str, str], str] = {}  # (job, container) -> log
        self._uids = itertools.count(1)
        self._versions = itertools.count(1)
        self._created = itertools.count(1)

    # -- test helpers ---------------------------------------------------------------------
    def add(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(dict(obj))
        meta = body.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{next(self._uids)}")
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", f"2026-01-01T00:00:{next(self._created) % 60:02d}Z")
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[(KINDS[body["kind"]], meta["namespace"], meta["name"])] = body
        return copy.deepcopy(body)

    def obj(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def _get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(("get", kind, name))
        return self.obj(kind, namespace, name)

    def finish_job(self, namespace: str, name: str, *, succeeded: bool = True, reason: str = "",
                   message: str | None = None, exit_code: int | None = 0, container_reason: str = "",
                   containers: dict[str, ContainerEnd] | None = None) -> None:
        """The Job finished; its main container (grader or evaluate) ended with ``message``
        and ``exit_code``, or the given ``containers`` ended as given."""
        job = self.objects[("job", namespace, name)]
        job["status"] = {"conditions": [{"type": "Complete" if succeeded else "Failed", "status": "True",
                                         "reason": reason}]}
        main = job["spec"]["template"]["spec"]["containers"][0]["name"]
        self.pods[name] = containers if containers is not None else {
            main: ContainerEnd(message, exit_code, container_reason or ("Completed" if exit_code == 0 else "Error"))}

    def pod_waiting(self, namespace: str, job: str, container: str, reason: str, message: str = "") -> None:
        """A container of the Job's pod cannot start (the Job itself still runs)."""
        self.pods.setdefault(job, {})[container] = ContainerEnd(message, None, reason, waiting=True)

    def set_rollout(self, namespace: str, name: str, *, complete: bool = False, failed: bool = False) -> None:
        dep = self.objects[("deployment", namespace, name)]
        replicas = dep["spec"].get("replicas", 1)
        status: dict[str, Any] = {"observedGeneration": dep["metadata"]["generation"], "replicas": replicas,
                                  "updatedReplicas": replicas if complete else 0,
                                  "availableReplicas": replicas if complete else 0}
        if failed:
            status["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
        dep["status"] = status

    def writes_of(self, verb: str | None = None, kind: str | None = None) -> list[Write]:
        return [w for w in self.writes if (verb is None or w.verb == verb) and (kind is None or w.kind == kind)]

    def reasons(self) -> list[str]:
        return [e[1] for e in self.events]

    # -- KubeAPI --------------------------------------------------------------------------
    def get_agent(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("agent", namespace, name)

    def get_candidate(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("candidate", namespace, name)

    def list_candidates(self, namespace: str, agent: str) -> list[dict[str, Any]]:
        self.reads.append(("list", "candidate", agent))
        return [copy.deepcopy(o) for (kind, ns, _), o in sorted(self.objects.items())
                if kind == "candidate" and ns == namespace
                and (o["metadata"].get("labels") or {}).get(constants.LABEL_AGENT) == agent]

    def create_candidate(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.create({**body, "metadata": {**body["metadata"], "namespace": namespace}})

    def delete_candidate(self, namespace: str, name: str) -> None:
        self.writes.append(Write("delete", "ImprovementCandidate", name, {}))
        self.objects.pop(("candidate", namespace, name), None)

    def _patch(self, obj: Mapping[str, Any], verb: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        key = (KINDS[obj["kind"]], meta["namespace"], meta["name"])
        self.writes.append(Write(verb, obj["kind"], meta["name"], copy.deepcopy(body)))
        if key not in self.objects:
            raise NotFound(f"{obj['kind']} {meta['namespace']}/{meta['name']}")
        stored = self.objects[key]
        updated = merge_patch(stored, body)
        updated["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[key] = updated
        return copy.deepcopy(updated)

    def patch_status(self, obj: Mapping[str, Any], status: Mapping[str, Any], *,
                     precondition: bool = False) -> dict[str, Any]:
        meta = obj["metadata"]
        stored = self.objects.get((KINDS[obj["kind"]], meta["namespace"], meta["name"]))
        if precondition and stored is not None and stored["metadata"]["resourceVersion"] != meta.get("resourceVersion"):
            self.writes.append(Write("patch-status", obj["kind"], meta["name"], {"status": dict(status)}))
            raise Conflict(f"{obj['kind']} {meta['namespace']}/{meta['name']} changed since it was read")
        return self._patch(obj, "patch-status", {"status": dict(status)})

    def patch_metadata(self, obj: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
        return self._patch(obj, "patch", {"metadata": dict(metadata)})

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("configmap", namespace, name)

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("deployment", namespace, name)

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("job", namespace, name)

    def create(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        meta = body["metadata"]
        key = (KINDS[body["kind"]], meta["namespace"], meta["name"])
        self.writes.append(Write("create", body["kind"], meta["name"], copy.deepcopy(dict(body))))
        if key in self.objects:
            return None
        return self.add(body)

    def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        key = (KINDS[body["kind"]], meta["namespace"], meta["name"])
        self.writes.append(Write("apply", body["kind"], meta["name"], copy.deepcopy(dict(body))))
        stored = self.objects[key]
        if body["kind"] == "ConfigMap":
            stored["data"] = dict(body.get("data") or {})
        else:  # Deployment: the template annotation and the named container's image
            template = stored["spec"]["template"]
            template.setdefault("metadata", {}).setdefault("annotations", {}).update(
                body["spec"]["template"]["metadata"]["annotations"])
            for wanted in body["spec"]["template"]["spec"]["containers"]:
                for container in template["spec"]["containers"]:
                    if container["name"] == wanted["name"]:
                        container["image"] = wanted["image"]
            stored["metadata"]["generation"] += 1
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        return copy.deepcopy(stored)

    def job_pod_containers(self, namespace: str, job_name: str) -> dict[str, ContainerEnd]:
        self.reads.append(("list", "pod", job_name))
        return dict(self.pods.get(job_name, {}))

    def ping(self) -> None:
        return None

    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The operator's Jobs matching equality (``k=v``) and absence (``!k``) terms, as the
        API server reads them."""
        self.reads.append(("list", "job", selector))
        selector = f"{constants.LABEL_MANAGED_BY}={constants.FIELD_MANAGER},{selector}"
        terms = selector.split(",")
        wanted = dict(t.split("=", 1) for t in terms if "=" in t)
        absent = [t[1:] for t in terms if t.startswith("!")]

        def matches(labels: dict[str, str]) -> bool:
            return all(labels.get(k) == v for k, v in wanted.items()) and not any(k in labels for k in absent)

        return [copy.deepcopy(o) for (kind, ns, _), o in sorted(self.objects.items())
                if kind == "job" and ns == namespace and matches(o["metadata"].get("labels") or {})]

    def patch_job_metadata(self, namespace: str, name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        return self._patch({"kind": "Job", "metadata": {"namespace": namespace, "name": name}}, "patch",
                           {"metadata": dict(metadata)})

    def job_container_log(self, namespace: str, job_name: str, container: str, limit_bytes: int) -> str | None:
        log = self.container_logs.get((job_name, container))
        return None if log is None else log.encode()[:limit_bytes].decode("utf-8", "replace")

    def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append((obj["metadata"]["name"], reason, message, warning))
