import pytest
from hypothesis import given, strategies as st

from dgm_operator.engine.safety import (
    DEFAULT_PROTECTED_FILES, MAX_FINDINGS, SafetyPolicy, analyze, configmap_key_problem, parent_findings,
    score_findings)
from dgm_operator.engine.types import Finding, SearchParam, Severity


def rules(changes, policy=None):
    return {(f.rule, f.severity) for f in analyze(changes, policy).findings}


def test_clean_change_scores_one():
    report = analyze({"agent.py": "import math\n\nX = 3\n\ndef f(a):\n    return math.sqrt(a)\n"})
    assert report.score == 1.0 and report.findings == ()


@pytest.mark.parametrize("name", ["../x.py", "/etc/passwd", "a\\b.py", "a\x00.py", "", "dir/../../x", "C:x",
                                  "ranker.py\n", "..data", "..x", ".", "..", "a" * 254, "dir/x.py", "bad key", "é.py",
                                  "x.py\t", "\nx.py"])
def test_bad_paths_are_critical(name):
    report = analyze({name: "X = 1\n"})
    assert report.score == 0.0 and ("path", Severity.CRITICAL) in rules({name: "X = 1\n"})


@pytest.mark.parametrize("code,rule", [
    ("eval('1')", "forbidden_call"),
    ("exec('x=1')", "forbidden_call"),
    ("__import__('os')", "forbidden_call"),
    ("import subprocess\nsubprocess.run(['ls'])", "forbidden_import"),
    ("import os\nos.system('ls')", "forbidden_call"),
    ("import os as o\no.execv('/bin/sh', [])", "forbidden_call"),
    ("from os import popen\npopen('ls')", "forbidden_call"),
    ("import socket", "forbidden_import"),
    ("import ctypes", "forbidden_import"),
    ("import importlib", "forbidden_import"),
    ("open('/etc/x', 'w').write('1')", "file_write"),
    ("open('../x', mode='a')", "file_write"),
])
def test_forbidden_constructs_are_critical(code, rule):
    report = analyze({"a.py": code + "\n"})
    assert report.score == 0.0
    assert (rule, Severity.CRITICAL) in rules({"a.py": code + "\n"})


def test_lesser_findings():
    assert ("import_not_allowed", Severity.HIGH) in rules({"a.py": "import requests\n"})
    assert analyze({"a.py": "import requests\n"}).score == pytest.approx(0.7)
    assert analyze({"a.py": "import mymath\n"}, SafetyPolicy(allowed_imports=frozenset({"mymath"}))).score == 1.0
    assert ("python_syntax", Severity.CRITICAL) in rules({"a.py": "def (:\n"})
    assert ("dunder_access", Severity.CRITICAL) in rules({"a.py": "().__class__.__bases__[0].__subclasses__()\n"})
    # writing files: high (rejected at the default threshold), critical outside /tmp and the workspace
    assert rules({"a.py": "p = 'x'\nopen(p, 'w')\n"}) == {("file_write", Severity.HIGH)}
    assert rules({"a.py": "open('/tmp/out', 'w')\n"}) == {("file_write", Severity.HIGH)}
    assert rules({"a.py": "m = 'w'\nopen('x', m)\n"}) == {("file_write", Severity.HIGH)}
    assert rules({"a.py": "open('data.txt').read()\nopen('data.txt', 'rb')\nopen('d', mode='r')\n"}) == set()


def test_files_sizes_and_protected():
    policy = SafetyPolicy(allowed_files=("*.yaml", "*.py"), max_change_bytes=100, max_file_bytes=60)
    found = rules({"x.sh": "echo\n", "big.yaml": "a: " + "x" * 70 + "\n"}, policy)
    assert ("file_not_allowed", Severity.HIGH) in found
    assert ("change_too_large", Severity.HIGH) in found
    assert rules({"a.yaml": "a: " + "x" * 200}, SafetyPolicy(max_change_bytes=100)) == {("change_too_large", Severity.HIGH)}
    assert analyze({"evaluate.py": "X = 1\n"}).score == 0.0
    assert ("protected_file", Severity.CRITICAL) in rules({"bench.yaml": "a: 1\n"}, SafetyPolicy(protected_files=("bench*",)))


