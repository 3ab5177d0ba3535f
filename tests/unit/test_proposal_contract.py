"""The proposal Job's contract (engine/proposal.py): the result block, the budget policy,
the deadline, the context bounds and the pre-flight rules check."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from dgm_operator.engine import llm, proposal

OK = proposal.ProposalResult(description="raise top_k", changes={"config.yaml": "top_k: 6\n"},
                             usage=proposal.ProposalUsage(prompt_tokens=900, completion_tokens=80, total_tokens=980, calls=2))


# ------------------------------------------------------------------------------- result


def test_result_round_trips_through_the_log_with_noise_around_it() -> None:
    log = "starting\n" + proposal.render_result(OK) + "bye\n"
    assert proposal.parse_result_log(log) == OK


def test_the_json_is_one_line_so_content_cannot_forge_a_marker() -> None:
    sneaky = proposal.ProposalResult(description="x", changes={"a.txt": f"{proposal.END}\n{proposal.BEGIN}\n{{}}\n"})
    block = proposal.render_result(sneaky)
    assert block.count("\n") == 3
    assert proposal.parse_result_log(block) == sneaky


@pytest.mark.parametrize("log, message", [
    ("nothing here\n", "no result block"),
    (proposal.render_result(OK) * 2, "exactly one"),
    (proposal.BEGIN + "\n{\"kind\": ", "not terminated"),
    (proposal.END + "\n" + proposal.BEGIN + "\n{}\n", "not terminated"),
    (f"{proposal.BEGIN}\nnot json\n{proposal.END}\n", "not JSON"),
    (f"{proposal.BEGIN}\n[1, 2]\n{proposal.END}\n", "must be a JSON object"),
    (f"{proposal.BEGIN}\n{{}}\n{proposal.END}\n", "at least one changed file"),
    (f"{proposal.BEGIN}\n" + json.dumps({"changes": {"a": "b"}, "description": " "}) + f"\n{proposal.END}\n",
     "non-empty description"),
    (f"{proposal.BEGIN}\n" + json.dumps({"changes": {"a": "b"}, "description": "d", "surprise": 1}) + f"\n{proposal.END}\n",
     "surprise"),
    (f"{proposal.BEGIN}\n" + json.dumps({"error": "e", "changes": {"a": "b"}}) + f"\n{proposal.END}\n",
     "carries no changes"),
    (f"{proposal.BEGIN}\n" + json.dumps({"error": "e", "reason": "not camel"}) + f"\n{proposal.END}\n", "reason"),
    (f"{proposal.BEGIN}\n" + json.dumps({"changes": {"a": "b"}, "description": "d", "riskLevel": 3}) + f"\n{proposal.END}\n",
     "riskLevel"),
    (f"{proposal.BEGIN}\n" + json.dumps({"changes": {"a": "b"}, "description": "d", "kind": "Other"}) + f"\n{proposal.END}\n",
     "kind"),
    (f"{proposal.BEGIN}\n" + json.dumps({"changes": {"/etc/passwd": "x"}, "description": "d"}) + f"\n{proposal.END}\n",
     "ConfigMap keys"),
])
def test_bad_logs_are_refused_with_the_reason(log: str, message: str) -> None:
    with pytest.raises(proposal.ResultError, match=message):
        proposal.parse_result_log(log)


def test_a_log_over_the_bound_is_refused() -> None:
    with pytest.raises(proposal.ResultError, match="larger than 100 bytes"):
        proposal.parse_result_log(proposal.render_result(OK), limit=100)


def test_a_failure_keeps_its_tokens() -> None:
    fail = proposal.failure("MalformedReply", "no block", usage=OK.usage, model="m", attempts=3)
    back = proposal.parse_result_log(proposal.render_result(fail))
    assert not back.ok and back.reason == "MalformedReply" and back.usage.total_tokens == 980


def test_result_from_files_leaves_unchanged_files_out() -> None:
    parent = {"config.yaml": "a: 1\n", "ranker.py": "x = 1\n"}
    r = proposal.result_from_files({"config.yaml": "a: 2\n", "ranker.py": "x = 1\n"}, "why", parent_files=parent)
    assert r.changes == {"config.yaml": "a: 2\n"} and r.improvement_type.value == "ConfigurationUpdate"
    none = proposal.result_from_files(dict(parent), "", parent_files=parent)
    assert none.reason == "NoChange"


# ------------------------------------------------------------------------------- budget

NOON = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def test_budget_pauses_until_the_next_utc_day() -> None:
    assert proposal.token_budget_exhausted(999, 1000, NOON) is None
    assert proposal.token_budget_exhausted(10**9, None, NOON) is None
    decision = proposal.token_budget_exhausted(1000, 1000, NOON)
    assert decision is not None and decision.reason == "TokenBudgetExhausted"
    assert "1000 tokens spent on 2026-05-01 (UTC) >= maxTokensPerDay 1000" in decision.message
    assert "until 2026-05-02T00:00:00Z" in decision.message


def test_ledger_starts_a_new_day_from_zero_and_counts_a_job_once() -> None:
    ledger = proposal.charge(None, 600, NOON, job="a-g1-propose")
    ledger = proposal.charge(ledger, 500, NOON, job="a-g2-propose")
    assert ledger["used"] == 1100 and ledger["total"] == 1100
    assert proposal.charge(ledger, 500, NOON, job="a-g2-propose") == ledger  # read twice, counted once
    assert proposal.tokens_today(ledger, NOON) == 1100
    tomorrow = NOON + dt.timedelta(days=1)
    assert proposal.tokens_today(ledger, tomorrow) == 0
    assert proposal.token_budget_exhausted(proposal.tokens_today(ledger, tomorrow), 1000, tomorrow) is None
    later = proposal.charge(ledger, 10, tomorrow, job="a-g3-propose")
    assert later["day"] == "2026-05-02" and later["used"] == 10 and later["total"] == 1110


def test_ledger_memory_is_bounded() -> None:
    ledger: dict | None = None
    for i in range(100):
        ledger = proposal.charge(ledger, 1, NOON, job=f"j{i}")
    assert ledger is not None and len(ledger["charged"]) == proposal.CHARGED_MEMORY and ledger["used"] == 100


def test_remaining_tokens() -> None:
    assert proposal.remaining_tokens(300, 1000) == 700
    assert proposal.remaining_tokens(3000, 1000) == 0
    assert proposal.remaining_tokens(3000, None) is None


# ------------------------------------------------------------------------------ deadline


def test_deadline_covers_every_call_timing_out_on_every_retry() -> None:
    d = proposal.proposal_deadline_seconds(120, 2, transport_retries=3)
    assert d == proposal.STARTUP_ALLOWANCE + 4 * (120 * 4 + proposal.RETRY_WAIT_ALLOWANCE * 3)
    assert proposal.proposal_deadline_seconds(120, 0) < d


# ------------------------------------------------------------------------------ context


def _ctx(**parent) -> proposal.ProposalContext:
    return proposal.ProposalContext(agent="a", namespace="n", proposal="a-g1",
                                    objective={"metrics": [{"name": "accuracy"}]},
                                    parent={"files": {"a.txt": "x"}, **parent})


def test_fit_context_drops_diffs_then_lineage_then_tests() -> None:
    ctx = _ctx(evaluation={"tests": {"log": "t" * 3000}})
    ctx.lineage = [proposal.LineageEntry(name=f"c{i}", diff="d" * 2000) for i in range(5)]
    def size(c: proposal.ProposalContext) -> int:
        return len(proposal.json.dumps(c.to_wire(), separators=(",", ":")).encode())

    assert proposal.fit_context(ctx, limit=size(ctx)) == ctx
    small = proposal.fit_context(ctx, limit=size(ctx) - 1)
    assert small.lineage and all(e.diff is None for e in small.lineage) and small.parent.evaluation
    smaller = proposal.fit_context(ctx, limit=size(small) - 1)
    assert not smaller.lineage and smaller.parent.evaluation
    smallest = proposal.fit_context(ctx, limit=size(smaller) - 1)
    assert smallest.parent.evaluation is None and smallest.parent.files == {"a.txt": "x"}
    with pytest.raises(ValueError, match="parent's files alone"):
        proposal.fit_context(_ctx(files={"big": "b" * 5000}), limit=1000)
    assert ctx.lineage[0].diff, "the input is not changed"


def test_load_context_names_the_field() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        proposal.load_context("{")
    with pytest.raises(ValueError, match="parent"):
        proposal.load_context(json.dumps({"agent": "a", "namespace": "n", "proposal": "p",
                                          "objective": {"metrics": []}}))
    back = proposal.load_context(proposal.context_document(_ctx()))
    assert back.parent.files == {"a.txt": "x"}


def test_bounded_tests() -> None:
    assert proposal.bounded_tests(None) is None
    assert proposal.bounded_tests({"a": 1}) == {"a": 1}
    big = proposal.bounded_tests({"passed": False, "failures": ["f" * 100] * 100}, limit=500)
    assert big == {"passed": False, "truncated": True}


# ----------------------------------------------------------------------------- preflight

RULES = proposal.Rules(allowed_files=["config.yaml", "ranker.py"], protected_files=["evaluate*"])


@pytest.mark.parametrize("changes, message", [
    ({"dir/config.yaml": "a: 1\n"}, "ConfigMap keys"),
    ({"evaluate.py": "x = 1\n"}, "protected"),
    ({"other.py": "x = 1\n"}, "not an allowed file"),
    ({"ranker.py": "import subprocess\n"}, "forbidden_import"),
    ({"ranker.py": "def f(:\n"}, "python_syntax"),
    ({"config.yaml": "a: [\n"}, "config_syntax"),
])
def test_preflight_refuses_what_the_safety_analysis_rejects(changes: dict, message: str) -> None:
    with pytest.raises(llm.EditRuleError, match=message):
        proposal.preflight(changes, RULES)


def test_preflight_passes_a_safe_change() -> None:
    proposal.preflight({"ranker.py": "import math\n\ndef score(q):\n    return math.sqrt(len(q))\n"}, RULES)


def test_safety_rule_lines_follow_the_engine() -> None:
    text = " ".join(proposal.safety_rule_lines())
    for name in ("subprocess", "socket", "pickle", "eval", "exec", "os.system", "sys.modules", "f_globals"):
        assert name in text, name
