"""kopf wiring: thin handlers that hand an object's name to the reconciler.

All handlers are plain (sync) functions, so kopf runs them in its thread pool and the
blocking Kubernetes client never stalls the event loop. Event handlers give low latency
(a candidate's Job is created on its ADDED event; a Job's completion reconciles its owner
at once); timers are the level-based safety net for missed events and for the agent's
improvement interval. No handler uses kopf's progress storage or a finalizer.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from ..api import constants
from ..api.constants import AGENTS, CANDIDATES, FINAL_PHASES, GROUP, VERSION
from . import jobs, metrics
from .kube import Kube
from .reconciler import Reconciler

log = logging.getLogger(__name__)
_reconciler: Reconciler | None = None

AGENT_TIMER_SECONDS = float(os.environ.get("DGM_AGENT_TIMER_SECONDS", "5"))
MAX_WORKERS = int(os.environ.get("DGM_MAX_WORKERS", "16"))


def reconciler() -> Reconciler:
    global _reconciler
    if _reconciler is None:
        # one pooled connection per worker thread (urllib3 keeps 10 by default)
        _reconciler = Reconciler(Kube(pool_size=MAX_WORKERS + 4))
    return _reconciler


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
    # list in pages: one response with thousands of candidates is parsed all at once and
    # leaves the process at that peak for good (Python rarely returns freed memory)
    settings.watching.chunk_size = int(os.environ.get("DGM_LIST_CHUNK_SIZE", "200")) or None
    # Watch only undecided candidates (a selectable field of the CRD): a decided one leaves
    # the watch (kopf sees it as deleted and forgets it), so thousands of them in the
    # archive cost the operator no memory.
    settings.watching.field_selectors[GROUP, CANDIDATES] = ",".join(
        f"status.phase!={phase}" for phase in sorted(FINAL_PHASES))
    reconciler()


@kopf.on.probe(id="api")
def api_reachable(**_: Any) -> bool:
    reconciler().kube.ping()
    return True


def _candidates(namespace: str, names_: list[str]) -> None:
    for other in names_:
        try:
            reconciler().reconcile_candidate(namespace, other)
        except Exception:  # one sibling's trouble must not stop the others
            metrics.ERRORS.labels("candidate").inc()
            log.exception("reconciling candidate %s/%s", namespace, other)


def _reconcile(kind: str, namespace: str, name: str) -> None:
    """Reconcile one agent or candidate (errors counted, then raised for kopf to log), then
    the candidates it hands back: queued siblings, or those still needing work."""
    reconcile = reconciler().reconcile_agent if kind == "agent" else reconciler().reconcile_candidate
    try:
        more = reconcile(namespace, name)
    except Exception:
        metrics.ERRORS.labels(kind).inc()
        raise
    _candidates(namespace, more)


def _candidate(namespace: str, name: str) -> None:
    _reconcile("candidate", namespace, name)


def _agent(namespace: str, name: str) -> None:
    _reconcile("agent", namespace, name)


@kopf.on.event(GROUP, VERSION, CANDIDATES)
def candidate_event(event: dict[str, Any], body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    if event.get("type") == "DELETED":
        reconciler().forget("candidate", namespace, name)
        return
    if (body.get("status") or {}).get("phase") in FINAL_PHASES:
        return  # decided: nothing to do, not even a GET (thousands of them at start-up)
    _candidate(namespace, name)

# There is deliberately no timer on candidates: kopf keeps a copy of every object a timer
# is declared for, thousands of decided candidates included. The agent's timer lists its
# candidates anyway and hands back those that still need work (observed.needs_attention).


@kopf.on.event("batch", "v1", "jobs", labels={constants.LABEL_MANAGED_BY: constants.FIELD_MANAGER})
def job_event(event: dict[str, Any], body: kopf.Body, namespace: str, **_: Any) -> None:
    """A finished evaluation Job reconciles its owner right away."""
    if event.get("type") == "DELETED":
        return
    if not jobs.is_finished(body):
        return
    labels = body.get("metadata", {}).get("labels") or {}
    if labels.get(constants.LABEL_CANDIDATE):
        _candidate(namespace, labels[constants.LABEL_CANDIDATE])
    elif labels.get(constants.LABEL_AGENT):
        _agent(namespace, labels[constants.LABEL_AGENT])


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
    labels = body.get("metadata", {}).get("labels") or {}
    if labels.get(constants.LABEL_CANDIDATE):
        _candidate(namespace, labels[constants.LABEL_CANDIDATE])
    elif labels.get(constants.LABEL_AGENT):
        _agent(namespace, labels[constants.LABEL_AGENT])


@kopf.on.event(GROUP, VERSION, AGENTS)
def agent_event(event: dict[str, Any], namespace: str, name: str, **_: Any) -> None:
    if event.get("type") == "DELETED":
        return
    _agent(namespace, name)


@kopf.timer(GROUP, VERSION, AGENTS, interval=AGENT_TIMER_SECONDS)
def agent_timer(namespace: str, name: str, **_: Any) -> None:
    _agent(namespace, name)
