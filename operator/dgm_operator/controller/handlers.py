"""kopf wiring: the watches that feed the read model, the events that start passes, and
the schedule that starts the passes no event starts.

The passes read the read model (:mod:`.readmodel`) and write to the API, so an idle
operator sends the API server next to nothing.

* **Feeds.** kopf watches five kinds, each filtered on the server:
  - the agents;
  - the undecided candidates (``status.phase`` is a selectable field of the CRD, so
    thousands of decided ones never reach kopf);
  - the Jobs the operator manages (``app.kubernetes.io/managed-by``);
  - the agents' target Deployments and live ConfigMaps (``dgm.io/target``, set by the
    agent's first pass).

  Each kind's event handler first puts the object into the read model, then acts, so a
  pass started by an event reads that event's object. One more list+watch of every
  candidate, outside kopf, keeps a compact summary of each for the archive (see
  :class:`.readmodel.SummaryFeed`). It is listed before kopf starts.

  These are event handlers, not ``kopf.index`` handlers. kopf holds every listed object of
  every kind in memory until all indexed kinds are listed: about 50 MiB more at 1,000 agents,
  and a slower start. The read model does not need that guarantee: a read it cannot answer
  yet goes to the API. The agents' first passes (their listing events) are also spread
  over the first seconds through the schedule, by when their targets are usually in
  memory. (kopf's index stores could not hold the answers of the operator's own writes
  either, and a pass must read its own writes.)
* **Events.** A candidate's event reconciles it at once (its Job is created on its ADDED
  event). A finished Job reconciles its owner. An agent's event reconciles the agent.
  Changes an agent depends on, such as its candidates' phases or its target, poke the
  agent's schedule.
* **Schedule.** One thread (:mod:`.schedule`) starts what no event starts: a proposal when
  the improvement interval makes it due, a retry after a failure, and the slow resync with
  jitter (``DGM_RESYNC_SECONDS``, default 300). It starts nothing on a standby replica
  (:mod:`.peering`).

All handlers are plain (sync) functions, so kopf runs them in its thread pool, and the
blocking Kubernetes client never stalls the event loop. No handler uses kopf's progress
storage. There is no kopf timer or daemon: kopf puts a finalizer on every object that has
one.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import kopf

from ..api import constants
from ..api.constants import AGENTS, CANDIDATES, FINAL_PHASES, GROUP, VERSION
from . import jobs, metrics, readmodel
from .kube import Kube
from .peering import Activity
from .kubeapi import KubeAPI
from .readmodel import CachedKube, ReadModel, SummaryFeed, resource_version
from .reconciler import Reconciler
from .schedule import Key, Schedule

log = logging.getLogger(__name__)

MAX_WORKERS = int(os.environ.get("DGM_MAX_WORKERS", "16"))
SCHEDULED_WORKERS = int(os.environ.get("DGM_SCHEDULED_WORKERS", "4"))
RESYNC_SECONDS = float(os.environ.get("DGM_RESYNC_SECONDS", "300"))
# How soon an agent's pass follows a change it depends on: a candidate's phase (what its
# status sums up: the archive, the active count; 5 s makes one status write of a burst, as
# the old 5 s timer did), or its target (a rollout to verify, or a rollback to start).
POKE_SECONDS = float(os.environ.get("DGM_POKE_SECONDS", "5"))
TARGET_POKE_SECONDS = float(os.environ.get("DGM_TARGET_POKE_SECONDS", "1"))
SYNC_TIMEOUT = float(os.environ.get("DGM_SYNC_TIMEOUT_SECONDS", "900"))
# The agents' first passes (kopf's initial listing) are spread over this many seconds.
STARTUP_SPREAD_SECONDS = float(os.environ.get("DGM_STARTUP_SPREAD_SECONDS", "10"))


@dataclass
class Runtime:
    """What `dgm run` decides before kopf starts: the watched namespaces (empty: all), and
    which replica acts (standalone, or kopf peering)."""

    namespaces: list[str] = field(default_factory=list)
    activity: Activity = field(default_factory=lambda: Activity("standalone", 0, standalone=True))
    peering: str | None = None
    peering_lifetime: int = 20


RUNTIME = Runtime()
MODEL = ReadModel()
SCHEDULE = Schedule(resync=RESYNC_SECONDS)
_STOP = threading.Event()
_reconciler: Reconciler | None = None
_scheduled: ThreadPoolExecutor | None = None
_started = threading.Event()


def reconciler() -> Reconciler:
    global _reconciler
    if _reconciler is None:
        # one pooled connection per worker thread (urllib3 keeps 10 by default)
        api = Kube(pool_size=MAX_WORKERS + SCHEDULED_WORKERS + 4)
        cached: KubeAPI = CachedKube(api, MODEL)  # checked against the interface here
        _reconciler = Reconciler(cached, schedule=SCHEDULE)
    return _reconciler


def kube() -> Kube:
    cached = reconciler().kube
    assert isinstance(cached, CachedKube) and isinstance(cached.api, Kube)
    return cached.api


def ready() -> bool:
    """The readiness probe: started, and the replica that acts."""
    return _started.is_set() and RUNTIME.activity.is_active()


# -- start-up and shutdown ------------------------------------------------------------------
@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=constants.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=constants.GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{constants.GROUP}/finalizer"
    settings.posting.enabled = False  # the reconciler records its own Events
    settings.batching.batch_window = 0.01
    settings.execution.max_workers = MAX_WORKERS
    settings.watching.server_timeout = 300
    settings.peering.lifetime = RUNTIME.peering_lifetime
    settings.peering.stealth = True
    # list in pages: one response with thousands of candidates is parsed all at once and
    # leaves the process at that peak for good (Python rarely returns freed memory)
    settings.watching.chunk_size = int(os.environ.get("DGM_LIST_CHUNK_SIZE", "200")) or None
    # Watch only undecided candidates (a selectable field of the CRD): a decided one leaves
    # the watch (kopf sees it as deleted and forgets it), so thousands of them in the
    # archive cost kopf nothing. Their summaries come from the summary feed.
    settings.watching.field_selectors[GROUP, CANDIDATES] = ",".join(
        f"status.phase!={phase}" for phase in sorted(FINAL_PHASES))
    # Jobs the operator made, and the agents' targets: not every Job, Deployment, ConfigMap.
    settings.watching.label_selectors["batch", "jobs"] = f"{constants.LABEL_MANAGED_BY}={constants.FIELD_MANAGER}"
    settings.watching.label_selectors["apps", "deployments"] = constants.LABEL_TARGET
    settings.watching.label_selectors["configmaps"] = constants.LABEL_TARGET
    settings.watching.label_selectors["pods"] = f"{constants.LABEL_SANDBOX}=true"  # evaluation pods only
    reconciler()
    for kind in ("agent", "candidate", "job", "deployment", "configmap", "candidate_summary"):
        metrics.READ_MODEL_OBJECTS.labels(kind).set_function(lambda k=kind: MODEL.counts()[k])
    MODEL.listeners.append(lambda namespace, agent: SCHEDULE.poke((namespace, agent), POKE_SECONDS))
    RUNTIME.activity.listeners.append(_role_changed)
    start_summaries()
    if not MODEL.synced.wait(SYNC_TIMEOUT):
        raise kopf.PermanentError(f"the candidate summaries were not listed within {SYNC_TIMEOUT:.0f}s")
    global _scheduled
    _scheduled = ThreadPoolExecutor(SCHEDULED_WORKERS, thread_name_prefix="dgm-scheduled")
    SCHEDULE.start_thread(lambda key, trigger, lag: _scheduled.submit(_scheduled_pass, key, trigger, time.time() - lag)
                          if _scheduled is not None else None, gate=RUNTIME.activity.is_active)
    if RUNTIME.peering:
        start_peering_watch()
    _started.set()


def start_summaries() -> None:
    """The list+watch of every candidate that keeps their summaries (one per namespace, or
    one cluster-wide); returns at once, the model's ``synced`` is set when all are listed."""
    scopes: list[str | None] = list(RUNTIME.namespaces) or [None]
    pending = set(scopes)
    lock = threading.Lock()

    def first_listed(scope: str | None) -> None:
        with lock:
            pending.discard(scope)
            if not pending:
                MODEL.synced.set()
                log.info("candidate summaries listed: %d", MODEL.counts()["candidate_summary"])

    for scope in scopes:
        feed = SummaryFeed(MODEL, scope, lambda s=scope: first_listed(s))  # type: ignore[misc]
        threading.Thread(target=kube().list_watch, name=f"dgm-summaries-{scope or 'all'}", daemon=True,
                         args=(CANDIDATES, scope),
                         kwargs={"on_page": feed.page, "on_listed": feed.listed, "on_event": feed.event,
                                 "stop": _STOP}).start()


