"""The operator's Kubernetes I/O, kept in one place and kept dumb: the only module that
imports the Kubernetes client. It implements :class:`~.kubeapi.KubeAPI`.

Reconcilers call these helpers; nothing here decides anything. Creation treats
AlreadyExists as success (children have deterministic names), writes to objects that Git
may own go through server-side apply with the ``dgm-operator`` field manager, and status
goes through the status subresource.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from typing import Any, Callable, Mapping, cast

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from ..api import constants
from ..api.constants import AGENTS, CANDIDATES, GROUP, VERSION
from .kubeapi import Conflict, ContainerEnd, NotFound
from .metrics import API_READS, API_WRITES

log = logging.getLogger(__name__)

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def load_config(pool_size: int | None = None) -> client.ApiClient:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    if pool_size:
        configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class Kube:
    """Typed helpers over one ApiClient. Objects go in and out as plain dicts."""

    def __init__(self, api_client: client.ApiClient | None = None, *, pool_size: int | None = None):
        self.api = api_client or load_config(pool_size)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.net = client.NetworkingV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def ping(self) -> None:
        """Raises when the API server does not answer (the liveness probe)."""
        self.core.get_api_resources()

    # -- plain dicts out of the typed client ------------------------------------------
    def _dict(self, obj: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.api.sanitize_for_serialization(obj))

    # -- custom resources -------------------------------------------------------------
    def get_agent(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_custom(namespace, AGENTS, name)

    def get_candidate(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_custom(namespace, CANDIDATES, name)

    def _get_custom(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        API_READS.labels("get", plural).inc()
        try:
            return cast(dict[str, Any], self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_candidates(self, namespace: str, agent: str) -> list[dict[str, Any]]:
        API_READS.labels("list", CANDIDATES).inc()
        out = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, CANDIDATES, label_selector=f"{constants.LABEL_AGENT}={agent}"
        )
        return cast(list[dict[str, Any]], out.get("items", []))

    def create_candidate(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create; None when it already exists (a retry after a crash)."""
        API_WRITES.labels("create", "ImprovementCandidate").inc()
        try:
            return cast(dict[str, Any],
                        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, CANDIDATES, dict(body)))
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise

    def patch_status(self, obj: Mapping[str, Any], status: Mapping[str, Any], *,
                     precondition: bool = False) -> dict[str, Any]:
        """Merge-patch the status subresource of an agent or candidate (with ``precondition``,
        only if it is still at the resourceVersion of ``obj``)."""
        body: dict[str, Any] = {"status": dict(status)}
        if precondition:
            body["metadata"] = {"resourceVersion": obj["metadata"]["resourceVersion"]}
        return self._patch_custom(obj, "patch-status", self.custom.patch_namespaced_custom_object_status, body)

    def patch_metadata(self, obj: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the metadata (labels, annotations) of an agent, a candidate, or a
        ConfigMap or Deployment (the target label)."""
        kind, meta = obj["kind"], obj["metadata"]
        if kind in ("ConfigMap", "Deployment"):
            patch = {"ConfigMap": self.core.patch_namespaced_config_map,
                     "Deployment": self.apps.patch_namespaced_deployment}[kind]
            API_WRITES.labels("patch", kind).inc()
            try:
                out = patch(meta["name"], meta["namespace"], {"metadata": dict(metadata)},
                            field_manager=constants.FIELD_MANAGER, _content_type=MERGE_PATCH)
            except ApiException as exc:
                if exc.status == 404:
                    raise NotFound(f"{kind} {meta['namespace']}/{meta['name']}") from exc
                raise
            return self._dict(out)
        return self._patch_custom(obj, "patch", self.custom.patch_namespaced_custom_object,
                                  {"metadata": dict(metadata)})

    def _patch_custom(self, obj: Mapping[str, Any], verb: str, patch: Callable[..., Any],
                      body: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        plural = AGENTS if obj["kind"] == "DGMAgent" else CANDIDATES
        API_WRITES.labels(verb, obj["kind"]).inc()
        try:
            return cast(dict[str, Any], patch(GROUP, VERSION, meta["namespace"], plural, meta["name"], body))
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"{obj['kind']} {meta['namespace']}/{meta['name']}") from exc
            if exc.status == 409:
                raise Conflict(f"{obj['kind']} {meta['namespace']}/{meta['name']} changed since it was read") from exc
            raise

    # -- core objects -------------------------------------------------------------------
    def _read(self, read: Callable[[str, str], Any], name: str, namespace: str) -> dict[str, Any] | None:
        """``read(name, namespace)`` as a dict, None when the object does not exist."""
        API_READS.labels("get", read.__name__.removeprefix("read_namespaced_")).inc()
        try:
            return self._dict(read(name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(self.core.read_namespaced_config_map, name, namespace)

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(self.apps.read_namespaced_deployment, name, namespace)

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(self.batch.read_namespaced_job, name, namespace)

    def create(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create a ConfigMap, Job or NetworkPolicy; None when it already exists."""
        kind, ns = body["kind"], body["metadata"]["namespace"]
        create = {
            "ConfigMap": self.core.create_namespaced_config_map,
            "Job": self.batch.create_namespaced_job,
            "NetworkPolicy": self.net.create_namespaced_network_policy,
        }[kind]
        API_WRITES.labels("create", kind).inc()
        try:
            return self._dict(create(ns, dict(body)))
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise

    def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply (field manager ``dgm-operator``) of a ConfigMap or Deployment."""
        kind, ns, name = body["kind"], body["metadata"]["namespace"], body["metadata"]["name"]
        patch = {"ConfigMap": self.core.patch_namespaced_config_map, "Deployment": self.apps.patch_namespaced_deployment}[kind]
        API_WRITES.labels("apply", kind).inc()
        out = patch(name, ns, dict(body), field_manager=constants.FIELD_MANAGER, force=True, _content_type=APPLY_PATCH)
        return self._dict(out)

    def job_pod_containers(self, namespace: str, job_name: str) -> dict[str, ContainerEnd]:
        """How each container (init containers included) of the Job's newest pod ended or
        why it is waiting; empty when the Job has no pod."""
        API_READS.labels("list", "pods").inc()
        pods = self.core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}").items
        if not pods:
            return {}
        epoch = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        pod = max(pods, key=lambda p: (p.metadata.creation_timestamp if p.metadata else None) or epoch)
        out: dict[str, ContainerEnd] = {}
        status = pod.status
        for cs in [*(status.init_container_statuses or []), *(status.container_statuses or [])] if status else []:
            state = cs.state
            term = state.terminated if state else None
            waiting = state.waiting if state else None
            if term is not None:
                out[cs.name] = ContainerEnd(term.message, term.exit_code, term.reason or "", cs.image_id or "")
            elif waiting is not None and waiting.reason:
                out[cs.name] = ContainerEnd(waiting.message, None, waiting.reason, cs.image_id or "", waiting=True)
            elif cs.image_id:
                out[cs.name] = ContainerEnd(None, None, "", cs.image_id, running=True)
        return out

    def _newest_pod(self, namespace: str, job_name: str) -> Any:
        pods = self.core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}").items
        oldest = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        return max(pods, key=lambda p: p.metadata.creation_timestamp or oldest) if pods else None

    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        API_READS.labels("list", "jobs").inc()
        managed = f"{constants.LABEL_MANAGED_BY}={constants.FIELD_MANAGER}"
        selector = f"{managed},{selector}" if selector else managed
        return [self._dict(j) for j in self.batch.list_namespaced_job(namespace, label_selector=selector).items]

    def patch_job_metadata(self, namespace: str, name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        API_WRITES.labels("patch", "Job").inc()
        return self._dict(self.batch.patch_namespaced_job(name, namespace, {"metadata": dict(metadata)}))

    def job_container_log(self, namespace: str, job_name: str, container: str, limit_bytes: int) -> str | None:
        """At most ``limit_bytes`` of a container's log (``pods/log``) in the Job's newest pod."""
        pod = self._newest_pod(namespace, job_name)
        if pod is None:
            return None
        try:
            response = self.core.read_namespaced_pod_log(pod.metadata.name, namespace, container=container,
                                                         limit_bytes=limit_bytes, _preload_content=False)
        except ApiException as exc:
            if exc.status in (400, 403, 404):  # no such container, its log is gone, or no pods/log right
                log.warning("cannot read the log of %s/%s (%s): %s", job_name, container, exc.status, exc.reason)
                return None
            raise
        return bytes(response.data).decode("utf-8", "replace")

    def delete_candidate(self, namespace: str, name: str) -> None:
        API_WRITES.labels("delete", "ImprovementCandidate").inc()
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, CANDIDATES, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # -- events -------------------------------------------------------------------------
    def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        """Record a core/v1 Event on ``obj``; failures are logged, never raised."""
        meta = obj["metadata"]
        stamp = now()
        digest = hashlib.sha1(json.dumps([meta.get("uid"), reason, message, stamp]).encode()).hexdigest()[:10]
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{digest}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": constants.FIELD_MANAGER},
            "reportingComponent": constants.FIELD_MANAGER,
            "reportingInstance": constants.FIELD_MANAGER,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        API_WRITES.labels("create", "Event").inc()
        try:
            self.core.create_namespaced_event(meta["namespace"], body)
        except ApiException as exc:  # events are best effort
            log.warning("could not record event %s on %s: %s", reason, meta["name"], exc.reason)

    # -- list + watch (the informer loop of client-go, kept small) -------------------------
    def list_watch(self, plural: str, namespace: str | None, *, on_page: Callable[[list[dict[str, Any]]], None],
                   on_listed: Callable[[], None], on_event: Callable[[str, dict[str, Any]], None],
                   stop: threading.Event, group: str = GROUP, version: str = VERSION, page_size: int = 500,
                   field_selector: str | None = None, timeout_seconds: int = 300) -> None:
        """List a custom resource in pages, then watch it from the listing's resourceVersion,
        until ``stop`` is set. ``on_page`` gets each page of a listing and ``on_listed`` is
        called once the listing is complete (the caller drops what it no longer holds);
        ``on_event(type, object)`` gets each watch event. An expired watch (410 Gone) lists
        again; other failures back off (up to 30 s) and resume from the last resourceVersion.
        Only one page is held at a time, whatever the number of objects."""
        args: tuple[str, ...] = (group, version, namespace, plural) if namespace else (group, version, plural)
        fn = self.custom.list_namespaced_custom_object if namespace else self.custom.list_cluster_custom_object
        extra: dict[str, Any] = {"field_selector": field_selector} if field_selector else {}
        rv: str | None = None
        backoff = 0.5
        while not stop.is_set():
            try:
                if rv is None:
                    token: str | None = None
                    while True:
                        API_READS.labels("list", plural).inc()
                        page = fn(*args, limit=page_size, _continue=token, **extra) if token else \
                            fn(*args, limit=page_size, **extra)
                        on_page(cast(list[dict[str, Any]], page.get("items") or []))
                        token = (page.get("metadata") or {}).get("continue")
                        if not token:
                            rv = (page.get("metadata") or {}).get("resourceVersion")
                            break
                    on_listed()
                w = watch.Watch()
                API_READS.labels("watch", plural).inc()
                for event in w.stream(fn, *args, resource_version=rv, allow_watch_bookmarks=True,
                                      timeout_seconds=timeout_seconds, _request_timeout=timeout_seconds + 30,
                                      **extra):
                    obj = event.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if event.get("type") != "BOOKMARK":
                        on_event(str(event.get("type")), obj)
                    if stop.is_set():
                        w.stop()
                        break
                backoff = 0.5
            except ApiException as exc:
                if exc.status == 410:
                    rv = None  # too old: list again
                    continue
                log.warning("watch of %s in %s: %s; retrying in %.1fs", plural, namespace or "all namespaces",
                            exc.reason, backoff)
                stop.wait(backoff)
                backoff = min(30.0, backoff * 2)
            except Exception as exc:  # a dropped connection: resume from rv
                log.debug("watch of %s in %s dropped: %s", plural, namespace or "all namespaces", exc)
                stop.wait(backoff)
                backoff = min(30.0, backoff * 2)

    def watch_object(self, group: str, version: str, plural: str, namespace: str | None, name: str, *,
                     on_change: Callable[[dict[str, Any] | None], None], stop: threading.Event) -> None:
        """Follow one custom object (None when it does not exist) until ``stop`` is set."""
        selector = f"metadata.name={name}"
        state: dict[str, dict[str, Any]] = {}

        def page(items: list[dict[str, Any]]) -> None:
            for item in items:
                state[item["metadata"]["name"]] = item

        def listed() -> None:
            on_change(state.get(name))
            state.clear()

        def event(kind: str, obj: dict[str, Any]) -> None:
            on_change(None if kind == "DELETED" else obj)

        self.list_watch(plural, namespace, on_page=page, on_listed=listed, on_event=event, stop=stop,
                        group=group, version=version, field_selector=selector)
