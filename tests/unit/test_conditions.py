from dgm_operator.controller.conditions import get_condition, is_true, set_condition

T1, T2, T3 = "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z", "2026-01-01T00:00:03Z"


def _when(cond):
    return cond.to_wire()["lastTransitionTime"]


def test_transition_time_moves_only_on_status_change():
    c = set_condition([], "Ready", True, "Ok", "fine", generation=1, now=T1)
    c = set_condition(c, "Ready", True, "StillOk", "still fine", generation=2, now=T2)
    ready = get_condition(c, "Ready")
    assert _when(ready) == T1 and ready.reason == "StillOk" and ready.observed_generation == 2
    assert is_true(c, "Ready")
    c = set_condition(c, "Ready", False, "Broken", "no", generation=2, now=T3)
    assert _when(get_condition(c, "Ready")) == T3
    assert not is_true(c, "Ready")


def test_other_conditions_are_kept_and_messages_bounded():
    c = set_condition([], "A", "Unknown", "Running", "x" * 40000, generation=None, now=T1)
    c = set_condition(c, "B", True, "Done", "ok", generation=None, now=T2)
    assert [x.type for x in c] == ["A", "B"]
    assert len(get_condition(c, "A").message) == 32768
    assert get_condition(c, "C") is None and not is_true(c, "C")
