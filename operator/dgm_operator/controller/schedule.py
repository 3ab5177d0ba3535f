"""When each agent's next pass is due, and the one thread that starts it.

An agent's pass is due at the earliest of:

* ``due``: the time its last pass planned (the next proposal of the improvement interval);
* ``poke``: something the agent depends on changed (one of its candidates, its target), a
  short delay later so a burst of changes makes one pass;
* ``retry``: after a pass that raised, with a backoff (5 s doubling up to 5 minutes);
* ``resync``: the safety net for a missed event or a lost wake-up, every
  ``DGM_RESYNC_SECONDS`` (default 300) ± 20% jitter, so 1,000 agents do not resync in step.
  Any pass, whatever started it, moves the resync on.

Nothing polls: one thread sleeps until the earliest due time or a wake-up, and hands due
agents to a callback (which queues the pass on a worker pool). While the gate is closed (this
replica is a standby) nothing starts.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, agent)
INF = float("inf")
RETRY_FIRST, RETRY_MAX = 5.0, 300.0


@dataclass
class _Due:
    resync_at: float
    planned: float = INF
    poked: float = INF
    retry: float = INF
    failures: int = 0

    def next(self) -> tuple[float, str]:
        return min((self.planned, "due"), (self.poked, "poke"), (self.retry, "retry"), (self.resync_at, "resync"))


class Schedule:
    """The due times of the tracked agents (thread-safe). :meth:`pop_due` is the whole
    decision, so it can be tested with a fake clock; :meth:`run` is the thread around it."""

    def __init__(self, clock: Callable[[], float] = time.time, resync: float = 300.0, jitter: float = 0.2,
                 rng: random.Random | None = None) -> None:
        if resync <= 0:
            raise ValueError(f"resync must be positive seconds, got {resync}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.clock, self.resync, self.jitter = clock, resync, jitter
        self._rng = rng or random.Random()
        self._cond = threading.Condition()
        self._state: dict[Key, _Due] = {}
        self._heap: list[tuple[float, int, Key]] = []
        self._seq = itertools.count()
        self._stopped = False

    def _resync_at(self, now: float) -> float:
        return now + self.resync * self._rng.uniform(1 - self.jitter, 1 + self.jitter)

    def _push(self, key: Key) -> None:
        at, _ = self._state[key].next()
        heapq.heappush(self._heap, (at, next(self._seq), key))
        if len(self._heap) > 4 * len(self._state) + 64:  # drop stale entries now and then
            self._heap = [(s.next()[0], next(self._seq), k) for k, s in self._state.items()]
            heapq.heapify(self._heap)
        self._cond.notify_all()

    # -- what the feed and the passes tell it ----------------------------------------------
    def track(self, key: Key) -> None:
        """An agent exists: its first resync comes one jittered period from now."""
        with self._cond:
            if key not in self._state:
                self._state[key] = _Due(resync_at=self._resync_at(self.clock()))
                self._push(key)

    def forget(self, key: Key) -> None:
        with self._cond:
            self._state.pop(key, None)

    def clear(self) -> None:
        with self._cond:
            self._state.clear()
            self._heap.clear()

    def tracked(self, key: Key) -> bool:
        with self._cond:
            return key in self._state

    def __len__(self) -> int:
        with self._cond:
            return len(self._state)

    def plan(self, key: Key, at: float | None) -> None:
        """A pass of the agent finished: it is next due at ``at`` (None: nothing planned) and
        its resync moves on; a run of failures ends."""
        with self._cond:
            state = self._state.get(key)
            if state is None:
                return  # not (or no longer) tracked: a deleted agent is not brought back
            state.planned = INF if at is None else at
            state.resync_at = self._resync_at(self.clock())
            state.failures, state.retry = 0, INF
            self._push(key)

    def poke(self, key: Key, delay: float = 0.0) -> None:
        """Something the agent depends on changed: a pass within ``delay`` seconds."""
        with self._cond:
            state = self._state.get(key)
            if state is not None:
                state.poked = min(state.poked, self.clock() + delay)
                self._push(key)

    def failed(self, key: Key) -> float:
        """A pass of the agent raised: retry with a backoff. Returns the delay."""
        with self._cond:
            state = self._state.get(key)
            if state is None:
                return 0.0
            state.failures += 1
            delay = min(RETRY_MAX, RETRY_FIRST * 2.0 ** (state.failures - 1))
            state.retry = self.clock() + delay
            self._push(key)
            return delay

    def next_due(self, key: Key) -> tuple[float, str] | None:
        with self._cond:
            state = self._state.get(key)
            return state.next() if state is not None else None

    def wake(self) -> None:
        """Re-check the gate now (the replica's role changed)."""
        with self._cond:
            self._cond.notify_all()

    # -- the decision ------------------------------------------------------------------------
    def pop_due(self, now: float | None = None) -> list[tuple[Key, str, float]]:
        """The agents due at ``now``: (key, what made it due, how late). Each is marked as
        started: its poke and retry are consumed, a due plan is consumed (the pass plans
        again), a due resync moves on one period."""
        with self._cond:
            now = self.clock() if now is None else now
            out: list[tuple[Key, str, float]] = []
            while self._heap and self._heap[0][0] <= now:
                _, _, key = heapq.heappop(self._heap)
                state = self._state.get(key)
                if state is None:
                    continue
                at, trigger = state.next()
                if at > now:
                    continue  # a stale entry; the current one is in the heap
                out.append((key, trigger, now - at))
                if state.poked <= now:
                    state.poked = INF
                if state.retry <= now:
                    state.retry = INF
                if state.planned <= now:
                    state.planned = INF
                if state.resync_at <= now:
                    state.resync_at = self._resync_at(now)
                self._push(key)
            return out

    def _sleep_for(self, now: float) -> float | None:
        return max(0.0, self._heap[0][0] - now) if self._heap else None

    # -- the thread ------------------------------------------------------------------------------
    def run(self, start: Callable[[Key, str, float], None], gate: Callable[[], bool] = lambda: True) -> None:
        """Start due passes until :meth:`stop`: ``start(key, trigger, lag)`` must not block
        (it queues the pass). While ``gate()`` is False nothing starts."""
        while True:
            with self._cond:
                if self._stopped:
                    return
                if not gate():
                    self._cond.wait(5.0)  # a local check, woken early by wake()
                    continue
                due = self.pop_due()
                if not due:
                    wait = self._sleep_for(self.clock())
                    self._cond.wait(60.0 if wait is None else min(wait, 60.0))
                    continue
            for key, trigger, lag in due:
                try:
                    start(key, trigger, lag)
                except Exception:  # the thread must outlive one bad start
                    log.exception("starting the pass of agent %s/%s", *key)

    def start_thread(self, start: Callable[[Key, str, float], None],
                     gate: Callable[[], bool] = lambda: True) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(start, gate), name="dgm-schedule", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
