"""The agents' schedule: due times from plans, pokes, retries and the jittered resync,
decided on a fake clock; and the thread around it, gated."""

from __future__ import annotations

import random
import threading
import time

import pytest

from dgm_operator.controller.schedule import RETRY_FIRST, RETRY_MAX, Schedule

A, B = ("ns", "a"), ("ns", "b")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(resync: float = 300.0, jitter: float = 0.2) -> tuple[Schedule, Clock]:
    clock = Clock()
    return Schedule(clock=clock, resync=resync, jitter=jitter, rng=random.Random(1)), clock


def test_nothing_is_due_before_its_time_and_a_plan_fires_once():
    s, clock = make()
    s.track(A)
    s.plan(A, clock.t + 60)
    assert s.pop_due(clock.t + 59.9) == []
    assert s.pop_due(clock.t + 60.5) == [(A, "due", pytest.approx(0.5))]
    assert s.pop_due(clock.t + 61) == []  # consumed: the pass plans again


def test_the_resync_is_jittered_and_recurs():
    s, clock = make(resync=100, jitter=0.2)
    firsts = []
    for i in range(50):
        key = ("ns", f"agent-{i}")
        s.track(key)
        firsts.append(s.next_due(key)[0] - clock.t)
    assert all(80 <= f <= 120 for f in firsts) and max(firsts) - min(firsts) > 10
    due = s.pop_due(clock.t + 120)
    assert len(due) == 50 and {t for _, t, _ in due} == {"resync"}
    at, trigger = s.next_due(("ns", "agent-0"))
    assert trigger == "resync" and 200 <= at - clock.t <= 240
    assert s.pop_due(clock.t + 150) == []


def test_pokes_coalesce_into_one_pass():
    s, clock = make()
    s.track(A)
    s.poke(A, delay=2.0)
    clock.t += 1
    s.poke(A, delay=2.0)  # later than the first: the first one stands
    assert s.next_due(A) == (clock.t + 1.0, "poke")
    assert [k for k, _, _ in s.pop_due(clock.t + 5)] == [A]


def test_failures_back_off_and_a_good_pass_ends_them():
    s, clock = make(resync=1e6)
    s.track(A)
    delays = [s.failed(A) for _ in range(9)]
    assert delays[:3] == [RETRY_FIRST, 2 * RETRY_FIRST, 4 * RETRY_FIRST] and delays[-1] == RETRY_MAX
    s.plan(A, None)
    assert s.next_due(A)[1] == "resync"
    assert s.failed(A) == RETRY_FIRST


def test_untracked_and_forgotten_agents_never_fire():
    s, clock = make()
    s.plan(A, clock.t + 1)  # not tracked: a pass of a deleted agent does not bring it back
    s.poke(A)
    assert s.next_due(A) is None and s.pop_due(clock.t + 1e6) == []
    s.track(B)
    s.forget(B)
    assert s.pop_due(clock.t + 1e6) == []


def test_each_due_agent_comes_once_with_what_made_it_due():
    s, clock = make(resync=50, jitter=0.0)
    s.track(A)
    s.track(B)
    s.plan(A, clock.t + 10)
    s.poke(B, 5)
    due = s.pop_due(clock.t + 60)  # A's plan and resync, B's poke and resync: one each
    assert sorted((k, t) for k, t, _ in due) == [(A, "due"), (B, "poke")]


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="resync"):
        Schedule(resync=0)
    with pytest.raises(ValueError, match="jitter"):
        Schedule(jitter=1.5)


def test_the_thread_starts_due_passes_only_through_an_open_gate():
    s = Schedule(resync=1e6)
    started: list[tuple[tuple[str, str], str]] = []
    fired = threading.Event()
    gate = threading.Event()

    def start(key, trigger, lag):
        started.append((key, trigger))
        fired.set()

    s.start_thread(start, gate=gate.is_set)
    try:
        s.track(A)
        s.poke(A)
        assert not fired.wait(0.3)  # a standby starts nothing
        gate.set()
        s.wake()
        assert fired.wait(5)
        assert started == [(A, "poke")]
        fired.clear()
        s.plan(A, time.time() + 0.2)  # a wake-up for a new, earlier due time
        assert fired.wait(5) and started[-1] == (A, "due")
    finally:
        s.stop()
