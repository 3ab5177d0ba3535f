"""Which replica acts: kopf's peering, read the way kopf reads it.

With ``dgm run --peering NAME`` every replica runs kopf with mandatory peering, and kopf
pauses the watch streams of every replica except the one with the highest priority among
the live peers. The default priority comes from the start time (:func:`start_priority`):
the replica that has been up longest keeps the role, and a restarted replica never takes
it from a running one. When the active replica dies, its record in the peering object
expires after its lifetime (``DGM_PEERING_LIFETIME``, default 20 s). The standby then
resumes, lists everything and acts.

kopf does not expose its paused state, so the operator follows the same peering object(s)
with the same rule (:func:`decide`). This decides three things:

* whether the operator's own scheduler may start passes (a standby starts none);
* when to empty the read model (a replica that turns standby stops watching, so what it
  holds would go stale);
* the readiness probe: ``/readyz`` answers 200 only on the active replica, so
  ``kubectl get pods`` shows which one it is.

kopf's peering is not a lock. Two replicas that start within the same instant may both act
for the moment it takes each to see the other's first keep-alive. Every step of the
operator is idempotent (deterministic names, AlreadyExists taken as done, state read back),
so such an overlap neither loses nor duplicates work.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any, Callable, Mapping

from . import metrics as telemetry

log = logging.getLogger(__name__)

PRIORITY_BASE = 10 ** 13  # above any start time in milliseconds until the year 2286
DEFAULT_LIFETIME = 60  # what kopf assumes for a peer that does not say


def start_priority(started: float) -> int:
    """A priority that is higher the earlier the process started (milliseconds)."""
    return PRIORITY_BASE - int(started * 1000)


def _time(value: Any) -> float | None:
    if not value:
        return None
    try:
        stamp = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.timestamp()


def decide(status: Mapping[str, Any] | None, identity: str, priority: int, now: float) -> tuple[bool, float | None]:
    """(whether kopf with this identity and priority acts, seconds until that may change).

    kopf's rule: a live peer with a higher priority, or with the same one, pauses this
    operator; a peer is dead once its ``lastseen`` plus its ``lifetime`` has passed. No
    peering object (``status`` None) pauses it as well (kopf's peering is mandatory here).
    """
    if status is None:
        return False, None
    blockers: list[float] = []
    for peer, info in status.items():
        if peer == identity or not isinstance(info, Mapping):
            continue
        try:
            lifetime = float(info.get("lifetime", DEFAULT_LIFETIME))
            their = int(info.get("priority", 0))
        except (TypeError, ValueError):
            continue
        seen = _time(info.get("lastseen"))
        deadline = (now if seen is None else seen) + lifetime
        if deadline <= now:
            continue  # dead: its record expired
        if their >= priority:
            blockers.append(deadline)
    if blockers:
        return False, max(0.0, min(blockers) - now)
    return True, None


class Activity:
    """Whether this replica acts, from the peering object of each watched scope (a
    namespace, or None for the cluster-wide ClusterKopfPeering). Without peering
    (``standalone``) it always acts. Listeners get the new value on each change."""

    def __init__(self, identity: str, priority: int, scopes: list[str | None] | None = None, *,
                 standalone: bool = False, clock: Callable[[], float] = time.time) -> None:
        self.identity, self.priority, self.standalone, self.clock = identity, priority, standalone, clock
        self._status: dict[str | None, Mapping[str, Any] | None] = {s: None for s in (scopes or [None])}
        self._cond = threading.Condition()
        self._active = standalone
        self._recheck: float | None = None
        self.listeners: list[Callable[[bool], None]] = []
        telemetry.ACTIVE.set(1 if self._active else 0)

    def is_active(self) -> bool:
        return self._active

    def update(self, scope: str | None, obj: Mapping[str, Any] | None) -> None:
        """The peering object of ``scope`` as the watch sees it now (None: absent)."""
        with self._cond:
            self._status[scope] = None if obj is None else dict(obj.get("status") or {})
            self._cond.notify_all()
        self.evaluate()

    def evaluate(self) -> bool:
        if self.standalone:
            return True
        now = self.clock()
        with self._cond:
            verdicts = [decide(status, self.identity, self.priority, now) for status in self._status.values()]
            active = all(v[0] for v in verdicts)
            waits = [v[1] for v in verdicts if v[1] is not None]
            self._recheck = now + min(waits) + 0.05 if waits else None
            changed = active != self._active
            self._active = active
        if changed:
            telemetry.ACTIVE.set(1 if active else 0)
            log.info("this replica is now %s (identity %s, priority %d)", "ACTIVE" if active else "standby",
                     self.identity, self.priority)
            for listener in list(self.listeners):
                try:
                    listener(active)
                except Exception:
                    log.exception("activity listener")
        return active

    def run(self, stop: threading.Event) -> None:
        """Re-evaluate when a blocking peer's record expires (a watch event re-evaluates at once)."""
        while not stop.is_set():
            with self._cond:
                wait = None if self._recheck is None else max(0.0, self._recheck - self.clock())
                self._cond.wait(30.0 if wait is None else min(wait, 30.0))
            self.evaluate()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
