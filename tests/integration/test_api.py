"""The generated CRDs on a real kube-apiserver: install, printer columns, and rejection of
invalid resources by the schema and the CEL rules (messages name the field and the rule)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((QUICKSTART / name).read_text()) if d]


def _apply(cluster, objs, namespace, check=True):
    for o in objs:
        o = copy.deepcopy(o)
        o["metadata"]["namespace"] = namespace
        proc = cluster.kubectl("apply", "-f", "-", input=json.dumps(o), check=check)
    return proc


def _candidate(name: str, **spec) -> dict:
    base = {"agentRef": "sample-agent", "improvementType": "ParameterTuning",
            "changes": {"config.yaml": "retrieval:\n  top_k: 2\n"}}
    base.update(spec)
    return {"apiVersion": "dgm.io/v1alpha1", "kind": "ImprovementCandidate",
            "metadata": {"name": name}, "spec": {k: v for k, v in base.items() if v is not None}}


def _agent() -> dict:
    return _docs("dgmagent.yaml")[0]


def _create(cluster, obj, namespace):
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = namespace
    return cluster.kubectl("create", "-f", "-", input=json.dumps(obj), check=False)


def test_quickstart_applies_and_columns_show(crds, namespace):
    cluster = crds
    assert _docs("namespace.yaml")[0]["metadata"]["name"] == "dgm-quickstart"
    objs = _docs("configmap.yaml") + _docs("deployment.yaml") + _docs("dgmagent.yaml")
    objs += _docs("candidate-good.yaml") + _docs("candidate-unsafe.yaml")
    _apply(cluster, objs, namespace)

    out = cluster.kubectl("get", "dgmagents", "-n", namespace).stdout
    header = out.splitlines()[0].split()
    assert header == ["NAME", "DEPLOYMENT", "REVISION", "SCORE", "BEST", "ACTIVE", "READY", "AGE"]
    assert "sample-agent" in out

    out = cluster.kubectl("get", "candidates", "-n", namespace).stdout
    assert out.splitlines()[0].split() == ["NAME", "AGENT", "TYPE", "PHASE", "SCORE", "SAFETY", "PARENT", "AGE"]
    assert "sample-agent-tfidf" in out and "AlgorithmModification" in out

    wide = cluster.kubectl("get", "cand", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert wide[-3:] == ["JOB", "REVISION", "REASON"]

    out = cluster.kubectl("get", "dgm", "-n", namespace).stdout
    assert "dgmagent.dgm.io/sample-agent" in out and "improvementcandidate.dgm.io/sample-agent-unsafe" in out

    # server-side defaults come from the models
    agent = json.loads(cluster.kubectl("get", "dgma", "sample-agent", "-n", namespace, "-o", "json").stdout)
    assert agent["spec"]["policy"]["autoApply"] is True
    assert agent["spec"]["evaluation"]["stages"][1]["name"] == "full"
    cand = json.loads(cluster.kubectl("get", "candidate", "sample-agent-tfidf", "-n", namespace, "-o", "json").stdout)
    assert cand["spec"]["approved"] is False

    # status printer columns read what the operator writes
    status = {"status": {"phase": "Validated", "safety": {"score": 0.97},
                         "validation": {"improvementScore": 0.42, "jobName": "sample-agent-tfidf-full"},
                         "reason": "ImprovementConfirmed"}}
    cluster.kubectl("patch", "candidate", "sample-agent-tfidf", "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps(status))
    row = cluster.kubectl("get", "candidate", "sample-agent-tfidf", "-n", namespace, "-o", "wide",
                          "--no-headers").stdout.split()
    assert "Validated" in row and "0.42" in row and "0.97" in row and "sample-agent-tfidf-full" in row


INVALID_CANDIDATES = [
    ("traversal", _candidate("bad-traversal", changes={"../x": "evil"}),
     ["spec.changes", "no '..' segment"]),
    ("nested-traversal", _candidate("bad-nested", changes={"a/../../etc/x": "evil"}),
     ["spec.changes", "no '..' segment"]),
    ("absolute", _candidate("bad-absolute", changes={"/etc/passwd": "root::0:0"}),
     ["spec.changes", "no leading '/'"]),
    ("risk-level", _candidate("bad-risk", riskLevel=2),
     ["spec.riskLevel", "less than or equal to 1"]),
    ("negative-risk", _candidate("bad-risk-neg", riskLevel=-0.5),
     ["spec.riskLevel", "greater than or equal to 0"]),
    ("improvement-type", _candidate("bad-type", improvementType="Magic"),
     ["spec.improvementType", "Unsupported value", "ParameterTuning"]),
    ("no-changes-no-image", _candidate("bad-empty", changes={}),
     ["spec", "at least one of changes (non-empty) or image"]),
    ("no-agent-ref", _candidate("bad-ref", agentRef=None),
     ["spec.agentRef", "Required value"]),
]


@pytest.mark.parametrize("case, obj, needles", INVALID_CANDIDATES, ids=[c[0] for c in INVALID_CANDIDATES])
def test_invalid_candidates_are_rejected(crds, namespace, case, obj, needles):
    proc = _create(crds, obj, namespace)
    assert proc.returncode != 0, f"{case} was accepted"
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not in {proc.stderr!r}"


def test_image_only_candidate_is_accepted(crds, namespace):
    proc = _create(crds, _candidate("image-only", changes=None, image="ghcr.io/x/agent:2"), namespace)
    assert proc.returncode == 0, proc.stderr


def _agent_with(path: tuple, value) -> dict:
    obj = _agent()
    node = obj["spec"]
    for key in path[:-1]:
        node = node[key] if not isinstance(key, int) else node[key]
    node[path[-1]] = value
    return obj


INVALID_AGENTS = [
    ("parent-selection", ("archive", "parentSelection"), "best",
     ["spec.archive.parentSelection", "Unsupported value"]),
    ("proposer-type", ("proposer", "type"), "gpt", ["spec.proposer.type", "Unsupported value"]),
    ("negative-concurrency", ("policy", "maxConcurrentCandidates"), -1,
     ["spec.policy.maxConcurrentCandidates", "greater than or equal to 1"]),
    ("safety-threshold", ("policy", "safetyThreshold"), 1.5,
     ["spec.policy.safetyThreshold", "less than or equal to 1"]),
    ("negative-min-improvement", ("policy", "minImprovement"), -0.1,
     ["spec.policy.minImprovement", "greater than or equal to 0"]),
    ("repeats", ("evaluation", "repeats"), 50, ["spec.evaluation.repeats", "less than or equal to 20"]),
    ("rollback-revision", ("rollbackToRevision",), 0,
     ["spec.rollbackToRevision", "greater than or equal to 1"]),
    ("metric-goal", ("evaluation", "metrics", 0, "goal"), "up",
     ["spec.evaluation.metrics[0].goal", "Unsupported value"]),
    ("duplicate-stages", ("evaluation", "stages"), [{"name": "quick"}, {"name": "quick"}],
     ["spec.evaluation.stages", "stage names must be unique"]),
    ("choice-without-choices", ("proposer", "searchSpace", 0, "choices"), [],
     ["spec.proposer.searchSpace[0]", "type choice needs a non-empty choices list"]),
    ("min-above-max", ("proposer", "searchSpace", 1, "min"), 50,
     ["spec.proposer.searchSpace[1]", "min must be less than or equal to max"]),
    ("webhook-without-url", ("proposer", "type"), "webhook",
     ["spec.proposer", "proposer.webhook is required"]),
]


@pytest.mark.parametrize("case, path, value, needles", INVALID_AGENTS, ids=[c[0] for c in INVALID_AGENTS])
def test_invalid_agents_are_rejected(crds, namespace, case, path, value, needles):
    proc = _create(crds, _agent_with(path, value), namespace)
    assert proc.returncode != 0, f"{case} was accepted"
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not in {proc.stderr!r}"


def test_spec_is_frozen_once_testing_except_approved(crds, namespace):
    cluster = crds
    obj = _candidate("frozen")
    assert _create(cluster, obj, namespace).returncode == 0
    # while Proposed, the spec may still change
    cluster.kubectl("patch", "candidate", "frozen", "-n", namespace, "--type=merge",
                    "-p", json.dumps({"spec": {"description": "edited while proposed"}}))
    cluster.kubectl("patch", "candidate", "frozen", "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"phase": "Testing"}}))
    for patch in ({"description": "edited while testing"},
                  {"changes": {"config.yaml": "retrieval:\n  top_k: 9\n"}},
                  {"image": "ghcr.io/x/other:1"},
                  {"riskLevel": 0.9}):
        proc = cluster.kubectl("patch", "candidate", "frozen", "-n", namespace, "--type=merge",
                               "-p", json.dumps({"spec": patch}), check=False)
        assert proc.returncode != 0, f"spec edit {patch} accepted while Testing"
        assert "spec is immutable once validation has started" in proc.stderr
        assert "only spec.approved may change" in proc.stderr
    cluster.kubectl("patch", "candidate", "frozen", "-n", namespace, "--type=merge",
                    "-p", json.dumps({"spec": {"approved": True}}))
    got = json.loads(cluster.kubectl("get", "candidate", "frozen", "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["approved"] is True and got["spec"]["description"] == "edited while proposed"
    # the status subresource stays writable
    cluster.kubectl("patch", "candidate", "frozen", "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"phase": "Rejected", "reason": "InsufficientImprovement"}}))
