"""Whole manifests the operator writes, pinned in tests/unit/testdata/*.golden."""

import golden

from dgm_operator.api import constants
from dgm_operator.controller import builders, names

OWNER = {"apiVersion": constants.API_VERSION, "kind": constants.CANDIDATE_KIND,
         "metadata": {"name": "agent-g7", "uid": "0f6e1c52-3e2a-4c55-a4c6-0d1ad6a4b2c1"}}
AGENT_OWNER = {"apiVersion": constants.API_VERSION, "kind": constants.AGENT_KIND,
               "metadata": {"name": "agent", "uid": "6a9d53a3-2d1f-4a0f-8b0e-5c0c8f1b7a10"}}
LABELS = {constants.LABEL_AGENT: "agent", constants.LABEL_CANDIDATE: "agent-g7"}


def test_candidate_evaluation_job():
    golden.check("evaluation-job", builders.evaluation_job(
        name=names.evaluation_job("agent-g7", "quick"), namespace="team-a",
        owner=builders.owner_reference(OWNER), labels=LABELS,
        grader=builders.ContainerRun("registry.example/grader:1.2", ["dgm", "grade", "--tasks", "/opt/suite.yaml"],
                                     ["--subset", "quick"], [{"name": "MODE", "value": "eval"}]),
        agent=builders.ContainerRun("registry.example/agent:1.3", ["agent", "serve", "--port", "8000"], [],
                                    [{"name": "LOG", "value": "info"}]),
        agent_port=8000, workspace_configmap=names.workspace_configmap("agent-g7"),
        timeout_seconds=300, repeats=3, stage="quick",
        resources={"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "256Mi"}},
        runtime_class_name="gvisor", node_selector={"pool": "sandbox"},
        tolerations=[{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}],
        pod_labels={"team": "a"}))


def test_single_process_baseline_job_with_defaults():
    golden.check("baseline-job", builders.evaluation_job(
        name=names.baseline_job("agent", 3, "full"), namespace="team-a",
        owner=builders.owner_reference(AGENT_OWNER), labels={constants.LABEL_AGENT: "agent"},
        grader=builders.ContainerRun("registry.example/bench:1.2", ["dgm", "evaluate", "--", "bench"]), agent=None,
        workspace_configmap=names.revision_snapshot("agent", 3), timeout_seconds=600, repeats=1, stage="full"))


def test_sandbox_network_policy():
    golden.check("sandbox-networkpolicy", builders.sandbox_network_policy("team-a"))


def test_workspace_configmap():
    golden.check("workspace-configmap", builders.files_configmap(
        names.workspace_configmap("agent-g7"), "team-a", {"ranker.py": "def rank(q, d):\n    return 0\n",
                                                        "config.yaml": "top_k: 4\n"},
        owner=builders.owner_reference(OWNER), labels={**LABELS, constants.LABEL_ROLE: "workspace"}))


def test_live_configmap_apply_patch():
    golden.check("live-configmap-apply", builders.live_configmap_apply(
        "agent-config", "team-a", {"config.yaml": "top_k: 4\n", "ranker.py": "x = 1\n"}))


def test_deployment_apply_patch():
    golden.check("deployment-apply", builders.deployment_apply(
        "agent", "team-a", container="agent", revision=4, image="registry.example/agent:1.3"))
