"""`dgm propose-llm` and `dgm proposal-result` as real subprocesses against the STAND-IN
OpenAI-compatible server (devtools/dgm_dev/llm_standin.py: scripted replies, not a model)
on loopback: valid edits, edits that do not apply (then fixed), malformed replies, rule
breaks, timeouts, 429 with Retry-After then success, 5xx, a missing `usage`, and the budget.
No cluster is needed; the same programs run inside the proposal Job. The scenarios the
issue names run as subprocesses; the others call the same `main` in this process (the HTTP
exchange with the stand-in is the same, only the interpreter start-up is saved)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dgm_dev.llm_standin import Script, StandIn
from dgm_operator import cli
from dgm_operator.engine import proposal

DATA = Path(__file__).parent / "testdata" / "llm"
CONTEXT = DATA / "context_sample.json"
PARENT_FILES = json.loads(CONTEXT.read_text())["parent"]["files"]

DIAGNOSIS = ("Three of the failures are abstentions: min_score 1.0 is too high for short questions. "
             "Lowering it to 0.5 answers them; bm25 was not tried yet but is a bigger step.")
GOOD_EDIT = """config.yaml
<<<<<<< SEARCH
  min_score: 1.0       # below this retrieval score the agent abstains
=======
  min_score: 0.5       # below this retrieval score the agent abstains
