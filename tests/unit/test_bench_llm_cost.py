"""`dgm bench llm-cost`: the token cost of one proposal for the sample agent (no model)."""

from __future__ import annotations

import json

from dgm_dev.bench import llm_cost
from dgm_operator.engine import llm


def test_every_call_resends_the_conversation_and_fixes_cost_more() -> None:
    ctx = llm_cost.contexts()["first proposal"]
    plain = llm_cost.conversation(ctx, diagnosis_tokens=200, reply_tokens=150, fixes=0, chars_per_token=3.5)
    fixed = llm_cost.conversation(ctx, diagnosis_tokens=200, reply_tokens=150, fixes=2, chars_per_token=3.5)
    first = plain["first_prompt"]
    implement = llm.estimate_tokens(llm.implement_message()["content"])
    assert plain["prompt"] == first + first + 200 + implement  # diagnose, then implement with the diagnosis
    assert plain["completion"] == 350 and plain["calls"] == 2
    assert fixed["calls"] == 4 and fixed["prompt"] > 2 * plain["prompt"]


def test_the_scenarios_grow_and_stay_within_the_prompt_bounds(capsys) -> None:
    assert llm_cost.main(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by = {(r["scenario"], r["fixes"]): r for r in rows}
    first, later, bounds = (by[(s, 0)] for s in ("first proposal", "later proposal", "at the bounds"))
    assert first["first_prompt"] < later["first_prompt"] < bounds["first_prompt"]
    assert all(r["totalLow"] <= r["total"] <= r["totalHigh"] for r in rows)
    assert bounds["first_prompt"] < 12_000  # the bounds hold the prompt of the sample agent well under 16k
