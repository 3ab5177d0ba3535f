"""The Python rules of the safety analysis, one attack class at a time, and the legitimate
code they must leave alone."""

from __future__ import annotations

import pytest

from dgm_operator.engine import pysource
from dgm_operator.engine.safety import SafetyPolicy, analyze
from dgm_operator.engine.types import Severity

CRIT, HIGH = Severity.CRITICAL, Severity.HIGH


def found(code, *, policy=None, name="a.py"):
    return {(f.rule, f.severity) for f in analyze({name: code}, policy).findings}


def assert_rejected(code, rule, severity=CRIT, **kw):
    report = analyze({kw.pop("name", "a.py"): code}, kw.pop("policy", None))
    pairs = {(f.rule, f.severity) for f in report.findings}
    assert (rule, severity) in pairs, report.findings
    if severity is CRIT:
        assert report.score == 0.0


# -- the crashes of the issue: every one is decided -----------------------------------------
@pytest.mark.parametrize("code, rule", [
    ("x = " + " + ".join(["1"] * 5000) + "\n", "python_syntax"),          # RecursionError in the parser
    ("x = " + " + ".join(["1"] * 100_000) + "\n", "python_syntax"),
    ("x = " + "(" * 1000 + "1" + ")" * 1000 + "\n", "analysis_limit"),   # refused before parsing
    ("x = " + "[" * 150 + "]" * 150 + "\n", "analysis_limit"),
    ("x = " + "-" * 100_000 + "1\n", "python_syntax"),                    # MemoryError in the parser
    ("x = " + "not " * 50_000 + "1\n", "python_syntax"),
    ("x = a" + ".b" * 100_000 + "\n", "python_syntax"),
    ("x = f" + "()" * 50_000 + "\n", "python_syntax"),
    ("x = " + "lambda: " * 10_000 + "1\n", "python_syntax"),
    ("".join(" " * i + "if 1:\n" for i in range(120)) + " " * 120 + "pass\n", "python_syntax"),
    ("def (:\n", "python_syntax"),
    ("x = 1\x00\n", "encoding"),
    ("x = '\ud800'\n", "encoding"),
])
def test_unparseable_and_pathological_code_is_critical(code, rule):
    assert_rejected(code, rule)


def test_parse_bounds_hold_after_parsing():
    tree, _ = pysource.parse("x = [" + "a.b, " * 200 + "]\n")
    with pytest.raises(pysource.SourceError, match="syntax nodes"):
        pysource.walk(tree, max_nodes=100)
    tree, _ = pysource.parse("x = " + " + ".join(["1"] * 300) + "\n")
    with pytest.raises(pysource.SourceError, match="deeper"):
        pysource.walk(tree, max_depth=100)
    assert len(pysource.walk(tree)) > 300  # iterative: depth 300 is fine


# -- encodings: the text Python would execute ------------------------------------------------
@pytest.mark.parametrize("code", [
    "# -*- coding: utf-7 -*-\nx = 1\n",
    "# -*- coding: raw_unicode_escape -*-\nx = 1\n",
    "#!/usr/bin/env python\n# vim: set fileencoding=latin-1 :\nx = 1\n",
    "# hello\r# coding=utf-16\nx = 1\n",          # CR-only line break: the interpreter's second line
    "\ufeff# coding: latin-1\nx = 1\n",            # a BOM and another codec
    "x = 1  # coding: cp1252\n",                   # wider than Python's own detection, on purpose
    "# coding: no-such-codec\nx = 1\n",
])
def test_coding_cookies_other_than_utf8_are_critical(code):
    assert_rejected(code, "coding_cookie")


@pytest.mark.parametrize("code", [
    "# -*- coding: utf-8 -*-\nimport math\n",
    "# coding=utf8\nimport math\n",
    "# vim: set fileencoding=UTF-8 :\nimport math\n",
    "\ufeff# coding: utf-8\nimport math\n",
    "\ufeffimport math\n",
    "import math\n\n\n# coding: latin-1 on line 4 is not a cookie\n",
])
def test_utf8_cookies_and_bom_pass(code):
    assert found(code) == set()


