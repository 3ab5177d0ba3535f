"""The proposal Job, its NetworkPolicy and its context ConfigMap (controller/proposal_builders.py):
golden manifests, and the least-privilege rules checked one by one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dgm_operator.api import models as api
from dgm_operator.controller import names
from dgm_operator.controller import proposal_builders as pb
from dgm_operator.controller import proposal_jobs as pj
from dgm_operator.engine import proposal

from test_llm_edits import check_golden

DATA = Path(__file__).parent / "testdata" / "llm"
AGENT_OWNER = {"apiVersion": "dgm.io/v1alpha1", "kind": "DGMAgent", "name": "qa", "uid": "u-agent",
               "controller": True, "blockOwnerDeletion": True}
JOB_OWNER = {"apiVersion": "batch/v1", "kind": "Job", "name": "qa-g7-propose", "uid": "u-job",
             "controller": True, "blockOwnerDeletion": True}
LLM = api.LLMProposerSpec.model_validate({
    "baseURL": "http://vllm.llm.svc:8000/v1", "model": "qwen2.5-coder-7b",
    "apiKeySecretRef": {"name": "llm-key", "key": "token"}, "temperature": 0.7, "maxTokens": 2048,
    "timeoutSeconds": 90, "maxTokensPerDay": 200000})
USER_JOB = api.JobProposerSpec.model_validate({
    "image": "example.org/my-coder:1", "command": ["my-coder"], "args": ["--context", "/proposal/context.json"],
    "env": [{"name": "MODE", "value": "fast"},
            {"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "coder", "key": "key"}}}],
    "timeoutSeconds": 900, "egress": [{"ports": [{"port": 443}]}]})


def llm_job() -> dict:
    return pb.proposal_job(
        name=names.proposal_job("qa", 7), namespace="ns", owner=AGENT_OWNER, agent="qa", candidate="qa-g7",
        parent="qa-g3", propose=pb.llm_propose_container(LLM, image="dgm-operator:0.1.0", token_budget=150000),
        result_image="dgm-operator:0.1.0", deadline_seconds=pb.deadline_seconds(
            api.ProposerSpec(type="llm", llm=LLM)))


def dump(obj: dict) -> str:
    return yaml.safe_dump(obj, sort_keys=True, width=120)


def test_llm_job_matches_its_golden_manifest() -> None:
    check_golden(DATA / "job_llm.golden.yaml", dump(llm_job()))


def test_user_job_matches_its_golden_manifest() -> None:
    job = pb.proposal_job(
        name=names.proposal_job("qa", 7), namespace="ns", owner=AGENT_OWNER, agent="qa", candidate="qa-g7",
        parent=None, propose=pb.job_propose_container(USER_JOB), result_image="dgm-operator:0.1.0",
        deadline_seconds=pb.deadline_seconds(api.ProposerSpec(type="job", job=USER_JOB)),
        sandbox=api.SandboxSpec(runtime_class_name="gvisor"))
    check_golden(DATA / "job_user.golden.yaml", dump(job))
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["activeDeadlineSeconds"] == 900 and pod["runtimeClassName"] == "gvisor"
    (propose,) = pod["initContainers"]
    assert propose["image"] == "example.org/my-coder:1" and propose["command"] == ["my-coder"]
    assert {"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "coder", "key": "key", "optional": False}}} \
        in propose["env"]


def test_network_policy_and_configmap_match_their_golden_manifests() -> None:
    name = names.proposal_job("qa", 7)
    np = pb.proposal_network_policy(name, "ns", owner=JOB_OWNER, agent="qa", candidate="qa-g7", egress=pb.llm_egress(LLM))
    cm = pb.context_configmap(name, "ns", '{"kind": "ProposalContext"}\n', owner=JOB_OWNER, agent="qa", candidate="qa-g7")
    check_golden(DATA / "networkpolicy_llm.golden.yaml", dump(np))
    check_golden(DATA / "configmap_context.golden.yaml", dump(cm))
    assert cm["immutable"] is True and cm["metadata"]["ownerReferences"] == [JOB_OWNER]


def test_the_pod_holds_no_kubernetes_credentials_and_runs_restricted() -> None:
    job = llm_job()
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert "serviceAccountName" not in pod
    assert pod["securityContext"]["runAsNonRoot"] is True
    for c in pod["initContainers"] + pod["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert c["resources"]["limits"]["cpu"] and c["resources"]["limits"]["memory"]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts[proposal.CONTEXT_PATH]["readOnly"] is True
    assert spec["activeDeadlineSeconds"] == proposal.proposal_deadline_seconds(90, 2)


def test_the_key_reaches_only_the_propose_container_and_only_from_the_secret() -> None:
    pod = llm_job()["spec"]["template"]["spec"]
    (propose,), (result,) = pod["initContainers"], pod["containers"]
    key = [e for e in propose["env"] if e["name"] == "DGM_LLM_API_KEY"]
    assert key == [{"name": "DGM_LLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "llm-key", "key": "token",
                                                                             "optional": False}}}]
    assert not any("valueFrom" in e or e["name"].startswith("DGM_LLM") for e in result["env"])
    assert result["command"] == ["dgm", "proposal-result"] and propose["command"] == ["dgm", "propose-llm"]
    out = {m["mountPath"]: m for m in result["volumeMounts"]}[proposal.OUT_DIR]
    assert out.get("readOnly") is True, "the result container only reads the proposer's output"
    env = {e["name"]: e.get("value") for e in propose["env"]}
    assert env["DGM_LLM_BASE_URL"] == "http://vllm.llm.svc:8000/v1" and env["DGM_LLM_TOKEN_BUDGET"] == "150000"


def test_no_key_no_secret_reference() -> None:
    spec = LLM.model_copy(update={"api_key_secret_ref": None})
    container = pb.llm_propose_container(spec, image="i", token_budget=None)
    assert not any("valueFrom" in e for e in container["env"])
    assert "DGM_LLM_TOKEN_BUDGET" not in {e["name"] for e in container["env"]}


@pytest.mark.parametrize("url, port", [
    ("http://vllm.llm.svc:8000/v1", 8000), ("https://api.openai.com/v1", 443), ("http://ollama.llm/v1", 80),
])
def test_default_egress_is_the_base_url_port(url: str, port: int) -> None:
    spec = LLM.model_copy(update={"base_url": url})
    assert pb.llm_egress(spec) == [{"ports": [{"port": port, "protocol": "TCP"}]}]


def test_declared_egress_replaces_the_default_and_dns_is_always_allowed() -> None:
    spec = api.LLMProposerSpec.model_validate({
        "baseURL": "http://vllm.llm.svc:8000/v1", "model": "m",
        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "llm"}}}],
                    "ports": [{"port": 8000}]}]})
    np = pb.proposal_network_policy("p", "ns", owner=JOB_OWNER, agent="qa", candidate="qa-g7", egress=pb.llm_egress(spec))
    egress = np["spec"]["egress"]
    assert egress[0] == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert egress[1] == {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "llm"}}}],
                         "ports": [{"port": 8000, "protocol": "TCP"}]}
    assert np["spec"]["ingress"] == [] and np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    # the policy selects exactly the proposal's pod
    pod_labels = llm_job()["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in np["spec"]["podSelector"]["matchLabels"].items())
    assert pb.job_egress(api.JobProposerSpec(image="i")) == []


def test_bad_base_url_names_the_field() -> None:
    with pytest.raises(ValueError, match="proposer.llm.baseURL"):
        pb.url_port("http://host:notaport/v1")


def test_proposal_jobs_reconcile_their_agent_not_a_candidate() -> None:
    labels = llm_job()["metadata"]["labels"]
    assert labels["dgm.io/agent"] == "qa" and "dgm.io/candidate" not in labels
    assert labels["app.kubernetes.io/managed-by"] == "dgm-operator" and labels["dgm.io/role"] == "proposal"
    assert "dgm.io/sandbox" not in labels, "the deny-all sandbox policy must not select proposal pods"


# -------------------------------------------------------------------------------- outcome


def test_outcome_of_a_good_log() -> None:
    good = proposal.ProposalResult(description="d", changes={"a.txt": "b"})
    assert pj.outcome("succeeded", "", proposal.render_result(good)) == good


@pytest.mark.parametrize("args, kwargs, reason, text", [
    (("failed", "DeadlineExceeded", None), {}, "ProposalJobFailed", "past its deadline"),
    (("failed", "BackoffLimitExceeded", None), {"propose_message": "Traceback ...\nKeyError: 'x'"},
     "ProposalJobFailed", "KeyError"),
    (("succeeded", "", None), {"read_error": "pod gone"}, "ResultUnavailable", "pod gone"),
    (("succeeded", "", "garbage"), {}, "InvalidResult", "no result block"),
])
def test_outcome_of_a_failure(args: tuple, kwargs: dict, reason: str, text: str) -> None:
    result = pj.outcome(*args, **kwargs)
    assert not result.ok and result.reason == reason and text in result.error
    assert pj.failure_message(result).startswith(reason + ": ")


def test_candidate_body_and_status_from_a_result() -> None:
    agent_obj = {"apiVersion": "dgm.io/v1alpha1", "kind": "DGMAgent",
                 "metadata": {"name": "qa", "namespace": "ns", "uid": "u-agent"}}
    result = proposal.ProposalResult(description="why", changes={"a.txt": "b"}, improvement_type="ParameterTuning",
                                     model="m", usage=proposal.ProposalUsage(prompt_tokens=10, completion_tokens=3,
                                                                             total_tokens=13, calls=2))
    body = pj.candidate_body(agent_obj, name=names.proposed_candidate("qa", 7), parent="qa-g3", result=result)
    cand = api.ImprovementCandidate.model_validate(body)
    assert cand.spec.parent == "qa-g3" and cand.spec.changes == {"a.txt": "b"}
    assert body["metadata"]["name"] == "qa-g7" and body["metadata"]["ownerReferences"][0]["uid"] == "u-agent"
    status = pj.proposal_status(result, "qa-g7-propose")
    api.ProposalStatus.model_validate(status)
    assert status == {"jobName": "qa-g7-propose", "model": "m", "calls": 2,
                      "tokens": {"prompt": 10, "completion": 3, "total": 13}}


def test_the_llm_examples_parse_and_build() -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "llm"
    files = sorted(root.glob("*.yaml"))
    assert {f.name for f in files} == {"dgmagent-vllm.yaml", "dgmagent-hosted.yaml", "dgmagent-job.yaml"}
    for f in files:
        agent = api.DGMAgent.model_validate(yaml.safe_load(f.read_text()))
        spec = agent.spec.proposer
        assert spec.type.value in ("llm", "job") and pb.deadline_seconds(spec) > 0
        egress = pb.llm_egress(spec.llm) if spec.llm else pb.job_egress(spec.job)  # type: ignore[arg-type]
        assert egress, f.name
