"""The read model: what the reconcile passes read, held in memory, fed by watches.

kopf's watches feed it: each watch's event handler in :mod:`.handlers` puts its object
here before anything acts on it. They hold the agents, the undecided candidates (the
candidate watch leaves decided ones out), the Jobs the operator created, and the agents'
target Deployments and ConfigMaps (those labelled ``dgm.io/target``). A separate list+watch of every candidate keeps only a compact
:class:`CandidateSummary` of each: what the archive, the phase counts and the attention
check read. 50,000 decided candidates then cost tens of MB, not the full objects and not
kopf's per-object machinery.

Objects are kept as compact JSON text. Each read parses a fresh copy, so no caller can
change what another one reads. Each key keeps the newest resourceVersion seen, so a late
watch event never undoes a newer write. The answers of the operator's own writes are
written through, so a pass reads its own writes before their watch events arrive. A
deleted key leaves a tombstone, so a late write answer does not bring it back.

:class:`CachedKube` implements :class:`~.kubeapi.KubeAPI` over it. Reads come from memory,
with the API as the fallback for what the watches do not hold (or do not hold yet). Writes
go to the API.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import threading
from collections import OrderedDict
from typing import Any, Callable, Iterable, Mapping

from ..api import constants
from ..api.constants import FINAL_PHASES
from . import metrics as telemetry
from .kubeapi import Conflict, ContainerEnd, KubeAPI, NotFound, Obj

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
KIND_OF = {"DGMAgent": "agent", constants.CANDIDATE_KIND: "candidate", "Job": "job",
           "Deployment": "deployment", "ConfigMap": "configmap"}
KINDS = tuple(KIND_OF.values())
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def resource_version(obj: Mapping[str, Any]) -> int | None:
    """The object's resourceVersion as a number (the API server's are etcd revisions;
    anything else compares as unknown, and then the newer event wins)."""
    value = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _older(new: int | None, old: int | None) -> bool:
    return new is not None and old is not None and new < old


def trim(obj: Mapping[str, Any]) -> Obj:
    """What the operator keeps of an object: no managedFields, no kubectl last-applied copy,
    and of a Job only its metadata and status (the pod template is never read back)."""
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if annotations and LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    out["metadata"] = meta
    if out.get("kind") == "Job":
        out = {k: out[k] for k in ("apiVersion", "kind", "metadata", "status") if k in out}
    return out


def label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool] | None:
    """A predicate for a label selector of ``k=v``, ``k==v``, ``k!=v``, ``k`` and ``!k``
    terms; None for anything else (set-based terms)."""
    terms: list[tuple[str, str, str]] = []  # (operator, key, value)
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        if "(" in term or " " in term:
            return None
        if "!=" in term:
            key, value = term.split("!=", 1)
            terms.append(("!=", key, value))
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            terms.append(("=", key, value))
        elif term.startswith("!"):
            terms.append(("!", term[1:], ""))
        else:
            terms.append(("", term, ""))

    def match(labels: Mapping[str, str]) -> bool:
        for op, key, value in terms:
            if op == "=" and labels.get(key) != value or op == "!=" and labels.get(key) == value \
                    or op == "!" and key in labels or op == "" and key not in labels:
                return False
        return True

    return match


def watched(obj: Mapping[str, Any]) -> bool:
    """Whether the operator's watches hold ``obj`` (and so keep the copy up to date):
    agents, undecided candidates, Jobs it manages, labelled targets."""
    kind = obj.get("kind")
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if kind == "DGMAgent":
        return True
    if kind == constants.CANDIDATE_KIND:
        return (obj.get("status") or {}).get("phase") not in FINAL_PHASES
    if kind == "Job":
        return labels.get(constants.LABEL_MANAGED_BY) == constants.FIELD_MANAGER
    if kind in ("Deployment", "ConfigMap"):
        return constants.LABEL_TARGET in labels
    return False


def _intern(value: Any) -> str | None:
    return sys.intern(str(value)) if value not in (None, "") else None


def _epoch(value: Any) -> int | None:
    if not value:
        return None
    try:
        return int(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


class CandidateSummary:
    """What the agent pass needs of a candidate, in a few hundred bytes."""

    __slots__ = ("namespace", "name", "rv", "created", "agent", "agent_ref", "parent", "phase", "reason",
                 "score", "metrics")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        validation = status.get("validation") or {}
        self.namespace: str = sys.intern(str(meta.get("namespace") or ""))
        self.name: str = str(meta["name"])
        self.rv = resource_version(obj)
        self.created = _epoch(meta.get("creationTimestamp"))
        self.agent = _intern((meta.get("labels") or {}).get(constants.LABEL_AGENT))
        self.agent_ref = _intern(spec.get("agentRef"))
        self.parent = _intern(spec.get("parent"))
        self.phase = _intern(status.get("phase"))
        self.reason = _intern(status.get("reason"))
        score = validation.get("improvementScore")
        self.score = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None
        metrics = []
        for item in validation.get("metricsAfter") or []:
            if isinstance(item, dict) and isinstance(item.get("value"), (int, float)) and item.get("name"):
                metrics.append((sys.intern(str(item["name"])), float(item["value"])))
        self.metrics = tuple(metrics)

    def archive_view(self) -> tuple[Any, ...]:
        """The fields whose change changes the agent's archive."""
        return self.phase, self.reason, self.score, self.parent, self.agent

    def as_object(self) -> Obj:
        """The summary as a (partial) candidate object, in the API's shape."""
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.rv is not None:
            meta["resourceVersion"] = str(self.rv)
        if self.created is not None:
            meta["creationTimestamp"] = dt.datetime.fromtimestamp(self.created, dt.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        if self.agent:
            meta["labels"] = {constants.LABEL_AGENT: self.agent}
        spec: dict[str, Any] = {"agentRef": self.agent_ref}
        if self.parent:
            spec["parent"] = self.parent
        status: dict[str, Any] = {}
        if self.phase:
            status["phase"] = self.phase
        if self.reason:
            status["reason"] = self.reason
        validation: dict[str, Any] = {}
        if self.score is not None:
            validation["improvementScore"] = self.score
        if self.metrics:
            validation["metricsAfter"] = [{"name": n, "value": v} for n, v in self.metrics]
        if validation:
            status["validation"] = validation
        return {"apiVersion": constants.API_VERSION, "kind": constants.CANDIDATE_KIND, "metadata": meta,
                "spec": spec, "status": status}


class _Entry:
    __slots__ = ("rv", "text", "agent")

    def __init__(self, rv: int | None, text: str, agent: str | None) -> None:
        self.rv, self.text, self.agent = rv, text, agent


class ReadModel:
    """The objects the watches hold, thread-safe (kopf's event loop writes, handler and
    scheduler threads read)."""

    def __init__(self, tombstones: int = 20_000) -> None:
        self._lock = threading.RLock()
        self._objects: dict[str, dict[Key, _Entry]] = {kind: {} for kind in KINDS}
        self._tombs: OrderedDict[tuple[str, str, str], int | None] = OrderedDict()
        self._max_tombs = tombstones
        self._summaries: dict[Key, CandidateSummary] = {}
        self._cand_agent: dict[Key, str] = {}  # candidate -> the agent it is listed under
        self._by_agent: dict[Key, set[str]] = {}  # (namespace, agent) -> candidate names
        self._targets: dict[tuple[str, str, str], set[str]] = {}  # (kind, namespace, name) -> agents
        self._agent_targets: dict[Key, tuple[tuple[str, str, str], ...]] = {}
        # set once every summary listing is complete (see handlers.start_summaries)
        self.synced = threading.Event()
        # called with (namespace, agent) when the archive of that agent changed (a candidate
        # summary added, removed, or its phase/score/parent changed), outside the lock
        self.listeners: list[Callable[[str, str], None]] = []

    # -- full objects ------------------------------------------------------------------------
    def put(self, obj: Mapping[str, Any] | None) -> None:
        """Take an object from a watch event or a write's answer (the newer version wins)."""
        if obj is None:
            return
        kind = KIND_OF.get(str(obj.get("kind")))
        meta = obj.get("metadata") or {}
        if kind is None or not meta.get("name"):
            return
        key: Key = (str(meta.get("namespace") or ""), str(meta["name"]))
        rv = resource_version(obj)
        changed: list[Key] = []
        with self._lock:
            tomb = self._tombs.get((kind, *key))
            if tomb is not None and rv is not None and rv <= tomb:
                return  # deleted (or left the watch) at this version or later
            current = self._objects[kind].get(key)
            if current is not None and _older(rv, current.rv):
                return
            if kind == "candidate":
                changed = self._summarize(obj)
            if not watched(obj):
                self._drop(kind, key, rv)
            else:
                self._tombs.pop((kind, *key), None)
                labels = meta.get("labels") or {}
                agent = _intern(labels.get(constants.LABEL_AGENT)) if kind == "candidate" else None
                self._objects[kind][key] = _Entry(rv, json.dumps(trim(obj), separators=(",", ":")), agent)
                if kind == "candidate":
                    self._reindex(key)
                elif kind == "agent":
                    self._index_targets(key, obj)
        self._notify(changed)

    def evict(self, kind: str, namespace: str, name: str, rv: int | None = None) -> None:
        """The watch says the object is gone (or no longer selected) at version ``rv``."""
        with self._lock:
            self._drop(kind, (namespace, name), rv)

    def _drop(self, kind: str, key: Key, rv: int | None) -> None:
        entry = self._objects[kind].pop(key, None)
        if entry is not None or rv is not None:
            self._tombs[(kind, *key)] = rv if rv is not None else (entry.rv if entry is not None else None)
            self._tombs.move_to_end((kind, *key))
            while len(self._tombs) > self._max_tombs:
                self._tombs.popitem(last=False)
        if kind == "candidate":
            self._reindex(key)
        elif kind == "agent":
            self._index_targets(key, None)

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        with self._lock:
            entry = self._objects[kind].get((namespace, name))
            text = entry.text if entry is not None else None
        return json.loads(text) if text is not None else None

    def has(self, kind: str, namespace: str, name: str) -> bool:
        with self._lock:
            return (namespace, name) in self._objects[kind]

    def list_jobs(self, namespace: str, selector: str) -> list[Obj] | None:
        """The held Jobs (all the operator manages: its Job watch selects exactly those) of
        ``namespace`` that match ``selector``; None when the selector has a term this
        matcher does not read (``in``, ``notin``), so the caller asks the API."""
        match = label_matcher(selector)
        if match is None:
            return None
        with self._lock:
            texts = [e.text for (ns, _), e in sorted(self._objects["job"].items()) if ns == namespace]
        jobs = [json.loads(t) for t in texts]
        return [j for j in jobs if match((j.get("metadata") or {}).get("labels") or {})]

    def names(self, kind: str) -> list[Key]:
        with self._lock:
            return list(self._objects[kind])

    def clear(self) -> None:
        """Forget what kopf's watches delivered (this replica stopped acting); the candidate
        summaries, fed by their own watch, stay."""
        with self._lock:
            for kind in KINDS:
                self._objects[kind].clear()
            self._tombs.clear()
            self._targets.clear()
            self._agent_targets.clear()
            for key in list(self._cand_agent):
                self._reindex(key)

    def counts(self) -> dict[str, int]:
        with self._lock:
            out = {kind: len(objs) for kind, objs in self._objects.items()}
            out["candidate_summary"] = len(self._summaries)
            return out

    # -- targets -------------------------------------------------------------------------------
    def _index_targets(self, key: Key, obj: Mapping[str, Any] | None) -> None:
        for target in self._agent_targets.pop(key, ()):
            agents = self._targets.get(target)
            if agents is not None:
                agents.discard(key[1])
                if not agents:
                    del self._targets[target]
        if obj is None:
            return
        target_spec = (obj.get("spec") or {}).get("target") or {}
        mine = tuple((kind, key[0], str(target_spec[field])) for kind, field in
                     (("deployment", "deployment"), ("configmap", "configMap")) if target_spec.get(field))
        self._agent_targets[key] = mine
        for target in mine:
            self._targets.setdefault(target, set()).add(key[1])

    def agents_targeting(self, kind: str, namespace: str, name: str) -> list[str]:
        """The agents whose spec.target names this Deployment or ConfigMap."""
        with self._lock:
            return sorted(self._targets.get((kind, namespace, name), ()))

    # -- candidate summaries ---------------------------------------------------------------------
    def summary_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        """An event of the list+watch of all candidates (a listed item is kind "LISTED")."""
        meta = obj.get("metadata") or {}
        key: Key = (str(meta.get("namespace") or ""), str(meta.get("name")))
        with self._lock:
            if kind == "DELETED":
                changed = self._unsummarize(key, resource_version(obj))
            else:
                changed = self._summarize(obj)
        self._notify(changed)

    def summaries_listed(self, namespace: str | None, seen: set[Key]) -> None:
        """A listing (of ``namespace``, or of all when None) is complete: what it did not
        return is gone."""
        changed: list[Key] = []
        with self._lock:
            gone = [k for k in self._summaries if (namespace is None or k[0] == namespace) and k not in seen]
            for key in gone:
                changed += self._unsummarize(key, None)
        self._notify(changed)

    def forget_candidate(self, namespace: str, name: str) -> None:
        """The operator deleted the candidate."""
        with self._lock:
            self._drop("candidate", (namespace, name), None)
            changed = self._unsummarize((namespace, name), None)
        self._notify(changed)

    def _summarize(self, obj: Mapping[str, Any]) -> list[Key]:
        try:
            new = CandidateSummary(obj)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("cannot summarize candidate %s: %s", (obj.get("metadata") or {}).get("name"), exc)
            return []
        key = (new.namespace, new.name)
        old = self._summaries.get(key)
        if old is not None and _older(new.rv, old.rv):
            return []
        self._summaries[key] = new
        self._reindex(key)
        if old is not None and old.archive_view() == new.archive_view():
            return []
        return [(new.namespace, a) for a in {new.agent, old.agent if old else None} if a]

    def _unsummarize(self, key: Key, rv: int | None) -> list[Key]:
        old = self._summaries.get(key)
        if old is None or _older(rv, old.rv):
            return []
        del self._summaries[key]
        self._reindex(key)
        return [(key[0], old.agent)] if old.agent else []

    def _reindex(self, key: Key) -> None:
        """Keep ``_by_agent`` in step with the newest of the body and the summary."""
        entry = self._objects["candidate"].get(key)
        summary = self._summaries.get(key)
        if entry is not None and (summary is None or not _older(entry.rv, summary.rv)):
            agent = entry.agent
        else:
            agent = summary.agent if summary is not None else None
        old = self._cand_agent.get(key)
        if old == agent:
            return
        if old is not None:
            names = self._by_agent.get((key[0], old))
            if names is not None:
                names.discard(key[1])
                if not names:
                    del self._by_agent[(key[0], old)]
            del self._cand_agent[key]
        if agent is not None:
            self._cand_agent[key] = agent
            self._by_agent.setdefault((key[0], agent), set()).add(key[1])

    def list_candidates(self, namespace: str, agent: str) -> list[Obj]:
        """The agent's candidates (by label): the full object while kopf's watch holds it
        and it is the newest version known, else the summary."""
        out: list[tuple[str, str | None, CandidateSummary | None]] = []
        with self._lock:
            for name in sorted(self._by_agent.get((namespace, agent), ())):
                entry = self._objects["candidate"].get((namespace, name))
                summary = self._summaries.get((namespace, name))
                if entry is not None and (summary is None or not _older(entry.rv, summary.rv)):
                    out.append((name, entry.text, None))
                else:
                    out.append((name, None, summary))
        return [json.loads(text) if text is not None else summary.as_object()  # type: ignore[union-attr]
                for _, text, summary in out]

    def summary(self, namespace: str, name: str) -> CandidateSummary | None:
        with self._lock:
            return self._summaries.get((namespace, name))

    def _notify(self, changed: Iterable[Key]) -> None:
        if not self.synced.is_set():
            return  # the first listing: the agents' first passes come anyway
        for namespace, agent in set(changed):
            for listener in list(self.listeners):
                try:
                    listener(namespace, agent)
                except Exception:  # a listener's trouble must not break the feed
                    log.exception("read model listener")


class CachedKube:
    """:class:`~.kubeapi.KubeAPI` with reads from the :class:`ReadModel` and writes to
    ``api``, whose answers are written through."""

    def __init__(self, api: KubeAPI, model: ReadModel) -> None:
        self.api, self.model = api, model

    def ping(self) -> None:
        self.api.ping()

    # -- reads -----------------------------------------------------------------------------------
    def _read(self, kind: str, namespace: str, name: str, fetch: Callable[[str, str], Obj | None]) -> Obj | None:
        obj = self.model.get(kind, namespace, name)
        if obj is not None:
            return obj
        telemetry.READ_MODEL_MISSES.labels(kind).inc()
        obj = fetch(namespace, name)
        if obj is None:
            return None
        self.model.put(obj)
        return trim(obj)

    def get_agent(self, namespace: str, name: str) -> Obj | None:
        return self._read("agent", namespace, name, self.api.get_agent)

    def get_candidate(self, namespace: str, name: str) -> Obj | None:
        """From memory while undecided; a decided one (kopf's watch leaves it out) is read
        from the API: only the step that needs its full object asks."""
        return self._read("candidate", namespace, name, self.api.get_candidate)

    def list_candidates(self, namespace: str, agent: str) -> list[Obj]:
        if self.model.synced.is_set():
            return self.model.list_candidates(namespace, agent)
        telemetry.READ_MODEL_MISSES.labels("candidate_list").inc()
        return self.api.list_candidates(namespace, agent)

    def get_configmap(self, namespace: str, name: str) -> Obj | None:
        return self._read("configmap", namespace, name, self.api.get_configmap)

    def get_deployment(self, namespace: str, name: str) -> Obj | None:
        return self._read("deployment", namespace, name, self.api.get_deployment)

    def get_job(self, namespace: str, name: str) -> Obj | None:
        return self._read("job", namespace, name, self.api.get_job)

    def job_pod_containers(self, namespace: str, job_name: str) -> dict[str, ContainerEnd]:
        return self.api.job_pod_containers(namespace, job_name)

    def list_jobs(self, namespace: str, selector: str) -> list[Obj]:
        """From memory (the Job watch holds every Job the operator manages)."""
        held = self.model.list_jobs(namespace, selector)
        if held is not None:
            return held
        telemetry.READ_MODEL_MISSES.labels("job_list").inc()
        return [trim(j) for j in self.api.list_jobs(namespace, selector)]

    def job_container_log(self, namespace: str, job_name: str, container: str, limit_bytes: int) -> str | None:
        return self.api.job_container_log(namespace, job_name, container, limit_bytes)

    def patch_job_metadata(self, namespace: str, name: str, metadata: Mapping[str, Any]) -> Obj:
        out = self.api.patch_job_metadata(namespace, name, metadata)
        self.model.put({**out, "kind": "Job"})
        return out

    # -- writes ----------------------------------------------------------------------------------
    def _written(self, obj: Obj | None) -> Obj | None:
        self.model.put(obj)
        return obj

    def create_candidate(self, namespace: str, body: Mapping[str, Any]) -> Obj | None:
        return self._written(self.api.create_candidate(namespace, body))

    def delete_candidate(self, namespace: str, name: str) -> None:
        self.api.delete_candidate(namespace, name)
        self.model.forget_candidate(namespace, name)

    def _patched(self, obj: Mapping[str, Any], patch: Callable[[], Obj]) -> Obj:
        try:
            out = patch()
        except (NotFound, Conflict):  # gone, or what we hold is stale: read it again next time
            kind, meta = KIND_OF.get(str(obj.get("kind"))), obj["metadata"]
            if kind is not None:
                self.model.evict(kind, meta["namespace"], meta["name"])
            raise
        self.model.put(out)
        return out

    def patch_status(self, obj: Mapping[str, Any], status: Mapping[str, Any], *, precondition: bool = False) -> Obj:
        return self._patched(obj, lambda: self.api.patch_status(obj, status, precondition=precondition))

    def patch_metadata(self, obj: Mapping[str, Any], metadata: Mapping[str, Any]) -> Obj:
        return self._patched(obj, lambda: self.api.patch_metadata(obj, metadata))

    def create(self, body: Mapping[str, Any]) -> Obj | None:
        return self._written(self.api.create(body))

    def apply(self, body: Mapping[str, Any]) -> Obj:
        out = self.api.apply(body)
        self.model.put(out)
        return out

    def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        self.api.event(obj, reason, message, warning=warning)


class SummaryFeed:
    """The callbacks of one list+watch of all candidates (in one namespace, or cluster-wide
    when ``namespace`` is None) into the model's summaries. ``on_first_listed`` is called
    once, when the first listing is complete."""

    def __init__(self, model: ReadModel, namespace: str | None, on_first_listed: Callable[[], None]) -> None:
        self.model, self.namespace, self._first = model, namespace, on_first_listed
        self._seen: set[Key] = set()
        self._listed = False

    def page(self, items: list[Obj]) -> None:
        for item in items:
            meta = item.get("metadata") or {}
            self._seen.add((str(meta.get("namespace") or ""), str(meta.get("name"))))
            self.model.summary_event("LISTED", item)

    def listed(self) -> None:
        self.model.summaries_listed(self.namespace, self._seen)
        self._seen = set()
        if not self._listed:
            self._listed = True
            self._first()

    def event(self, kind: str, obj: Obj) -> None:
        self.model.summary_event(kind, obj)
