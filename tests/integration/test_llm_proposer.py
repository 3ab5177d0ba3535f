"""The LLM proposer end to end on the dev cluster, against the STAND-IN OpenAI-compatible
server (devtools/dgm_dev/llm_standin.py: scripted replies, not a model) running as a Pod and
Service in the test namespace.

An agent with `proposer.type: llm` gets a candidate whose change is the model's edit, with
its tokens in status; a malformed reply (after the bounded fixes) ends as ProposerFailed
with the reason; a spent `maxTokensPerDay` pauses proposals with the TokenBudgetExhausted
condition.

Needs a node that runs images and serves pod logs (the operator reads the proposal's result
with `pods/log`): the dev cluster's real node (kubelet, containerd). On the local host-process
node, which has no kubelet API, the test is skipped with that reason. The images: the
operator's own (`make image`; DGM_TEST_OPERATOR_IMAGE, default dgm-operator:<version>) runs
the proposal Job and the stand-in.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import dgm_dev.llm_standin as standin_module
from dgm_dev.toy_agent import toy_objects
from dgm_operator import __version__
from dgm_operator.api import constants

pytestmark = pytest.mark.integration

IMAGE = os.environ.get("DGM_TEST_OPERATOR_IMAGE", f"dgm-operator:{__version__}")
USAGE = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}
DIAGNOSIS = "The reported accuracy is read from settings.json; raising it to 0.9 raises the score."
EDIT = """settings.json
<<<<<<< SEARCH
{"accuracy": 0.5}
=======
{"accuracy": 0.9}
>>>>>>> REPLACE
"""
SCRIPT = {"replies": [
    {"content": DIAGNOSIS, "usage": USAGE},  # proposal 1: diagnose
    {"content": EDIT, "usage": USAGE},  # proposal 1: implement (applies)
    {"content": "The accuracy is low.", "usage": USAGE},  # proposal 2: diagnose
    *[{"content": "Set accuracy to 0.9 in settings.json.", "usage": USAGE}] * 3,  # malformed, 1 + 2 fixes
    {"content": "Another idea.", "usage": USAGE},  # proposal 3: diagnose, then its Job's budget (400) is spent
]}
# proposal 1 spends 2200 tokens, proposal 2 4400 (6600), proposal 3 gets the 400 left, spends 1100 and
# stops: 7700 >= 7000, and no fourth proposal starts that day
MAX_TOKENS_PER_DAY = 7000


def _node_serves_logs(cluster) -> bool:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return bool(nodes) and all(not n["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("dgm-host-process")
                               for n in nodes)


def standin_objects(namespace: str) -> list[dict]:
    source = Path(standin_module.__file__).read_text()
    labels = {"app": "llm-standin"}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "llm-standin", "namespace": namespace},
         "data": {"llm_standin.py": source, "script.json": json.dumps(SCRIPT)}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "llm-standin", "namespace": namespace, "labels": labels},
         "spec": {"containers": [{
             "name": "standin", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
             "command": ["python", "/standin/llm_standin.py", "--script", "/standin/script.json",
                         "--host", "0.0.0.0", "--port", "8000"],
             "ports": [{"containerPort": 8000}],
             "readinessProbe": {"httpGet": {"path": "/v1/models", "port": 8000}, "periodSeconds": 1},
             "volumeMounts": [{"name": "standin", "mountPath": "/standin", "readOnly": True}]}],
             "volumes": [{"name": "standin", "configMap": {"name": "llm-standin"}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "llm-standin", "namespace": namespace},
         "spec": {"selector": labels, "ports": [{"port": 8000, "targetPort": 8000}]}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "llm-key", "namespace": namespace},
         "stringData": {"token": "sk-test-not-a-real-key"}},
    ]


def llm_agent(namespace: str) -> list[dict]:
    objs = toy_objects(namespace, settings={"accuracy": 0.5})
    agent = objs[-1]
    agent["spec"]["proposer"] = {"type": "llm", "llm": {
        "baseURL": f"http://llm-standin.{namespace}.svc:8000/v1", "model": "stand-in",
        "apiKeySecretRef": {"name": "llm-key", "key": "token"}, "timeoutSeconds": 30,
        "maxTokensPerDay": MAX_TOKENS_PER_DAY, "maxFixAttempts": 2}}
    return objs


def propose(env, value: str) -> None:
    env.cluster.kubectl("annotate", "dgmagent", "toy", "-n", env.ns, f"{constants.ANNOTATION_PROPOSE}={value}",
                        "--overwrite")


def improving(env) -> dict:
    return next((c for c in env.agent_status().get("conditions") or [] if c["type"] == "Improving"), {})


def test_llm_proposals_become_candidates_fail_with_a_reason_and_stop_at_the_budget(cluster, env, operator):
    if not _node_serves_logs(cluster):
        pytest.skip("the local host-process node serves no pod logs (no kubelet API); "
                    "the LLM proposer reads its result with pods/log: run on the dev cluster's real node")
    if IMAGE != f"dgm-operator:{__version__}":  # the proposal Jobs run the operator's image by default
        operator.stop()
        operator.start_env = {"DGM_PROPOSER_IMAGE": IMAGE}
        operator.start()
    env.apply(*standin_objects(env.ns))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/llm-standin", "-n", env.ns, "--timeout=120s")
    env.apply(*llm_agent(env.ns))
    env.wait_ready()

    # 1. the model's edit becomes a candidate, with its tokens
    propose(env, "one")
    cand = env.wait("candidate toy-g1", lambda: env.get("improvementcandidates", "toy-g1"), timeout=180)
    assert cand["spec"]["changes"] == {"settings.json": '{"accuracy": 0.9}'}
    assert cand["spec"]["description"] == DIAGNOSIS
    proposal = env.wait("toy-g1's status.proposal",
                        lambda: (env.get("improvementcandidates", "toy-g1").get("status") or {}).get("proposal"))
    assert proposal["tokens"] == {"prompt": 2000, "completion": 200, "total": 2200} and proposal["model"] == "stand-in"
    job = env.get("job", proposal["jobName"])
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    key = [e for e in pod["initContainers"][0]["env"] if e["name"] == "DGM_LLM_API_KEY"]
    assert key[0]["valueFrom"]["secretKeyRef"] == {"name": "llm-key", "key": "token", "optional": False}
    assert env.get("networkpolicy", proposal["jobName"])["spec"]["podSelector"]["matchLabels"][
        constants.LABEL_PROPOSAL] == "toy-g1"
    env.wait("tokens on the agent", lambda: (env.agent_status().get("tokens") or {}).get("used") == 2200)

    # 2. malformed replies, after the bounded fixes, end as ProposerFailed with the reason
    propose(env, "two")
    cond = env.wait("ProposerFailed", lambda: (lambda c: c if c.get("reason") == "ProposerFailed" else None)(improving(env)),
                    timeout=180)
    assert "MalformedReply" in cond["message"] and "no usable edits after 3 replies" in cond["message"]
    assert env.get("improvementcandidates", "toy-g2") is None
    events = {e["reason"] for e in env.list("events") if e["involvedObject"]["name"] == "toy"}
    assert {"ProposalStarted", "CandidateProposed", "ProposerFailed"} <= events

    # 3. the budget runs out: the third proposal's Job stops at the tokens left, then proposals
    #    pause with a condition until the next UTC day
    assert env.wait("tokens", lambda: (env.agent_status().get("tokens") or {}).get("used") == 6600)
    propose(env, "three")
    cond = env.wait("TokenBudgetExhausted",
                    lambda: (lambda c: c if c.get("reason") == "TokenBudgetExhausted" else None)(improving(env)),
                    timeout=180)
    assert f"maxTokensPerDay {MAX_TOKENS_PER_DAY}" in cond["message"] and "proposals pause until" in cond["message"]
    assert (env.agent_status().get("tokens") or {}).get("used") == 7700
    propose(env, "four")
    time.sleep(6)  # the annotation's own pass and a few pokes (DGM_POKE_SECONDS=1): none may start a Job
    assert improving(env).get("reason") == "TokenBudgetExhausted"
    assert sorted(j["metadata"]["name"] for j in env.list("jobs", f"{constants.LABEL_ROLE}=proposal")) == \
        ["toy-g1-propose", "toy-g2-propose", "toy-g3-propose"]
