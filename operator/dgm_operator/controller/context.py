"""What every reconcile pass shares: the API, the clock, per-object locks, the agents'
schedule, crash-test failpoints. One :class:`Context` per operator process."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

from .. import __version__
from .kubeapi import KubeAPI
from .schedule import Schedule

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def wall_clock() -> float:
    return dt.datetime.now(dt.timezone.utc).timestamp()


def iso(seconds: float) -> str:
    """RFC 3339 in UTC with second precision, as the API server writes times."""
    stamp = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(microsecond=0)
    return stamp.isoformat().replace("+00:00", "Z")


def parse_time(value: object) -> float | None:
    """Seconds since the epoch of an RFC 3339 string or datetime; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def default_proposer_image() -> str:
    """The image of proposal Jobs (``dgm propose-llm``, ``dgm proposal-result``): the chart sets
    ``DGM_PROPOSER_IMAGE`` to the operator's own image."""
    return os.environ.get("DGM_PROPOSER_IMAGE") or f"dgm-operator:{__version__}"


def failpoint(name: str) -> None:
    """Crash-safety test hook: with ``DGM_FAILPOINT=name`` the operator SIGKILLs itself here,
    between two writes, so tests can show a restart neither loses nor duplicates work."""
    if os.environ.get("DGM_FAILPOINT") == name:
        log.warning("failpoint %s: killing the operator", name)
        os.kill(os.getpid(), signal.SIGKILL)


class Locks:
    """Re-entrant locks per (kind, namespace, name): work on one candidate, and on one
    agent (apply, rollback, admission to Testing), is serialised inside this process."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str, str], threading.RLock] = defaultdict(threading.RLock)
        self._guard = threading.Lock()

    def __call__(self, kind: str, namespace: str, name: str) -> threading.RLock:
        with self._guard:
            return self._locks[(kind, namespace, name)]

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Drop the lock of an object that needs no more work (decided or deleted)."""
        with self._guard:
            self._locks.pop((kind, namespace, name), None)

    def __len__(self) -> int:
        return len(self._locks)


@dataclass
class Context:
    kube: KubeAPI
    clock: Clock = wall_clock
    locks: Locks = field(default_factory=Locks)
    # Namespaces whose deny-egress NetworkPolicy this process created or found: one
    # create per namespace and process instead of one per Job.
    sandboxed_namespaces: set[str] = field(default_factory=set)
    proposer_image: str = field(default_factory=default_proposer_image)
    # When each agent's next pass is due (an agent pass plans its next proposal here).
    schedule: Schedule = field(default_factory=Schedule)

    def now(self) -> str:
        return iso(self.clock())

    def now_datetime(self) -> dt.datetime:
        """The clock's time for datetime fields of the models (second precision, UTC)."""
        return dt.datetime.fromtimestamp(int(self.clock()), dt.timezone.utc)