def test_the_utf7_hiding_trick_is_caught_and_the_executed_text_analysed():
    # Under utf-7, "+AAo-" decodes to a newline: Python would run the import on its own line.
    hidden = "# -*- coding: utf-7 -*-\nx = 1 # +AAo-import subprocess\n"
    assert_rejected(hidden, "coding_cookie")
    # NFKC: Python executes exec for the full-width spelling; the tree says so
    assert_rejected("ｅｘｅｃ('1')\n", "forbidden_call")


def test_bidirectional_controls_are_flagged():
    assert ("bidi_control", HIGH) in found("x = 1  # \u202e comment\n")


# -- references to dangerous built-ins ------------------------------------------------------
@pytest.mark.parametrize("code", [
    "_run = exec\n_run('x = 1')\n",
    "f = [eval][0]\n",
    "import functools\nfunctools.partial(compile, 'x')\n",
    "g = globals()\n",
    "l = locals()\n",
    "v = vars()\n",
    "vars(object())\n",
    "__import__('os')\n",
    "breakpoint()\n",
    "help('os')\n",
    "o = open\n",
    "t = type\n",
    "def f(x: (t := type)): pass\n",
    "import io\nio.open_code('x')\n",
])
def test_references_to_dangerous_builtins(code):
    assert_rejected(code, "forbidden_call")


@pytest.mark.parametrize("code, rule", [
    ("getattr(object(), 'ex' + 'ec')\n", "dynamic_attribute"),
    ("n = 'x'\ngetattr(object(), n)\n", "dynamic_attribute"),
    ("setattr(object(), input(), 1)\n", "dynamic_attribute"),
    ("delattr(object(), input())\n", "dynamic_attribute"),
    ("g = getattr\n", "dynamic_attribute"),
    ("import operator\noperator.attrgetter('a' + 'b')\n", "dynamic_attribute"),
    ("from operator import methodcaller\nmethodcaller(input())\n", "dynamic_attribute"),
    ("import operator\nag = operator.attrgetter\n", "dynamic_attribute"),
    ("getattr(len, '__globals__')\n", "dunder_access"),
    ("getattr(len, '__ｇｌｏｂａｌｓ__')\n", "dunder_access"),  # NFKC-normalised too
    ("import operator\noperator.attrgetter('a.__globals__')\n", "dunder_access"),
    ("setattr(object(), '__class__', int)\n", "dunder_access"),
    ("X = type('X', (), {'__getattr__': print})\n", "type_creation"),
    ("type(name='X')\n", "type_creation"),
    ("import dataclasses\ndataclasses.make_dataclass('X', [])\n", "type_creation"),
    ("__builtins__['eval']('1')\n", "dunder_access"),
    ("getattr(__builtins__, 'eval')\n", "dunder_access"),
    ("def __builtins__(): pass\n", "dunder_access"),
    ("__builtins__ = {}\n", "dunder_access"),
    ("import math as __builtins__\n", "dunder_access"),
    ("x = __loader__\n", "dunder_access"),
    ("import string\nstring.Formatter().get_field('0._os', (1,), {})\n", "forbidden_call"),
    ("import typing\ntyping.get_type_hints(len)\n", "forbidden_call"),
    ("from typing import ForwardRef\n", "forbidden_member"),
    ("from functools import singledispatch\n", "forbidden_member"),
    ("import logging\nlogging.currentframe()\n", "forbidden_call"),
])
def test_dynamic_access_and_type_tricks(code, rule):
    assert_rejected(code, rule)


