"""Which replica acts: kopf's peering rule, as the operator reads it (the readiness probe
and the scheduler's gate follow it)."""

from __future__ import annotations

import datetime as dt

from dgm_operator.controller.peering import Activity, decide, start_priority

NOW = 1_767_225_600.0


def seen(seconds_ago: float) -> str:
    return dt.datetime.fromtimestamp(NOW - seconds_ago, dt.timezone.utc).isoformat()


def peer(priority: int, ago: float = 1.0, lifetime: int = 20) -> dict:
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen(ago)}


def test_no_peering_object_means_standby():
    assert decide(None, "me", 10, NOW) == (False, None)


def test_alone_or_above_every_live_peer_means_active():
    assert decide({}, "me", 10, NOW) == (True, None)
    assert decide({"me": peer(10), "other": peer(5)}, "me", 10, NOW) == (True, None)


def test_a_live_peer_with_a_higher_or_the_same_priority_pauses_until_it_expires():
    active, wait = decide({"me": peer(10), "old": peer(11, ago=5)}, "me", 10, NOW)
    assert not active and abs(wait - 15) < 1e-6
    assert decide({"twin": peer(10)}, "me", 10, NOW)[0] is False  # kopf pauses both


def test_a_dead_peer_does_not_count():
    assert decide({"old": peer(99, ago=21)}, "me", 10, NOW) == (True, None)
    assert decide({"old": {"priority": 99, "lastseen": seen(59)}}, "me", 10, NOW)[0] is False  # kopf's 60 s default


def test_garbage_in_the_peering_status_is_skipped():
    assert decide({"x": "nonsense", "y": {"priority": "high"}}, "me", 10, NOW) == (True, None)


def test_the_earlier_start_has_the_higher_priority():
    assert start_priority(NOW) > start_priority(NOW + 0.002)


def test_activity_follows_the_peering_objects_of_all_scopes():
    clock = [NOW]
    changes: list[bool] = []
    act = Activity("me", 10, ["a", "b"], clock=lambda: clock[0])
    act.listeners.append(changes.append)
    assert not act.is_active()
    act.update("a", {"status": {}})
    assert not act.is_active()  # b's object not seen yet
    act.update("b", {"status": {"old": peer(11, ago=0)}})
    assert not act.is_active()
    clock[0] += 21
    act.evaluate()  # the old peer's record expired
    assert act.is_active() and changes == [True]
    act.update("a", None)
    assert not act.is_active() and changes == [True, False]


def test_standalone_always_acts():
    act = Activity("me", 0, standalone=True)
    act.update(None, None)
    assert act.is_active()
