from dgm_operator.controller.conditions import get_condition, is_true, set_condition


def test_transition_time_moves_only_when_status_changes():
    c = set_condition([], "Ready", True, "Ok", "fine", generation=1, now="t1")
    c = set_condition(c, "Ready", True, "StillOk", "still fine", generation=2, now="t2")
    ready = get_condition(c, "Ready")
    assert ready == {"type": "Ready", "status": "True", "reason": "StillOk", "message": "still fine",
                     "lastTransitionTime": "t1", "observedGeneration": 2}
    c = set_condition(c, "Ready", False, "Broken", "no", generation=2, now="t3")
    assert get_condition(c, "Ready")["lastTransitionTime"] == "t3"
    assert not is_true(c, "Ready")


def test_other_conditions_are_kept_in_order():
    c = set_condition([], "A", True, "R", "m", generation=None, now="t")
    c = set_condition(c, "B", False, "R", "m", generation=None, now="t")
    c = set_condition(c, "A", False, "R2", "m2", generation=None, now="t2")
    assert [x["type"] for x in c] == ["A", "B"]
    assert "observedGeneration" not in c[1]
