"""The candidate reconciler feeds the safety analysis the merged workspace and the parent's
agent, through the dict-backed FakeKube (the harness of test_reconcilers)."""

from __future__ import annotations

import json

from test_reconcilers import NS, World

from dgm_operator.api import constants
from dgm_operator.controller import names


def rules_of(w: World, name: str = "c1") -> list[tuple[str, str, str | None]]:
    return [(f["rule"], f["severity"], f.get("file")) for f in w.status(name)["safety"]["findings"]]


def test_a_parent_of_another_agent_is_rejected_without_reading_its_files():
    w = World().ready()
    w.kube.add({"apiVersion": constants.API_VERSION, "kind": "ImprovementCandidate",
                "metadata": {"name": "theirs", "namespace": NS, "labels": {constants.LABEL_AGENT: "other"}},
                "spec": {"agentRef": "other", "improvementType": "ParameterTuning", "changes": {"x.json": "{}"}}})
    w.kube.add({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": names.workspace_configmap("theirs"), "namespace": NS},
                "data": {"secret.json": "{}"}})
    w.candidate(parent="theirs")
    w.run()
    st = w.status("c1")
    assert (st["phase"], st["reason"]) == ("Rejected", "UnsafeChange")
    assert ("parent_agent", "critical", None) in rules_of(w)
    assert w.kube.get_configmap(NS, names.workspace_configmap("c1")) is None


def test_the_merged_workspace_is_analysed():
    w = World().ready()
    w.kube.objects[("configmap", NS, "toy-rev-1")]["data"]["helper.py"] = "import logging as lg\n"
    w.candidate(changes={"app.py": "import helper\nhelper.lg.os.system('id')\n"})
    w.run()
    assert w.status("c1")["phase"] == "Rejected"
    assert ("module_via_attribute", "critical", "app.py") in rules_of(w)


def test_an_invalid_configmap_key_is_one_finding():
    w = World().ready()
    w.candidate(changes={"settings.json\n": json.dumps({"accuracy": 0.9})})
    w.run()
    assert w.status("c1")["phase"] == "Rejected"
    assert rules_of(w) == [("path", "critical", "'settings.json\\n'")]
