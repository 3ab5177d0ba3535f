"""Prompt building (engine/llm.py) against a golden file, and the context it is built from
(controller/proposal_builders.build_context) against the API objects of the sample agent.

testdata/llm/objects_sample.json holds the quickstart DGMAgent (with a baseline), a parent
candidate with the grader's per-task failures, and two children of it; context_sample.json
is the context document built from them; prompt_sample.golden.txt the conversation's
messages. `UPDATE_GOLDEN=1` rewrites the goldens (review the diff).
"""

from __future__ import annotations

import json
from pathlib import Path

from dgm_operator.api import models as api
from dgm_operator.controller import proposal_builders as pb
from dgm_operator.engine import llm, proposal

from test_llm_edits import check_golden

DATA = Path(__file__).parent / "testdata" / "llm"
OBJECTS = json.loads((DATA / "objects_sample.json").read_text())


def sample_context() -> proposal.ProposalContext:
    agent = api.DGMAgent.model_validate(OBJECTS["agent"])
    return pb.build_context(agent, proposal_name="sample-agent-g6", parent_files=OBJECTS["parentFiles"],
                            parent=OBJECTS["parent"], candidates=[OBJECTS["parent"], *OBJECTS["children"]])


def conversation(ctx: dict) -> list[dict[str, str]]:
    return [llm.system_message(), llm.diagnose_message(ctx),
            {"role": "assistant", "content": "<the diagnosis>"}, llm.implement_message(),
            {"role": "assistant", "content": "<a reply whose block does not apply>"},
            llm.feedback_message("block 1 (line 2) for config.yaml: the SEARCH part does not match the file exactly")]


def render(messages: list[dict[str, str]]) -> str:
    return "".join(f"===== {m['role']} =====\n{m['content']}\n" for m in messages)


def test_context_document_matches_its_golden_file() -> None:
    check_golden(DATA / "context_sample.json", proposal.context_document(sample_context()))


def test_prompt_matches_its_golden_file() -> None:
    ctx = json.loads((DATA / "context_sample.json").read_text())
    check_golden(DATA / "prompt_sample.golden.txt", render(conversation(ctx)))


def test_the_prompt_carries_objective_evaluation_files_lineage_and_rules() -> None:
    text = llm.diagnose_message(sample_context().to_wire())["content"]
    for needle in (
        "- accuracy: maximize, weight 1, unit ratio",  # objective
        "- response_time: minimize, weight 0.3",
        "exceeds 0.01",  # minImprovement
        "Current revision 2: accuracy=0.64",  # baseline
        "variant sample-agent-g3, score +0.0062",  # the parent and its score
        '"why": "wrong passage ranked first"',  # the grader's per-task failures
        "top_k: 6             # chunks",  # the parent's files, as they are
        "def score(query, doc, stats",
        "## sample-agent-g5: Rejected (UnsafeChange)",  # lineage: reason, diff
        "+import subprocess",
        "## sample-agent-g4: Rejected (StageThresholdNotMet), score -0.0210",
        "Change only files matching: config.yaml, ranker.py.",  # rules
        "Never change evaluation files: evaluate*",
        "Never import process, network, import-system",
        "config.yaml:retrieval.top_k stays an int in [1, 12].",
        "# Step 1: diagnose",
    ):
        assert needle in text, needle
    assert text.index("sample-agent-g5") < text.index("sample-agent-g4"), "lineage is newest first"


def test_lineage_holds_only_children_of_the_parent_and_not_the_proposal_itself() -> None:
    ctx = sample_context()
    assert [e.name for e in ctx.lineage] == ["sample-agent-g5", "sample-agent-g4"]
    assert all(e.parent == "sample-agent-g3" for e in ctx.lineage)


def test_protected_files_are_hidden_and_other_files_read_only() -> None:
    ctx = {"objective": {"metrics": [{"name": "accuracy"}]},
           "parent": {"files": {"config.yaml": "a: 1\n", "evaluate.py": "SECRET = 1\n", "README.md": "hi\n"}},
           "rules": {"allowedFiles": ["config.yaml"], "protectedFiles": ["evaluate*"]}}
    text = llm.render_context(ctx)
    assert "SECRET" not in text and "evaluate.py" not in text.split("# Rules")[0]
    assert "Editable: config.yaml. Read-only: README.md." in text
    assert "README.md (read-only)" in text


def test_a_file_too_large_is_listed_not_shown() -> None:
    big = "x = 1\n" * (llm.PROMPT_FILE_LIMIT // 6 + 10)
    text = llm.render_context({"objective": {"metrics": []}, "parent": {"files": {"big.py": big}}})
    assert "big.py (" in text and "too large to show" in text and big[:100] not in text


def test_grader_tests_and_lineage_are_bounded() -> None:
    tests = {"failures": [{"task": f"q{i}", "got": "x" * 50} for i in range(500)]}
    lineage = [{"name": f"c{i}", "phase": "Rejected", "diff": "+y\n" * 5000} for i in range(20)]
    text = llm.render_context({"objective": {"metrics": []}, "parent": {"files": {}, "evaluation": {"tests": tests}},
                               "lineage": lineage})
    assert "[cut:" in text
    assert text.count("## c") == llm.PROMPT_LINEAGE_LIMIT
    assert len(text) < llm.PROMPT_TESTS_LIMIT + llm.PROMPT_LINEAGE_LIMIT * (llm.PROMPT_DIFF_LIMIT + 200) + 3000


def test_fences_grow_past_backticks_in_a_file() -> None:
    text = llm.render_context({"objective": {"metrics": []},
                               "parent": {"files": {"README.md": "```\ncode\n```\n"}}})
    assert "````markdown\n```\ncode\n```\n````" in text


def test_feedback_is_bounded_and_asks_for_the_complete_set() -> None:
    msg = llm.feedback_message("e" * 10_000)["content"]
    assert len(msg) < llm.ERROR_LIMIT + 400
    assert "complete, corrected set" in msg