# -- dunder, private and frame attributes ----------------------------------------------------
@pytest.mark.parametrize("code, rule", [
    ("().__class__.__bases__[0].__subclasses__()\n", "dunder_access"),
    ("len.__self__\n", "dunder_access"),
    ("def f(): pass\nf.__globals__\n", "dunder_access"),
    ("def f(): pass\nf.__code__ = None\n", "dunder_access"),
    ("object().__class__ = int\n", "dunder_access"),
    ("x = {}.__reduce_ex__(2)\n", "dunder_access"),
    ("'{0.__globals__}'.format(len)\n", "dunder_access"),
    ("'{0:{1.__class__.__mro__}}'.format(1, 2)\n", "dunder_access"),
    ("def g():\n    yield 1\ng().gi_frame.f_globals\n", "frame_access"),
    ("try:\n    1 / 0\nexcept Exception as e:\n    e.with_traceback(None).tb_frame\n", "frame_access"),
    ("def f(): pass\nx = f.co_code\n", "frame_access"),
    ("async def c(): pass\nc().cr_frame\n", "frame_access"),
    ("def f():\n    a = 1\n    return lambda: a\nf().x.cell_contents\n", "frame_access"),
    ("def f(): pass\nmatch f:\n    case object(__globals__=g):\n        pass\n", "dunder_access"),
    ("def g():\n    yield 1\nmatch g():\n    case object(gi_frame=fr):\n        pass\n", "frame_access"),
    ("import random\nrandom._os.system('id')\n", "private_module_attribute"),
    ("import random\nrandom._inst\n", "private_module_attribute"),
    ("import random\nrandom.__dict__\n", "private_module_attribute"),
    ("from random import _os\n", "private_module_attribute"),
    ("import random\nrandom.Random._randbelow\n", "private_module_attribute"),
    ("import random\ngetattr(random, '_os')\n", "private_module_attribute"),
])
def test_dunder_private_and_frame_attributes(code, rule):
    assert_rejected(code, rule)


# -- forbidden modules reached through allowed ones ------------------------------------------
@pytest.mark.parametrize("code", [
    "import logging\nlogging.os.popen('id')\n",
    "import logging\nlogging.sys.modules['x']\n",
    'import logging\nlogging.sys.modules["dgm_operator.sample_agent.bench"].is_correct = lambda a, g: a is not None\n',
    "import dataclasses\ndataclasses.builtins.eval('1')\n",
    "import typing\ntyping.sys\n",
    "import typing\ntyping.types.FunctionType\n",
    "from logging import os\n",
    "from dataclasses import builtins\n",
    "import random as r\nr.os\n",  # not a member here, but named like a module that may not be imported
])
def test_forbidden_modules_through_allowed_ones_are_critical(code):
    assert_rejected(code, "module_via_attribute")


def test_allowed_modules_through_attributes_must_be_imported_explicitly():
    assert ("module_via_attribute", HIGH) in found("import json\njson.decoder.JSONDecoder\n")
    assert found("import json.decoder\njson.decoder.JSONDecoder\n") == set()
    assert found("import collections.abc\nisinstance({}, collections.abc.Mapping)\n") == set()
    assert found("from collections import abc\nabc.Mapping\n") == set()
    # an allowed module, reached under another name, is still checked as itself
    assert_rejected("import json\njson.decoder.re.sre_compile\n", "module_via_attribute")
    assert_rejected("import logging.config\n", "forbidden_import")


def test_os_when_the_owner_allows_it():
    policy = SafetyPolicy(allowed_imports=frozenset({"os", "math"}))
    assert found("import os\nos.path.join('a', 'b')\nos.getcwd()\n", policy=policy) == set()
    assert_rejected("import os\nos.system('id')\n", "forbidden_call", policy=policy)
    assert_rejected("import os\nos.environ['X']\n", "forbidden_call", policy=policy)
    assert_rejected("from os import execv\n", "forbidden_member", policy=policy)


# -- modules as values and monkey-patching ---------------------------------------------------
@pytest.mark.parametrize("code, rule", [
    ("import random\nm = random\n", "module_as_value"),
    ("import random\n(lambda m: m._os)(random)\n", "module_as_value"),
    ("import random\nprint(random)\n", "module_as_value"),
    ("import random\nmods = [random]\n", "module_as_value"),
    ("import random\nmatch random:\n    case _: pass\n", "module_as_value"),
    ("import random\nvars(random)\n", "forbidden_call"),
    ("import collections.abc\nx = collections.abc\n", "module_as_value"),
    ("import json\ngetattr(json, 'decoder')\n", "module_as_value"),
    ("import json\njson.dumps = lambda *a, **k: '1'\n", "module_patch"),
    ("import logging\nlogging.raiseExceptions += 1\n", "module_patch"),
    ("import json\ndel json.dumps\n", "module_patch"),
    ("import json\nsetattr(json, 'dumps', len)\n", "module_patch"),
    ("import json\ndelattr(json, 'dumps')\n", "module_patch"),
    ("import logging\nlogging.root.manager.disable = 100\n", "module_patch"),
    ("import logging\nlogging.root.handlers[0] = None\n", "module_patch"),
    ("import json as j\nfor j.x in range(2): pass\n", "module_patch"),
    ("import logging\nlogging.Logger.info: int = 1\n", "module_patch"),
])
def test_modules_as_values_and_monkey_patching(code, rule):
    assert_rejected(code, rule)


