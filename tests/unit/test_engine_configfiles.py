import json

import pytest
import yaml

from dgm_operator.engine import configfiles as cf


def test_yaml_dotted_get_and_set_keeps_other_keys():
    text = "retrieval:\n  top_k: 5\n  mode: dense\nname: a\n"
    assert cf.get_value("c.yaml", text, "retrieval.top_k") == 5
    new = cf.set_values("c.yaml", text, {"retrieval.top_k": 7, "new.deep.key": True})
    doc = yaml.safe_load(new)
    assert doc == {"retrieval": {"top_k": 7, "mode": "dense"}, "name": "a", "new": {"deep": {"key": True}}}
    assert list(doc) == ["retrieval", "name", "new"]


def test_json_keeps_indent_and_newline():
    text = json.dumps({"a": {"b": 1.5}, "c": "x"}, indent=4) + "\n"
    new = cf.set_values("p.json", text, {"a.b": 2.5})
    assert new.endswith("\n") and '\n    "a"' in new
    assert json.loads(new) == {"a": {"b": 2.5}, "c": "x"}
    with pytest.raises(KeyError):
        cf.get_value("p.json", text, "a.zz")


def test_python_in_place_rewrite_preserves_rest():
    text = (
        "# header comment\n"
        "import math\n"
        "TEMPERATURE = 0.7  # sampling\n"
        "TOP_K: int = 5\n"
        "MODE = 'fast'\n"
        "def f(x):\n"
        "    return math.sqrt(x)\n"
        "COMPUTED = f(4)\n"
    )
    new = cf.set_values("settings.py", text, {"TEMPERATURE": 0.5, "TOP_K": 9, "MODE": "slow", "FLAG": True})
    assert new == text.replace("0.7", "0.5").replace("= 5", "= 9").replace("'fast'", "'slow'") + "FLAG = True\n"
    assert cf.parse("settings.py", new) == {"TEMPERATURE": 0.5, "TOP_K": 9, "MODE": "slow", "FLAG": True}


def test_python_multiline_literal_and_unicode():
    text = "NAME = 'é'; X = 1\nLIST = [\n  1,\n  2,\n]\n"
    new = cf.set_values("a.py", text, {"X": 3, "LIST": [4]})
    assert cf.parse("a.py", new) == {"NAME": "é", "X": 3, "LIST": [4]}
    assert new.startswith("NAME = 'é'; X = 3\n")


@pytest.mark.parametrize("name,text", [("a.yaml", "a: [1,\n"), ("a.json", "{"), ("a.py", "X = (")])
def test_invalid_files_raise(name, text):
    with pytest.raises(cf.ConfigFileError):
        cf.parse(name, text)


def test_unknown_format_and_non_mapping():
    with pytest.raises(cf.ConfigFileError):
        cf.file_format("a.toml")
    with pytest.raises(cf.ConfigFileError):
        cf.parse("a.yaml", "- 1\n- 2\n")
