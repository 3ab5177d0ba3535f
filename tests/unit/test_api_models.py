"""The API models: camelCase on the wire, defaults, validation errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from dgm_operator.api import (
    CandidatePhase,
    DGMAgent,
    ImprovementCandidate,
    ImprovementType,
    ParentSelection,
    ProposerType,
)

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"


def _load(name: str) -> dict:
    return yaml.safe_load((QUICKSTART / name).read_text())


def _candidate(**spec) -> dict:
    base = {"agentRef": "a", "improvementType": "ParameterTuning", "changes": {"config.yaml": "x: 1"}}
    base.update(spec)
    return {"apiVersion": "dgm.io/v1alpha1", "kind": "ImprovementCandidate", "metadata": {"name": "c"}, "spec": base}


def test_agent_quickstart_round_trips_camel_case():
    raw = _load("dgmagent.yaml")
    agent = DGMAgent.model_validate(raw)
    assert agent.name == "sample-agent" and agent.namespace == "dgm-quickstart"
    assert agent.spec.target.config_map == "sample-agent-config"
    assert agent.spec.proposer.type is ProposerType.PARAMETERS
    assert agent.spec.evaluation.stages[0].pass_threshold == 0.0
    wire = agent.to_wire()
    assert wire["spec"]["target"]["configMap"] == "sample-agent-config"
    assert "config_map" not in str(wire)
    assert wire["spec"]["evaluation"]["timeoutSeconds"] == 300
    assert DGMAgent.model_validate(wire).to_wire() == wire
    assert wire == agent.model_dump(by_alias=True, exclude_none=True, mode="json")


def test_agent_defaults():
    agent = DGMAgent.model_validate({
        "metadata": {"name": "a"},
        "spec": {
            "target": {"deployment": "d", "configMap": "cm"},
            "evaluation": {"image": "img", "metrics": [{"name": "accuracy", "goal": "maximize"}]},
        },
    })
    assert agent.kind == "DGMAgent" and agent.api_version == "dgm.io/v1alpha1"
    p = agent.spec.policy
    assert (p.safety_threshold, p.max_concurrent_candidates, p.improvement_interval_minutes) == (0.8, 3, 30)
    assert p.min_improvement == 0.01 and p.auto_apply is False and p.allowed_files == ["**"]
    assert p.max_change_bytes == 65536 and p.rollback.on_regression and p.rollback.on_rollout_failure
    # the default is what `dgm bench search` showed best overall (docs/search.md)
    assert agent.spec.archive.parent_selection is ParentSelection.ADAPTIVE and agent.spec.archive.max_candidates == 200
    assert agent.spec.proposer.type is ProposerType.HEURISTIC
    ev = agent.spec.evaluation
    assert ev.repeats == 1 and ev.timeout_seconds == 600 and ev.stages == [] and ev.metrics[0].weight == 1.0
    assert agent.spec.paused is False and agent.spec.rollback_to_revision is None
    assert agent.status is None


def test_candidate_from_full_api_object_with_status():
    raw = _candidate()
    raw["metadata"].update({"namespace": "ns", "uid": "u", "resourceVersion": "1", "generation": 2})
    raw["status"] = {
        "phase": "Testing",
        "conditions": [{"type": "SafetyChecked", "status": "True", "reason": "Passed",
                        "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 2}],
        "safety": {"score": 0.95, "findings": []},
        "validation": {"jobName": "c-quick", "metricsAfter": [{"name": "accuracy", "value": 0.7, "unit": "ratio"}],
                       "tests": {"anything": {"goes": [1, 2]}}},
    }
    cand = ImprovementCandidate.model_validate(raw)
    assert cand.status.phase is CandidatePhase.TESTING
    assert cand.spec.improvement_type is ImprovementType.PARAMETER_TUNING
    assert cand.spec.approved is False and cand.spec.risk_level == 0.5
    assert cand.status.validation.metrics_after[0].value == 0.7
    wire = cand.to_wire()
    assert wire["status"]["conditions"][0]["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    assert wire["status"]["validation"]["jobName"] == "c-quick"
    assert wire["spec"]["improvementType"] == "ParameterTuning"
    assert ImprovementCandidate.model_validate(wire).to_wire() == wire


def test_snake_case_construction_and_enums_are_strings():
    cand = ImprovementCandidate(spec={"agent_ref": "a", "improvement_type": ImprovementType.CONFIGURATION_UPDATE,
                                      "image": "img:2"})
    assert cand.to_wire()["spec"] == {
        "agentRef": "a", "improvementType": "ConfigurationUpdate", "image": "img:2", "description": "",
        "changes": {}, "expectedImprovement": 0.0, "riskLevel": 0.5, "approved": False,
    }
    assert CandidatePhase.ROLLED_BACK == "RolledBack"


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"riskLevel": 2}, "riskLevel"),
        ({"improvementType": "Magic"}, "improvementType"),
        ({"agentRef": ""}, "agentRef"),
    ],
)
def test_candidate_validation_errors_name_the_field(spec, field):
    with pytest.raises(ValidationError) as exc:
        ImprovementCandidate.model_validate(_candidate(**spec))
    assert field in str(exc.value)


@pytest.mark.parametrize(
    "path, value, field",
    [
        (("policy", "safetyThreshold"), 1.5, "safetyThreshold"),
        (("policy", "maxConcurrentCandidates"), 0, "maxConcurrentCandidates"),
        (("archive", "parentSelection"), "best", "parentSelection"),
        (("evaluation", "repeats"), 21, "repeats"),
        (("proposer", "type"), "gpt", "type"),
    ],
)
def test_agent_validation_errors_name_the_field(path, value, field):
    raw = _load("dgmagent.yaml")
    raw["spec"].setdefault(path[0], {})[path[1]] = value
    with pytest.raises(ValidationError) as exc:
        DGMAgent.model_validate(raw)
    assert field in str(exc.value)


def test_quickstart_candidates_parse():
    good = ImprovementCandidate.model_validate(_load("candidate-good.yaml"))
    bad = ImprovementCandidate.model_validate(_load("candidate-unsafe.yaml"))
    assert "config.yaml" in good.spec.changes and "subprocess" in bad.spec.changes["ranker.py"]
    assert good.spec.agent_ref == bad.spec.agent_ref == "sample-agent"


def test_frozen_spec_rule_covers_every_spec_field_but_approved():
    rule = ImprovementCandidate.ROOT_VALIDATIONS[0]["rule"]
    for name, f in ImprovementCandidate.model_fields["spec"].annotation.model_fields.items():
        alias = f.alias or name
        assert (f"self.spec.{alias} " in rule) == (alias != "approved"), alias