def start_peering_watch() -> None:
    """Follow the peering object(s) kopf decides by, to know this replica's role."""
    assert RUNTIME.peering is not None
    scopes: list[str | None] = list(RUNTIME.namespaces) or [None]
    for scope in scopes:
        plural = "kopfpeerings" if scope else "clusterkopfpeerings"
        threading.Thread(target=kube().watch_object, name=f"dgm-peering-{scope or 'cluster'}", daemon=True,
                         args=("kopf.dev", "v1", plural, scope, RUNTIME.peering),
                         kwargs={"on_change": lambda obj, s=scope: RUNTIME.activity.update(s, obj),
                                 "stop": _STOP}).start()
    threading.Thread(target=RUNTIME.activity.run, args=(_STOP,), name="dgm-peering", daemon=True).start()


def _role_changed(active: bool) -> None:
    if not active:
        # kopf stops this replica's watches: what they delivered would go stale, and the
        # feed tracks the agents again when kopf resumes
        MODEL.clear()
        SCHEDULE.clear()
    SCHEDULE.wake()


@kopf.on.cleanup()
def shutdown(**_: Any) -> None:
    _STOP.set()
    SCHEDULE.stop()
    RUNTIME.activity.wake()
    if _scheduled is not None:
        _scheduled.shutdown(wait=False, cancel_futures=True)


