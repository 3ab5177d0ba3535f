"""Strict, bounded reading of the YAML and JSON files candidates write."""

from __future__ import annotations

import pytest

from dgm_operator.engine import configfiles as cf
from dgm_operator.engine.safety import analyze
from dgm_operator.engine.types import Severity


def billion_laughs(levels: int = 9) -> str:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name, text, error", [
    ("c.yaml", "a: 1\nb: 2\na: 3\n", "duplicate key"),
    ("c.yaml", "a:\n  x: 1\n  x: 2\n", "duplicate key"),
    ("c.yaml", "1: a\ntrue: b\n", "duplicate key"),  # equal once loaded
    ("c.yaml", "a: 1\n---\nb: 2\n", "single document"),
    ("c.yaml", "a: !!python/object/apply:os.system ['id']\n", "constructor"),
    ("c.yaml", "a: [1,\n", "invalid YAML"),
    ("c.json", '{"a": 1, "a": 2}', "duplicate key"),
    ("c.json", '{"a": {"b": 1, "b": 1}}', "duplicate key"),
    ("c.json", "1" * 10_000, "invalid JSON"),
])
def test_invalid_documents(name, text, error):
    with pytest.raises(cf.ConfigFileError, match=error):
        cf.load_document(name, text)
    report = analyze({name: text})
    assert [(f.rule, f.severity) for f in report.findings] == [("config_syntax", Severity.CRITICAL)]


@pytest.mark.parametrize("name, text, error", [
    ("c.yaml", billion_laughs(), "aliases expand to more than"),
    ("c.yaml", "".join(f"k{i}: &k{i} [x]\n" for i in range(120)) + "z: [" + ", ".join(f"*k{i}" for i in range(120)) + "]\n",
     "aliases"),
    ("c.yaml", "a: &a [*a]\n", "recursive"),
    ("c.yaml", "".join("  " * i + "-\n" for i in range(200)), "deeper than"),
    ("c.yaml", "a: " + "[" * 500 + "]" * 500 + "\n", "deeper than|nesting"),
    ("c.yaml", "a: " + "{b: " * 100 + "1" + "}" * 100 + "\n", "deeper than"),
    ("c.json", "[" * 100_000 + "]" * 100_000, "deeper than"),
    ("c.json", '{"a": ' * 70 + "1" + "}" * 70, "deeper than"),
])
def test_documents_beyond_the_bounds(name, text, error):
    with pytest.raises(cf.ConfigFileError, match=error):
        cf.load_document(name, text)
    report = analyze({name: text}, None)
    assert report.score == 0.0
    assert {f.severity for f in report.findings if f.file == name} == {Severity.CRITICAL}


def test_escaped_quotes_are_scanned_in_linear_time():
    # a megabyte of \" made the depth pre-scan quadratic (minutes); the suite's timeout catches a relapse
    text = '"' + '\\"' * 300_000
    with pytest.raises(cf.ConfigFileError, match="invalid JSON"):
        cf.load_document("c.json", text)


def test_ordinary_documents_still_load():
    assert cf.load_document("c.yaml", "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\n") == {
        "base": {"x": 1, "y": 2}, "d": {"x": 3, "y": 2}}  # merge keys may override
    assert cf.load_document("c.yaml", "- 1\n- 2\n") == [1, 2]
    assert cf.load_document("c.yaml", "") == {}
    assert cf.load_document("c.json", '{"a": [1, "x\\"]"]}') == {"a": [1, 'x"]']}
    assert cf.load_document("c.json", '"[[[[[["') == "[[[[[["  # brackets in strings do not count
    text = "a: &a [1, 2]\nb: *a\nc: *a\n"
    assert cf.parse("c.yaml", text) == {"a": [1, 2], "b": [1, 2], "c": [1, 2]}
    with pytest.raises(cf.ConfigFileError, match="top level must be a mapping"):
        cf.parse("c.yaml", "- 1\n")


def test_python_parameters_are_read_through_the_bounded_parser():
    assert cf.parse("s.py", "T = 0.5\n") == {"T": 0.5}
    with pytest.raises(cf.ConfigFileError):
        cf.parse("s.py", "x = " + " + ".join(["1"] * 5000) + "\n")
    with pytest.raises(cf.ConfigFileError, match="coding cookie"):
        cf.parse("s.py", "# coding: utf-7\nT = 1\n")