# -- strings that typing evaluates ------------------------------------------------------------
@pytest.mark.parametrize("code", [
    "def f(x: \"__import__('os').system('id')\"): pass\n",
    "def f() -> 'exec(1)': pass\n",
    "import typing\nA = typing.List['__import__(\"os\")']\n",
    "import typing\nT = typing.TypeVar('T', bound='print(1)')\n",
    "x: \"[i for i in ()]\" = 1\n",
    "def f(x: \"List['eval(1)']\"): pass\n",  # a string inside a string
])
def test_strings_typing_evaluates_may_not_hold_code(code):
    assert_rejected(code, "string_code")


# -- files and imports -------------------------------------------------------------------------
@pytest.mark.parametrize("code, rule, severity", [
    ("import subprocess\n", "forbidden_import", CRIT),
    ("import gc\n", "forbidden_import", CRIT),
    ("import inspect\n", "forbidden_import", CRIT),
    ("import _thread\n", "forbidden_import", CRIT),
    ("from importlib import import_module\n", "forbidden_import", CRIT),
    ("import requests\n", "import_not_allowed", HIGH),
    ("from . import x\n", "import_not_allowed", HIGH),
    ("from random import *\n", "import_star", HIGH),
    ("import logging\nlogging.FileHandler('x.log')\n", "file_write", HIGH),
    ("import logging\nlogging.basicConfig(filename='x.log')\n", "file_write", HIGH),
    ("open('/var/x', 'a')\n", "file_write", CRIT),
    ("open(*args)\n", "file_write", HIGH),
])
def test_imports_and_file_writes(code, rule, severity):
    assert (rule, severity) in found(code)


# -- legitimate code passes --------------------------------------------------------------------
LEGIT = '''"""A retrieval agent module using what agents use."""
from __future__ import annotations

import collections.abc
import dataclasses
import json
import logging
import math
import re
from collections import Counter, defaultdict
from typing import Any, Optional

log = logging.getLogger(__name__)
WORD = re.compile(r"\\w+")


@dataclasses.dataclass(frozen=True)
class Settings:
    top_k: int = 4
    scorer: str = "bm25"

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"{type(self).__name__}: top_k must be >= 1, got {self.top_k}")


class Cache(dict):
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._hits = 0

    def __missing__(self, key: str) -> list[str]:
        self._hits += 1
        value = self[key] = WORD.findall(key.lower())
        return value

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)} entries, {self._hits} hits)"

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)


def idf(df: dict[str, int], term: str, n: int) -> float:
    return math.log(1 + (n - df.get(term, 0) + 0.5) / (df.get(term, 0) + 0.5))


def rank(query: str, docs: list[str], stats: dict[str, Any], cfg: Optional[Settings] = None,
         kind: type = dict) -> list[tuple[float, str]]:
    cfg = cfg or Settings()
    counts: defaultdict[str, int] = defaultdict(int)
    for term in WORD.findall(query):
        counts[term] += 1
    scored = [(sum(idf(stats["df"], t, stats["n_docs"]) for t in counts if t in d), d) for d in docs]
    if isinstance(stats, collections.abc.Mapping) and getattr(cfg, "top_k", None) and hasattr(cfg, "scorer"):
        log.debug("ranked %d documents with %s", len(scored), cfg.scorer)
    print("{0.scorer} {1:.3f}".format(cfg, 0.5), Counter(query.split()).most_common(1), type(cfg))
    with open("data.txt") as handle:
        handle.read()
    return sorted(scored, reverse=True)[: cfg.top_k]


if __name__ == "__main__":
    print(json.dumps(rank("a b", ["a", "b c"], {"df": {}, "n_docs": 2})))
'''


def test_legitimate_agent_code_has_no_findings():
    report = analyze({"agent_module.py": LEGIT})
    assert report.findings == () and report.score == 1.0