@kopf.on.probe(id="api")
def api_reachable(**_: Any) -> bool:
    reconciler().kube.ping()
    return True


@kopf.on.probe(id="role")
def role(**_: Any) -> str:
    return "active" if RUNTIME.activity.is_active() else "standby"


# -- feeds: each watch event into the read model, before anything acts on it -------------
def _feed(kind: str, event: dict[str, Any], body: kopf.Body, namespace: str, name: str) -> bool:
    """Put the event's object into the read model, or take it out; True when it is gone
    (deleted, or no longer selected by the watch)."""
    if event.get("type") == "DELETED":
        MODEL.evict(readmodel.KIND_OF[kind], namespace, name, resource_version(body))
        return True
    MODEL.put({**dict(body), "kind": kind})
    return False


# -- passes ---------------------------------------------------------------------------------
def _agent_of_candidate(namespace: str, name: str) -> str | None:
    summary = MODEL.summary(namespace, name)
    if summary is not None:
        return summary.agent or summary.agent_ref
    body = MODEL.get("candidate", namespace, name)
    return ((body or {}).get("spec") or {}).get("agentRef") if body else None


def _retry_candidate(namespace: str, name: str) -> None:
    """A candidate's pass raised: its agent's pass (which hands back the candidates that
    need work) runs again after a backoff."""
    agent = _agent_of_candidate(namespace, name)
    if agent:
        SCHEDULE.failed((namespace, agent))


def _candidates(namespace: str, names_: list[str]) -> None:
    for other in names_:
        try:
            reconciler().reconcile_candidate(namespace, other)
        except Exception:  # one sibling's trouble must not stop the others
            metrics.ERRORS.labels("candidate").inc()
            log.exception("reconciling candidate %s/%s", namespace, other)
            _retry_candidate(namespace, other)


def _candidate(namespace: str, name: str) -> None:
    try:
        more = reconciler().reconcile_candidate(namespace, name)
    except Exception:
        metrics.ERRORS.labels("candidate").inc()
        _retry_candidate(namespace, name)
        raise
    _candidates(namespace, more)


def _agent(namespace: str, name: str, trigger: str) -> None:
    """One agent pass, then the candidates it hands back. A failure is retried by the
    schedule with a backoff (and raised for kopf to log)."""
    metrics.AGENT_PASSES.labels(trigger).inc()
    try:
        more = reconciler().reconcile_agent(namespace, name)
    except Exception:
        metrics.ERRORS.labels("agent").inc()
        SCHEDULE.failed((namespace, name))
        raise
    _candidates(namespace, more)


