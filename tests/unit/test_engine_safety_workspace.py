"""The merged workspace is analysed (parent files + changes), and the sample agent's own
files and good candidates pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dgm_operator.api import models as api
from dgm_operator.controller import mapping
from dgm_operator.engine.safety import SafetyPolicy, analyze
from dgm_operator.engine.types import Severity

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
SAMPLE_WORKSPACE = ROOT / "devtools" / "dgm_dev" / "sample_agent" / "workspace"
BLOCKING = (Severity.CRITICAL, Severity.HIGH)


def pairs(report):
    return {(f.rule, f.severity, f.file) for f in report.findings}


def test_a_change_that_makes_an_unchanged_file_dangerous_is_caught_there():
    base = {"ranker.py": "import helper\n\ndef score(q):\n    return helper.tools.system(q)\n",
            "helper.py": "import math as tools\n"}
    assert analyze({"helper.py": "import math as tools\nX = 1\n"}, base_files=base).score == 1.0
    report = analyze({"helper.py": "import random as r\nimport logging\ntools = 1\nfrom logging import os as tools\n"},
                     base_files=base)
    assert ("module_via_attribute", Severity.CRITICAL, "ranker.py") in pairs(report)  # helper.tools is now os


def test_a_new_file_importing_a_changed_file_is_covered():
    report = analyze({"new.py": "import helper\nhelper._secret\nhelper.ag('x')\n",
                      "helper.py": "from operator import attrgetter as ag\n_secret = 1\n"})
    assert ("private_module_attribute", Severity.CRITICAL, "new.py") in pairs(report)
    report = analyze({"new.py": "import helper\nhelper.lg.os.system('id')\n"},
                     base_files={"helper.py": "import logging as lg\n"})
    assert ("module_via_attribute", Severity.CRITICAL, "new.py") in pairs(report)


def test_findings_of_unchanged_baseline_files_do_not_block():
    base = {"legacy.py": "import os\nos.system('make')\n", "config.yaml": "a: 1\n", "broken.py": "def (:\n"}
    report = analyze({"config.yaml": "a: 2\n"}, base_files=base)
    assert report.findings == () and report.score == 1.0
    report = analyze({"new.py": "X = 1\n"}, base_files=base)  # Python context changed: still only new findings
    assert report.findings == ()
    report = analyze({"legacy.py": "import os\nos.system('make')\nX = 1\n"}, base_files=base)
    assert ("forbidden_call", Severity.CRITICAL, "legacy.py") in pairs(report)  # a changed file counts in full


def test_workspace_modules_are_importable_and_new_files_may_not_shadow_modules():
    assert analyze({"app.py": "import helper\nhelper.f()\n"}, base_files={"helper.py": "def f(): pass\n"}).score == 1.0
    assert analyze({"app.py": "import helper\n"}).score < 1.0  # no such module in the workspace
    for name in ("random.py", "json.py", "typing.py", "subprocess.py", "mymod.py"):
        policy = SafetyPolicy(allowed_imports=frozenset({"mymod"}))
        report = analyze({name: "X = 1\n"}, policy)
        assert ("module_shadowing", Severity.CRITICAL, name) in pairs(report), name
    assert analyze({"random.py": "X = 2\n"}, base_files={"random.py": "X = 1\n"}).score == 1.0  # already there


def test_config_files_of_the_merged_workspace_are_read_strictly():
    base = {"config.yaml": "retrieval:\n  top_k: 4\n"}
    assert ("config_syntax", Severity.CRITICAL, "config.yaml") in pairs(
        analyze({"config.yaml": "retrieval:\n  top_k: 4\n  top_k: 5\n"}, base_files=base))
    assert analyze({"x.txt": "hi\n"}, base_files={"config.yaml": "a: 1\na: 2\n"}).score == 1.0  # baseline's own


def test_the_quickstart_candidates_on_the_quickstart_workspace():
    agent = api.DGMAgent.model_validate(yaml.safe_load((QUICKSTART / "dgmagent.yaml").read_text()))
    policy = mapping.safety_policy(agent)
    base = yaml.safe_load((QUICKSTART / "configmap.yaml").read_text())["data"]
    good = yaml.safe_load((QUICKSTART / "candidate-good.yaml").read_text())["spec"]["changes"]
    report = analyze(good, policy, base_files=base)
    assert report.findings == () and report.score == 1.0
    unsafe = yaml.safe_load((QUICKSTART / "candidate-unsafe.yaml").read_text())["spec"]["changes"]
    assert analyze(unsafe, policy, base_files=base).score == 0.0


def test_the_sample_agents_own_files_pass_as_changes():
    files = {p.name: p.read_text() for p in SAMPLE_WORKSPACE.iterdir() if p.suffix in (".py", ".yaml")}
    assert set(files) >= {"ranker.py", "config.yaml"}
    report = analyze(files)
    assert not [f for f in report.findings if f.severity in BLOCKING], report.findings
    assert report.score >= 0.8


@pytest.mark.parametrize("scorer", ["tfidf", "bm25"])
def test_parameter_candidates_of_the_sample_agent_pass(scorer):
    agent = api.DGMAgent.model_validate(yaml.safe_load((QUICKSTART / "dgmagent.yaml").read_text()))
    base = {p.name: p.read_text() for p in SAMPLE_WORKSPACE.iterdir() if p.suffix in (".py", ".yaml")}
    config = base["config.yaml"].replace("scorer: overlap", f"scorer: {scorer}")
    assert analyze({"config.yaml": config}, mapping.safety_policy(agent), base_files=base).score == 1.0
