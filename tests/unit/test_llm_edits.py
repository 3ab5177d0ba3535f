"""SEARCH/REPLACE parsing and application (engine/llm.py) against golden files.

Each reply in testdata/llm/replies/ is parsed and applied to testdata/llm/files.json; the
outcome (edits and changed files, or the error's type and message) must equal the golden
file beside it. `UPDATE_GOLDEN=1 pytest tests/unit/test_llm_edits.py` rewrites the goldens
(review the diff before committing).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dgm_operator.engine import llm

DATA = Path(__file__).parent / "testdata" / "llm"
FILES = json.loads((DATA / "files.json").read_text())
REPLIES = sorted((DATA / "replies").glob("*.txt"))


def check_golden(path: Path, text: str) -> None:
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path.name} missing: run with UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{path.name} differs from the golden file"


def outcome(reply: str) -> dict:
    try:
        edits = llm.parse_edits(reply)
    except llm.EditError as exc:
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}
    parsed = [{"file": e.file, "line": e.line, "search": e.search, "replace": e.replace} for e in edits]
    try:
        changes = llm.apply_edits(FILES, edits)
    except llm.EditError as exc:
        return {"edits": parsed, "error": {"type": type(exc).__name__, "message": str(exc)}}
    return {"edits": parsed, "changes": changes}


@pytest.mark.parametrize("reply", REPLIES, ids=[p.stem for p in REPLIES])
def test_reply_matches_its_golden_outcome(reply: Path) -> None:
    result = outcome(reply.read_text())
    check_golden(reply.with_suffix(".golden.json"), json.dumps(result, indent=1, sort_keys=True) + "\n")
    # the file names say what to expect, so a golden file rewritten wrongly still fails here
    if reply.stem.startswith("valid_"):
        assert "error" not in result and result["changes"]
    else:
        assert "error" in result


def test_goldens_have_replies() -> None:
    goldens = {p.name.removesuffix(".golden.json") for p in (DATA / "replies").glob("*.golden.json")}
    assert goldens == {p.stem for p in REPLIES}


def test_two_files_and_a_fence_between_name_and_block() -> None:
    result = outcome((DATA / "replies" / "valid_two_files.txt").read_text())
    assert set(result["changes"]) == {"config.yaml", "ranker.py"}
    assert "  top_k: 6\n" in result["changes"]["config.yaml"]
    assert "math.log" in result["changes"]["ranker.py"]
    assert result["changes"]["ranker.py"].endswith("    raise ValueError(method)\n")


def test_blocks_of_one_file_apply_in_order_and_an_empty_search_creates_a_file() -> None:
    result = outcome((DATA / "replies" / "valid_new_file_and_two_blocks.txt").read_text())
    assert result["changes"]["stopwords.txt"] == "the\na\nof\n"
    cfg = result["changes"]["config.yaml"]
    assert "  top_k: 5\n" in cfg and "  stemming: true\n" in cfg


def test_the_missing_final_newline_is_kept() -> None:
    result = outcome((DATA / "replies" / "valid_end_without_newline.txt").read_text())
    assert result["changes"]["notes.txt"].endswith("still no newline at the end")


def test_a_later_block_sees_the_earlier_blocks_result() -> None:
    result = outcome((DATA / "replies" / "error_second_block_stale.txt").read_text())
    assert result["error"]["type"] == "EditApplyError"
    assert "block 2" in result["error"]["message"]


def test_crlf_files_and_replies() -> None:
    files = {"a.txt": "one\r\ntwo\r\nthree\r\n"}
    edits = llm.parse_edits("a.txt\r\n<<<<<<< SEARCH\r\ntwo\r\n=======\r\n2\r\n>>>>>>> REPLACE\r\n")
    assert llm.apply_edits(files, edits) == {"a.txt": "one\r\n2\r\nthree\r\n"}


def test_whole_file_rewrite_of_an_existing_file() -> None:
    edits = llm.parse_edits("config.yaml\n<<<<<<< SEARCH\n=======\nretrieval: {}\n>>>>>>> REPLACE\n")
    assert llm.apply_edits(FILES, edits) == {"config.yaml": "retrieval: {}\n"}


def test_blank_only_search_is_an_error_not_a_rewrite() -> None:
    edits = llm.parse_edits("config.yaml\n<<<<<<< SEARCH\n\n=======\nx: 1\n>>>>>>> REPLACE\n")
    with pytest.raises(llm.EditApplyError, match="only blank lines"):
        llm.apply_edits(FILES, edits)


def test_markers_must_be_exact_and_indented_markers_are_content() -> None:
    reply = "notes.txt\n<<<<<<< SEARCH\nline two\n=======\n  =======\n>>>>>>> REPLACE\n"
    (edit,) = llm.parse_edits(reply)
    assert edit.replace == "  =======\n"


def test_closest_line_hint_names_the_line() -> None:
    result = outcome((DATA / "replies" / "error_search_does_not_match.txt").read_text())
    assert "closest is line 3" in result["error"]["message"]


def test_check_files_rejects_protected_and_unlisted_files() -> None:
    with pytest.raises(llm.EditRuleError, match="protected"):
        llm.check_files({"evaluate.py": "x"}, ["**"], ["evaluate*"])
    with pytest.raises(llm.EditRuleError, match="not an allowed file"):
        llm.check_files({"other.py": "x"}, ["config.yaml"], [])
    llm.check_files({"config.yaml": "x"}, ["config.yaml"], ["evaluate*"])


def test_unified_diff_marks_new_files_and_is_bounded() -> None:
    diff = llm.unified_diff({"a.txt": "x\n"}, {"a.txt": "y\n", "b.txt": "new\n"})
    assert "--- a/a.txt" in diff and "-x" in diff and "+y" in diff
    assert "--- /dev/null" in diff and "+new" in diff
    big = llm.unified_diff({}, {"big.txt": "z\n" * 5000}, limit=200)
    assert len(big) < 260 and "[cut:" in big


@pytest.mark.parametrize("changes, kind", [
    ({"new.py": "x"}, "ArchitectureChange"),
    ({"ranker.py": "x"}, "AlgorithmModification"),
    ({"config.yaml": "x"}, "ConfigurationUpdate"),
])
def test_classify(changes: dict, kind: str) -> None:
    assert llm.classify(FILES, changes) == kind


def test_classify_search_space_files_as_parameter_tuning() -> None:
    assert llm.classify(FILES, {"config.yaml": "x"}, ["config.yaml"]) == "ParameterTuning"


def test_usage_from_the_api_and_estimated_when_absent() -> None:
    u = llm.usage_from_api({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, [], "")
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.estimated) == (10, 5, 15, False)
    e = llm.usage_from_api(None, [{"role": "user", "content": "x" * 350}], "y" * 35)
    assert (e.prompt_tokens, e.completion_tokens, e.estimated) == (100, 10, True)
    assert llm.estimate_tokens("é" * 7) == 4  # bytes, not characters: 14 / 3.5
    total = u + e
    assert total.total_tokens == 125 and total.calls == 2 and total.estimated


def test_description_is_normalised_and_bounded() -> None:
    assert llm.description_from("  a\n\n b  ") == "a b"
    assert len(llm.description_from("w " * 5000)) == llm.DESCRIPTION_LIMIT
    assert llm.description_from("  ").startswith("LLM proposal")


def test_the_hint_finds_a_line_whose_comment_the_model_left_out() -> None:
    files = {"c.yaml": "a: 1\n  min_score: 1.0       # below this the agent abstains\nb: 2\n"}
    edits = llm.parse_edits("c.yaml\n<<<<<<< SEARCH\n    min_score: 1.0\n=======\n    min_score: 0.5\n>>>>>>> REPLACE\n")
    with pytest.raises(llm.EditApplyError, match=r"closest is line 2: '  min_score: 1.0       # below"):
        llm.apply_edits(files, edits)
