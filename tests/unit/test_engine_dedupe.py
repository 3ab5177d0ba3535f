from hypothesis import given, strategies as st

from dgm_operator.engine import policies
from dgm_operator.engine.dedupe import files_digest, find_original, merged_files

files_st = st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=30), max_size=5)


@given(files_st)
def test_digest_ignores_order_and_is_stable(files):
    reordered = dict(reversed(list(files.items())))
    assert files_digest(files) == files_digest(reordered)
    assert files_digest(files).startswith("sha256:")


@given(files_st, files_st)
def test_different_file_sets_differ(a, b):
    if a != b:
        assert files_digest(a) != files_digest(b)


def test_digest_separates_names_contents_and_image():
    assert files_digest({"ab": "c"}) != files_digest({"a": "bc"})
    assert files_digest({"a": "x"}) != files_digest({"a": "x"}, image="agent:2")
    assert files_digest({"a": "x"}, image="agent:2") != files_digest({"a": "x"}, image="agent:3")


def test_merged_files_and_original():
    parent = {"config.yaml": "top_k: 4\n", "ranker.py": "def score(): ...\n"}
    child = merged_files(parent, {"config.yaml": "top_k: 5\n"})
    assert child == {"config.yaml": "top_k: 5\n", "ranker.py": "def score(): ...\n"}
    archived = [("", files_digest(parent)), ("c1", files_digest(child)), ("c2", files_digest(child))]
    assert find_original(files_digest(child), archived) == "c1"
    assert find_original(files_digest(child), archived, exclude="c1") == "c2"
    assert find_original(files_digest({"x": "y"}), archived) is None
    assert find_original(files_digest(parent), archived) == ""  # same as the current revision


def test_duplicate_policy():
    d = policies.evaluate_chain(policies.ADMISSION_CHAIN, policies.Facts(duplicate_of="agent-c3"))
    assert d is not None and d.reason == "DuplicateCandidate" and "agent-c3" in d.message
    assert "current revision" in policies.duplicate_candidate(policies.Facts(duplicate_of="")).message
    assert policies.evaluate_chain(policies.ADMISSION_CHAIN, policies.Facts()) is None