>>>>>>> REPLACE
"""
STALE_EDIT = GOOD_EDIT.replace("  min_score: 1.0 ", "  min_score: 2.0 ")
MALFORMED = "I would lower min_score to 0.5 in config.yaml."
UNSAFE_EDIT = """ranker.py
<<<<<<< SEARCH
import math
=======
import math
import subprocess
>>>>>>> REPLACE
"""


def run(tmp_path: Path, standin: StandIn | None, *, env: dict | None = None, args: list[str] | None = None,
        context: Path = CONTEXT, inprocess: bool = False) -> tuple[subprocess.CompletedProcess, proposal.ProposalResult | None]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DGM_", "OPENAI_"))}
    full_env.update({"DGM_LLM_MODEL": "stand-in-coder", "DGM_LLM_TIMEOUT_SECONDS": "10",
                     "DGM_LLM_API_KEY": "sk-test-123"})
    if standin is not None:
        full_env["DGM_LLM_BASE_URL"] = standin.base_url
    full_env.update(env or {})
    argv = ["propose-llm", "--context", str(context), *(args or [])]
    if inprocess:
        proc = _inprocess(argv, full_env)
    else:
        proc = subprocess.run([sys.executable, "-m", "dgm_operator.cli", *argv], env=full_env, capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
    result = proposal.parse_result_log(proc.stdout) if proposal.BEGIN in proc.stdout else None
    return proc, result


def _inprocess(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    saved_env, saved_out, saved_err = dict(os.environ), sys.stdout, sys.stderr
    root = logging.getLogger()
    saved_handlers = list(root.handlers)
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(env)
        sys.stdout, sys.stderr = out, err
        logging.getLogger().handlers.clear()  # main() configures logging onto this stderr
        code = cli.main(argv)
    finally:
        sys.stdout, sys.stderr = saved_out, saved_err
        os.environ.clear()
        os.environ.update(saved_env)
        root.handlers[:] = saved_handlers
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def serve(*replies: dict) -> StandIn:
    return StandIn(Script(list(replies)))


def test_valid_edits_become_the_change_and_the_diagnosis_the_description(tmp_path: Path) -> None:
    with serve({"content": DIAGNOSIS}, {"content": GOOD_EDIT}) as standin:
        proc, result = run(tmp_path, standin, env={"DGM_LLM_TEMPERATURE": "0.2", "DGM_LLM_MAX_TOKENS": "800"})
    assert proc.returncode == 0, proc.stderr
    assert result is not None and result.ok, proc.stderr
    assert result.changes == {"config.yaml": PARENT_FILES["config.yaml"].replace("min_score: 1.0", "min_score: 0.5")}
    assert result.description == DIAGNOSIS
    assert result.improvement_type.value == "ParameterTuning"  # config.yaml holds the search space
    received = standin.script.received
    assert len(received) == 2 and result.usage.calls == 2
    # tokens are the API's usage, summed over the calls
    first, second = (r["body"] for r in received)
    assert result.usage.prompt_tokens == sum(len(m["content"]) // 4 for m in first["messages"]) + \
        sum(len(m["content"]) // 4 for m in second["messages"])
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    assert not result.usage.estimated
    # the request: the model, the settings, the key as a bearer token
    assert first["model"] == "stand-in-coder" and first["temperature"] == 0.2 and first["max_tokens"] == 800
    assert received[0]["authorization"] == "Bearer sk-test-123"
    # the DGM's two steps in one conversation
    assert "# Step 1: diagnose" in first["messages"][1]["content"]
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert second["messages"][2]["content"] == DIAGNOSIS
    assert "# Step 2: implement" in second["messages"][3]["content"]
    # the model's replies are in the propose container's log (stderr), the result alone on stdout
    assert "min_score: 0.5" in proc.stderr and proc.stdout.count(proposal.BEGIN) == 1


def test_an_edit_that_does_not_apply_goes_back_with_the_error_and_is_fixed(tmp_path: Path) -> None:
    with serve({"content": DIAGNOSIS}, {"content": STALE_EDIT}, {"content": GOOD_EDIT}) as standin:
        proc, result = run(tmp_path, standin)
    assert result is not None and result.ok, proc.stderr
    assert result.usage.calls == 3 and "min_score: 0.5" in result.changes["config.yaml"]
    third = standin.script.received[2]["body"]["messages"]
    assert third[-2] == {"role": "assistant", "content": STALE_EDIT}
    assert "does not match the file exactly" in third[-1]["content"]
    assert "closest is line" in third[-1]["content"]


def test_malformed_replies_end_as_a_failure_after_the_bounded_fixes(tmp_path: Path) -> None:
    replies = [{"content": DIAGNOSIS}] + [{"content": MALFORMED}] * 5
    with serve(*replies) as standin:
        proc, result = run(tmp_path, standin, env={"DGM_LLM_MAX_FIX_ATTEMPTS": "2"})
    assert proc.returncode == 0
    assert result is not None and not result.ok
    assert result.reason == "MalformedReply"
    assert "no usable edits after 3 replies" in result.error and "no SEARCH/REPLACE block" in result.error
    assert len(standin.script.received) == 4 == result.usage.calls, "diagnose + 1 reply + 2 fixes, no more"
    assert result.usage.total_tokens > 0, "a failure still reports the tokens it spent"


def test_a_rule_break_goes_back_with_the_safety_finding(tmp_path: Path) -> None:
    with serve({"content": DIAGNOSIS}, {"content": UNSAFE_EDIT}, {"content": GOOD_EDIT}) as standin:
        proc, result = run(tmp_path, standin, inprocess=True)
    assert result is not None and result.ok, proc.stderr
    feedback = standin.script.received[2]["body"]["messages"][-1]["content"]
    assert "forbidden_import" in feedback and "subprocess" in feedback


def test_a_rule_break_to_the_end_is_reported_as_such(tmp_path: Path) -> None:
    with serve({"content": DIAGNOSIS}, {"content": UNSAFE_EDIT}) as standin:
        proc, result = run(tmp_path, standin, env={"DGM_LLM_MAX_FIX_ATTEMPTS": "0"}, inprocess=True)
    assert result is not None and result.reason == "EditBreaksRules" and "after 1 reply" in result.error


def test_a_timeout_is_a_failure_with_its_reason(tmp_path: Path) -> None:
    with serve({"content": DIAGNOSIS, "delay": 5}) as standin:
        proc, result = run(tmp_path, standin, env={"DGM_LLM_TIMEOUT_SECONDS": "0.5", "DGM_LLM_MAX_RETRIES": "0"})
    assert result is not None and result.reason == "ModelTimeout", proc.stderr
    assert "did not answer within 0.5s" in result.error


def test_a_timeout_is_retried(tmp_path: Path) -> None:
    with serve({"content": DIAGNOSIS, "delay": 5}, {"content": DIAGNOSIS}, {"content": GOOD_EDIT}) as standin:
        proc, result = run(tmp_path, standin, env={"DGM_LLM_TIMEOUT_SECONDS": "0.5", "DGM_LLM_MAX_RETRIES": "1"}, inprocess=True)
    assert result is not None and result.ok, proc.stderr
    assert len(standin.script.received) == 3


def test_a_429_is_retried_after_retry_after_then_succeeds(tmp_path: Path) -> None:
    with serve({"status": 429, "headers": {"Retry-After": "1"}, "content": "slow down"},
               {"content": DIAGNOSIS}, {"content": GOOD_EDIT}) as standin:
        proc, result = run(tmp_path, standin)
    assert result is not None and result.ok, proc.stderr
    times = [r["time"] for r in standin.script.received]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.95, "the retry waited for Retry-After (1 s)"
    assert result.usage.calls == 2, "the 429 spent no tokens"


def test_429_for_good_ends_as_rate_limited(tmp_path: Path) -> None:
    with serve(*[{"status": 429, "headers": {"Retry-After": "0.1"}}] * 3) as standin:
        proc, result = run(tmp_path, standin, env={"DGM_LLM_MAX_RETRIES": "2"}, inprocess=True)
    assert result is not None and result.reason == "ModelRateLimited", proc.stderr
    assert len(standin.script.received) == 3


def test_a_5xx_is_retried(tmp_path: Path) -> None:
    with serve({"status": 503, "headers": {"Retry-After": "0.1"}}, {"content": DIAGNOSIS},
               {"content": GOOD_EDIT}) as standin:
        proc, result = run(tmp_path, standin, inprocess=True)
    assert result is not None and result.ok, proc.stderr


def test_a_reply_that_is_not_a_completion_is_a_model_error(tmp_path: Path) -> None:
    with serve({"raw": "<html>gateway</html>"}) as standin:
        proc, result = run(tmp_path, standin, env={"DGM_LLM_MAX_RETRIES": "0"}, inprocess=True)
    assert result is not None and result.reason == "ModelError", proc.stderr


def test_missing_usage_is_estimated_and_flagged(tmp_path: Path) -> None:
    with serve({"content": DIAGNOSIS, "usage": None}, {"content": GOOD_EDIT, "usage": None}) as standin:
        proc, result = run(tmp_path, standin, inprocess=True)
    assert result is not None and result.ok and result.usage.estimated and result.usage.prompt_tokens > 500


def test_the_budget_stops_the_conversation(tmp_path: Path) -> None:
    big = {"prompt_tokens": 5000, "completion_tokens": 100, "total_tokens": 5100}
    with serve({"content": DIAGNOSIS, "usage": big}, {"content": GOOD_EDIT}) as standin:
        proc, result = run(tmp_path, standin, env={"DGM_LLM_TOKEN_BUDGET": "3000"})
    assert result is not None and result.reason == "TokenBudgetExhausted", proc.stderr
    assert result.usage.total_tokens == 5100 and len(standin.script.received) == 1


def test_a_budget_spent_mid_fix_stops_before_the_next_call(tmp_path: Path) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}
    with serve({"content": DIAGNOSIS, "usage": usage}, {"content": STALE_EDIT, "usage": usage},
               {"content": GOOD_EDIT, "usage": usage}) as standin:
        proc, result = run(tmp_path, standin, env={"DGM_LLM_TOKEN_BUDGET": "2000"}, inprocess=True)
    assert result is not None and result.reason == "TokenBudgetExhausted"
    assert "does not match" in result.error and len(standin.script.received) == 2


def test_no_budget_left_calls_nothing(tmp_path: Path) -> None:
    with serve({"content": DIAGNOSIS}) as standin:
        proc, result = run(tmp_path, standin, env={"DGM_LLM_TOKEN_BUDGET": "0"}, inprocess=True)
    assert result is not None and result.reason == "TokenBudgetExhausted"
    assert standin.script.received == []


def test_bad_settings_and_a_missing_context_are_failures_with_the_field(tmp_path: Path) -> None:
    proc, result = run(tmp_path, None, env={"DGM_LLM_BASE_URL": "ftp://x", "DGM_LLM_MAX_TOKENS": "many"}, inprocess=True)
    assert proc.returncode == 0 and result is not None and result.reason == "InvalidSettings"
    assert "DGM_LLM_BASE_URL" in result.error
    with serve() as standin:
        proc, result = run(tmp_path, standin, env={"DGM_LLM_MAX_TOKENS": "many"}, inprocess=True)
    assert result is not None and result.reason == "InvalidSettings" and "DGM_LLM_MAX_TOKENS" in result.error
    proc, result = run(tmp_path, None, context=tmp_path / "missing.json", inprocess=True)
    assert result is not None and result.reason == "InvalidContext"


def test_job_mode_writes_result_json_and_the_result_program_prints_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with serve({"content": DIAGNOSIS}, {"content": GOOD_EDIT}) as standin:
        proc, result = run(tmp_path, standin, args=["--out", str(out)])
    assert proc.returncode == 0 and result is None and proc.stdout == ""
    assert (out / "result.json").is_file()
    printed = subprocess.run([sys.executable, "-m", "dgm_operator.cli", "proposal-result", "--out", str(out),
                              "--context", str(CONTEXT)], capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    back = proposal.parse_result_log(printed.stdout)
    assert back.ok and "min_score: 0.5" in back.changes["config.yaml"]


def test_the_result_program_reads_a_coding_agents_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "files").mkdir(parents=True)
    (out / "files" / "config.yaml").write_text(PARENT_FILES["config.yaml"].replace("top_k: 6", "top_k: 8"))
    (out / "files" / "ranker.py").write_text(PARENT_FILES["ranker.py"])  # unchanged: left out
    (out / "description.md").write_text("more context for the reader\n")
    (out / "usage.json").write_text(json.dumps({"promptTokens": 7, "completionTokens": 3, "totalTokens": 10}))
    printed = subprocess.run([sys.executable, "-m", "dgm_operator.cli", "proposal-result", "--out", str(out),
                              "--context", str(CONTEXT)], capture_output=True, text=True, timeout=60)
    back = proposal.parse_result_log(printed.stdout)
    assert back.ok and set(back.changes) == {"config.yaml"} and back.description == "more context for the reader"
    assert back.usage.total_tokens == 10


@pytest.mark.parametrize("setup, reason", [
    (lambda out: None, "NoResult"),
    (lambda out: (out / "result.json").write_text("{not json"), "InvalidResult"),
    (lambda out: (out / "result.json").write_text(json.dumps({"changes": {}})), "InvalidResult"),
    (lambda out: ((out / "files" / "sub").mkdir(parents=True)), "InvalidResult"),
])
def test_the_result_program_turns_a_broken_output_into_a_failure(tmp_path: Path, setup, reason: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    setup(out)
    printed = subprocess.run([sys.executable, "-m", "dgm_operator.cli", "proposal-result", "--out", str(out),
                              "--context", str(CONTEXT)], capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0
    back = proposal.parse_result_log(printed.stdout)
    assert back.reason == reason


def test_an_endpoint_that_wants_max_completion_tokens_gets_it(tmp_path: Path) -> None:
    rejected = {"status": 400, "content": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                                          "Use 'max_completion_tokens' instead."}
    with serve(rejected, {"content": DIAGNOSIS}, {"content": GOOD_EDIT}) as standin:
        proc, result = run(tmp_path, standin, env={"DGM_LLM_MAX_TOKENS": "500"}, inprocess=True)
    assert result is not None and result.ok, proc.stderr
    bodies = [r["body"] for r in standin.script.received]
    assert bodies[0]["max_tokens"] == 500 and "max_completion_tokens" not in bodies[0]
    assert all(b["max_completion_tokens"] == 500 and "max_tokens" not in b for b in bodies[1:])
    assert "switching" in proc.stderr


def test_a_rejected_request_is_a_failure_with_the_servers_words(tmp_path: Path) -> None:
    with serve({"status": 401, "content": "invalid api key"}) as standin:
        proc, result = run(tmp_path, standin, inprocess=True)
    assert result is not None and result.reason == "ModelError" and "HTTP 401" in result.error
    assert "invalid api key" in result.error and len(standin.script.received) == 1