def _scheduled_pass(key: Key, trigger: str, due_at: float) -> None:
    """A pass the schedule started; its lag (due time to start, the worker queue included)
    says whether the schedule keeps pace."""
    metrics.AGENT_PASS_LAG.labels(trigger).observe(max(0.0, time.time() - due_at))
    if not RUNTIME.activity.is_active():
        return  # turned standby while queued
    try:
        _agent(key[0], key[1], trigger)
    except Exception:
        log.exception("scheduled pass (%s) of agent %s/%s", trigger, *key)


# -- events -----------------------------------------------------------------------------------
@kopf.on.event(GROUP, VERSION, CANDIDATES)
def candidate_event(event: dict[str, Any], body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    if _feed(constants.CANDIDATE_KIND, event, body, namespace, name):
        # deleted, or decided (it left the watch's selector): its summary stays in the
        # summary feed as long as it exists
        reconciler().forget("candidate", namespace, name)
        return
    if (body.get("status") or {}).get("phase") in FINAL_PHASES:
        return
    _candidate(namespace, name)


def _reconcile_owner(namespace: str, body: kopf.Body) -> None:
    """Reconcile what an evaluation Job or its pod belongs to: a candidate, else the agent
    (a baseline), as their labels say."""
    labels = body.get("metadata", {}).get("labels") or {}
    if labels.get(constants.LABEL_CANDIDATE):
        _candidate(namespace, labels[constants.LABEL_CANDIDATE])
    elif labels.get(constants.LABEL_AGENT):
        _agent(namespace, labels[constants.LABEL_AGENT], "event")


@kopf.on.event("batch", "v1", "jobs", labels={constants.LABEL_MANAGED_BY: constants.FIELD_MANAGER})
def job_event(event: dict[str, Any], body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    """A finished evaluation Job reconciles its owner right away."""
    if _feed("Job", event, body, namespace, name):
        return
    if not jobs.is_finished(body):
        return
    _reconcile_owner(namespace, body)


@kopf.on.event("", "v1", "pods", labels={constants.LABEL_SANDBOX: "true"})
def sandbox_pod_event(event: dict[str, Any], body: kopf.Body, namespace: str, **_: Any) -> None:
    """A sandbox container that cannot start (its image is not on the node, say) ends its
    evaluation now rather than at the Job's deadline."""
    if event.get("type") == "DELETED":
        return
    statuses = [*((body.get("status") or {}).get("initContainerStatuses") or []),
                *((body.get("status") or {}).get("containerStatuses") or [])]
    if not any(((s.get("state") or {}).get("waiting") or {}).get("reason") in jobs.FATAL_WAITING_REASONS
               for s in statuses):
        return
    _reconcile_owner(namespace, body)


@kopf.on.event(GROUP, VERSION, AGENTS)
def agent_event(event: dict[str, Any], body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    key = (namespace, name)
    if _feed(constants.AGENT_KIND, event, body, namespace, name):
        SCHEDULE.forget(key)
        reconciler().forget("agent", namespace, name)
        return
    SCHEDULE.track(key)
    if event.get("type") is None:  # kopf's initial listing: the first pass, spread over a few seconds
        SCHEDULE.poke(key, random.uniform(1.0, max(1.0, STARTUP_SPREAD_SECONDS)))
        return
    _agent(namespace, name, "event")


def _target_event(kind: str, event: dict[str, Any], body: kopf.Body, namespace: str, name: str) -> None:
    """A target changed (rolled out, edited, deleted): its agents take a look (not during
    the initial listing: the agents' first passes come anyway)."""
    _feed(kind, event, body, namespace, name)
    if event.get("type") is None:
        return
    for agent in MODEL.agents_targeting(readmodel.KIND_OF[kind], namespace, name):
        SCHEDULE.poke((namespace, agent), TARGET_POKE_SECONDS)


@kopf.on.event("apps", "v1", "deployments")
def deployment_event(event: dict[str, Any], body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    _target_event("Deployment", event, body, namespace, name)


@kopf.on.event("", "v1", "configmaps")
def configmap_event(event: dict[str, Any], body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    _target_event("ConfigMap", event, body, namespace, name)
