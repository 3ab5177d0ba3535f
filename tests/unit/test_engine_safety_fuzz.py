"""Hostile input never makes the analysis raise: arbitrary bytes, text and names, and deep
structures in every format. Every input is decided with a score in [0, 1].

Timing is not asserted here (timing goals belong in benchmarks); the per-test timeout of
the suite catches a hang."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings, strategies as st

from dgm_operator.engine.safety import SafetyPolicy, analyze, score_findings
from dgm_operator.engine.types import Finding, SafetyReport, SearchParam, Severity

EXTS = [".py", ".yaml", ".yml", ".json", ".txt", ".pth", ""]
SPACE = (SearchParam("c.yaml", "a.b", "int", 0, 10), SearchParam("c.json", "x", "choice", choices=("p", "q")),
         SearchParam("s.py", "T", "float", 0.0, 1.0))
POLICY = SafetyPolicy(search_space=SPACE, max_change_bytes=1 << 20)


def check(report: SafetyReport) -> None:
    assert isinstance(report, SafetyReport)
    assert 0.0 <= report.score <= 1.0
    assert all(isinstance(f, Finding) and isinstance(f.severity, Severity) for f in report.findings)
    if len(report.findings) < 20:
        assert report.score == score_findings(report.findings)
    json.dumps([f.as_dict() for f in report.findings], ensure_ascii=False).encode("utf-8")  # fit for status


names = st.one_of(
    st.builds(lambda stem, ext: stem + ext, st.text(min_size=1, max_size=12), st.sampled_from(EXTS)),
    st.sampled_from(["c.yaml", "c.json", "s.py", "a.py", "..data", "ranker.py\n", "sitecustomize.py"]),
)
contents = st.one_of(st.text(max_size=400), st.binary(max_size=400),
                     st.text(st.characters(exclude_categories=()), max_size=100))  # lone surrogates too
code_fragments = st.lists(st.sampled_from([
    "import random\n", "random._os", "getattr(x, '", "__globals__", "')", "exec", "(", ")", "[", "]", ".", "\n",
    "lambda m: ", "'{0.__class__}'.format(1)", "# coding: utf-7\n", "\ud800", "def f(x: '", "__import__('os')",
    "match x:\n    case object(gi_frame=f): pass\n", "json.dumps = 1\n", " + 1" * 50, "\ufeff", "\x00",
]), max_size=30).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(names, contents, max_size=6), st.dictionaries(names, st.text(max_size=200), max_size=4))
def test_arbitrary_files_are_decided(changes, base):
    check(analyze(changes, POLICY, base_files=base))


@settings(max_examples=200, deadline=None)
@given(code_fragments)
def test_fragments_of_attacks_are_decided(code):
    check(analyze({"a.py": code}))
    check(analyze({"a.py": "import json\n" + code}, base_files={"helper.py": code, "ranker.py": "import helper\n"}))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_as_python(data):
    check(analyze({"a.py": data}))
    check(analyze({"a.py": data.decode("latin-1")}))


@st.composite
def deep_documents(draw):
    n = draw(st.integers(min_value=1, max_value=30_000))
    ext = draw(st.sampled_from([".py", ".yaml", ".json"]))
    bracket = draw(st.sampled_from(["()", "[]", "{}"])) if ext == ".py" else draw(st.sampled_from(["[]", "{}"]))
    o, c = bracket
    if ext == ".json" and o == "{":
        return "c.json", '{"a": ' * n + "1" + "}" * n
    if ext == ".yaml":
        shape = draw(st.sampled_from(["flow", "block", "map"]))
        if shape == "flow":
            return "c.yaml", "a: " + (o if o == "[" else "{b: ") * n + "1" + c * n + "\n"
        if shape == "block":
            return "c.yaml", "".join("  " * i + "-\n" for i in range(min(n, 3000)))
        return "c.yaml", "".join("  " * i + f"k{i}:\n" for i in range(min(n, 3000))) + "  " * min(n, 3000) + "v\n"
    if ext == ".json":
        return "c.json", o * n + c * n
    shape = draw(st.sampled_from(["nest", "plus", "unary", "not", "attr", "call", "lambda", "power", "indent", "ifexp"]))
    body = {
        "nest": o * n + "1" + c * n,
        "plus": " + ".join(["1"] * n),
        "unary": "-" * n + "1",
        "not": "not " * n + "1",
        "attr": "a" + ".b" * n,
        "call": "f" + "()" * n,
        "lambda": "lambda: " * n + "1",
        "power": "**".join(["2"] * n),
        "ifexp": "1 if 1 else " * n + "1",
        "indent": None,
    }[shape]
    if body is None:
        depth = min(n, 200)
        return "a.py", "".join(" " * i + "if 1:\n" for i in range(depth)) + " " * depth + "pass\n"
    return "a.py", "x = " + body + "\n"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(deep_documents())
def test_deep_structures_are_decided(doc):
    name, text = doc
    report = analyze({name: text}, SafetyPolicy(max_change_bytes=1 << 22))
    check(report)
    if text.count("[") > 200 or text.count("(") > 2000 or text.count("+") > 5000:
        assert report.score == 0.0 and any(f.severity is Severity.CRITICAL for f in report.findings)


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none()),
                    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)),
                    max_leaves=60))
def test_nested_values_rendered_as_python_and_json_are_decided(value):
    import json
    check(analyze({"s.py": f"T = {value!r}\n", "c.json": json.dumps({"x": value})}, POLICY))