def test_config_parsing_and_search_space():
    space = (SearchParam("c.yaml", "r.top_k", "int", 1, 10), SearchParam("c.yaml", "mode", "choice", choices=("a", "b")),
             SearchParam("s.py", "T", "float", 0, 1), SearchParam("c.json", "on", "bool"))
    policy = SafetyPolicy(search_space=space)
    assert ("config_syntax", Severity.CRITICAL) in rules({"c.yaml": "a: [1,\n"}, policy)
    assert ("config_syntax", Severity.CRITICAL) in rules({"c.json": "{"}, policy)
    assert rules({"c.yaml": "r:\n  top_k: 11\nmode: a\n"}, policy) == {("search_space_range", Severity.MEDIUM)}
    assert rules({"c.yaml": "r:\n  top_k: 2.5\nmode: c\n"}, policy) == {
        ("search_space_type", Severity.HIGH), ("search_space_range", Severity.MEDIUM)}
    assert rules({"s.py": "T = 'hot'\n"}, policy) == {("search_space_type", Severity.HIGH)}
    assert rules({"c.json": '{"on": 1}'}, policy) == {("search_space_type", Severity.HIGH)}
    assert rules({"c.yaml": "r:\n  top_k: 3\nmode: b\n", "s.py": "T = 0.5\n"}, policy) == set()


names = st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=20)
contents = st.text(max_size=200)


@given(st.dictionaries(names, contents, max_size=5))
def test_score_always_in_unit_interval(changes):
    report = analyze(changes)
    assert 0.0 <= report.score <= 1.0
    assert report.score == score_findings(report.findings)


@given(st.lists(st.sampled_from(["a", "b", "..", "c.py"]), min_size=1, max_size=5), contents,
       st.sampled_from(["", "/", "x\\"]))
def test_traversal_always_critical(parts, content, prefix):
    if ".." not in parts and not prefix:
        parts = parts + [".."]
    name = prefix + "/".join(parts)
    report = analyze({name: content, "ok.py": "X = 1\n"})
    assert report.score == 0.0
    assert any(f.rule == "path" and f.severity is Severity.CRITICAL and f.file == name for f in report.findings)


@given(st.lists(st.sampled_from(list(Severity)), max_size=8))
def test_score_monotone_in_findings(sevs):
    findings = [Finding("r", s, None, "m") for s in sevs]
    score = score_findings(findings)
    assert 0.0 <= score <= 1.0
    assert score_findings(findings + [Finding("r", Severity.LOW, None, "m")]) <= score
    if Severity.CRITICAL in sevs:
        assert score == 0.0


def test_configmap_key_rule_is_kubernetes_own():
    for ok in ("config.yaml", "ranker.py", "a-b_c.d", "x" * 253, ".hidden", "a..b"):
        assert configmap_key_problem(ok) is None, ok
    assert "atomic writer" in configmap_key_problem("..data")
    assert "253" in configmap_key_problem("x" * 254)
    assert configmap_key_problem("ranker.py\n") is not None  # the old ^...$ check let this through
    assert configmap_key_problem(7) is not None


def test_file_count_limit_decides_without_reading():
    many = {f"f{i}.py": "eval('x')\n" for i in range(65)}
    report = analyze(many)
    assert report.score == 0.0 and [f.rule for f in report.findings] == ["too_many_files"]
    assert analyze({f"f{i}.txt": "x" for i in range(64)}).score == 1.0
    assert analyze({f"f{i}.txt": "x" for i in range(5)}, SafetyPolicy(max_files=4)).score == 0.0


@pytest.mark.parametrize("name", ["sitecustomize.py", "usercustomize.py", "evil.pth", "conftest.py", "mod.pyc",
                                  "native.so", "Conftest.py", "evaluate.py", "test_ranker.py"])
def test_files_python_runs_by_itself_are_protected_by_default(name):
    assert ("protected_file", Severity.CRITICAL) in rules({name: "x = 1\n"})
    assert any(g in DEFAULT_PROTECTED_FILES for g in ("sitecustomize.py", "*.pth"))


def test_hard_size_bound_decides_without_parsing():
    big = "x = 1\n" * 400_000  # 2.4 MB
    report = analyze({"a.py": big}, SafetyPolicy(max_change_bytes=10**9))
    assert ("analysis_limit", Severity.CRITICAL) in {(f.rule, f.severity) for f in report.findings}
    assert report.score == 0.0


def test_findings_are_bounded_and_the_score_kept():
    code = "".join(f"eval('{i}')\n" for i in range(500))
    report = analyze({"a.py": code})
    assert len(report.findings) == MAX_FINDINGS and report.score == 0.0
    assert report.findings[-1].rule == "more_findings" and report.findings[-1].severity is Severity.CRITICAL
    assert score_findings(report.findings) == report.score


def test_parent_must_belong_to_the_same_agent():
    assert parent_findings("toy", None, None) == []
    assert parent_findings("toy", "c1", "toy") == []
    [finding] = parent_findings("toy", "c1", "other")
    assert (finding.rule, finding.severity) == ("parent_agent", Severity.CRITICAL) and "other" in finding.message
    assert parent_findings("toy", "c1", None)[0].rule == "parent_agent"
