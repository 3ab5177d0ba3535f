"""The manifests the operator writes, checked against the sandbox contract of the design."""

from dgm_operator.api import constants
from dgm_operator.controller import builders, names

OWNER = {"apiVersion": "dgm.io/v1alpha1", "kind": "ImprovementCandidate", "name": "c1", "uid": "u-1",
         "controller": True, "blockOwnerDeletion": True}


GRADER = builders.ContainerRun("example/grader:1", ["dgm", "grade", "--a2a", "http://127.0.0.1:8000"],
                               ["--subset", "quick"], [{"name": "A", "value": "1"}])
AGENT = builders.ContainerRun("example/agent:2", ["agent", "serve"], ["--port", "8000"], [{"name": "B", "value": "2"}])
RESTRICTED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
              "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def job(**overrides):
    kwargs = dict(
        name="c1-eval-full", namespace="ns", owner=OWNER, labels={constants.LABEL_CANDIDATE: "c1"},
        grader=GRADER, agent=AGENT, agent_port=8000, workspace_configmap="c1-workspace", timeout_seconds=120,
        repeats=3, stage="full",
    )
    kwargs.update(overrides)
    return builders.evaluation_job(**kwargs)


def containers(j):
    pod = j["spec"]["template"]["spec"]
    return {c["name"]: c for c in [*pod.get("initContainers", []), *pod["containers"]]}


def test_evaluation_job_matches_the_sandbox_contract():
    j = job()
    spec = j["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 120
    assert spec["ttlSecondsAfterFinished"] == builders.JOB_TTL_SECONDS
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["shareProcessNamespace"] is False
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    # the egress check runs first, then the agent (a native sidecar), then the grader
    assert [c["name"] for c in pod["initContainers"]] == ["egress-check", "agent"]
    assert [c["name"] for c in pod["containers"]] == ["grader"]
    by_name = containers(j)
    for c in by_name.values():
        uid = c["securityContext"]["runAsUser"]
        assert {k: v for k, v in c["securityContext"].items() if k not in ("runAsUser", "runAsGroup")} == RESTRICTED
        assert c["securityContext"]["runAsGroup"] == uid and "resources" in c
    assert by_name["agent"]["securityContext"]["runAsUser"] != by_name["grader"]["securityContext"]["runAsUser"]
    assert by_name["agent"]["restartPolicy"] == "Always"
    assert by_name["agent"]["image"] == "example/agent:2" and by_name["grader"]["image"] == "example/grader:1"
    assert by_name["egress-check"]["image"] == "example/grader:1"
    assert by_name["egress-check"]["command"][:2] == ["dgm", "egress-check"]
    # the candidate's files only in the agent's container, read-only; no shared writable volume
    assert by_name["agent"]["volumeMounts"] == [{"name": "workspace", "mountPath": "/workspace", "readOnly": True},
                                               {"name": "agent-tmp", "mountPath": "/tmp"}]
    assert by_name["grader"]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert "volumeMounts" not in by_name["egress-check"]
    assert by_name["grader"]["terminationMessagePolicy"] == "File"
    env = {e["name"]: e["value"] for e in by_name["grader"]["env"]}
    assert env == {"A": "1", "DGM_STAGE": "full", "DGM_REPEATS": "3", "HOME": "/tmp",
                   "DGM_AGENT_URL": "http://127.0.0.1:8000"}
    assert by_name["grader"]["args"] == ["--subset", "quick"]
    assert by_name["grader"]["resources"] == {"limits": {"cpu": "1", "memory": "512Mi"},
                                              "requests": {"cpu": "100m", "memory": "128Mi"}}
    assert j["metadata"]["ownerReferences"] == [OWNER]
    for labels in (j["metadata"]["labels"], spec["template"]["metadata"]["labels"]):
        assert labels[constants.LABEL_SANDBOX] == "true"
        assert labels[constants.LABEL_CANDIDATE] == "c1"
    assert "runtimeClassName" not in pod


def test_single_process_mode_runs_one_container_with_the_files():
    j = job(agent=None, egress_check_seconds=None)
    pod = j["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    (c,) = pod["containers"]
    assert c["name"] == "evaluate" and c["workingDir"] == "/workspace"
    assert {"name": "workspace", "mountPath": "/workspace", "readOnly": True} in c["volumeMounts"]
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {e["name"]: e["value"] for e in c["env"]}["DGM_WORKSPACE"] == "/workspace"


def test_evaluation_job_sandbox_options_and_pod_labels_cannot_unset_the_sandbox_label():
    j = job(runtime_class_name="gvisor", node_selector={"pool": "sandbox"},
            tolerations=[{"key": "sandbox", "operator": "Exists"}],
            pod_labels={constants.LABEL_SANDBOX: "false", "team": "a"},
            resources={"limits": {"cpu": "2", "memory": "1Gi"}})
    pod = j["spec"]["template"]
    assert pod["spec"]["runtimeClassName"] == "gvisor"
    assert pod["spec"]["nodeSelector"] == {"pool": "sandbox"}
    assert pod["spec"]["tolerations"] == [{"key": "sandbox", "operator": "Exists"}]
    assert pod["metadata"]["labels"][constants.LABEL_SANDBOX] == "true"
    assert pod["metadata"]["labels"]["team"] == "a"
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    assert containers(j)["agent"]["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}


def test_network_policy_denies_all_egress_of_sandboxes():
    np = builders.sandbox_network_policy("ns")
    assert np["spec"] == {
        "podSelector": {"matchLabels": {constants.LABEL_SANDBOX: "true"}},
        "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": [],
    }


def test_files_configmap_is_immutable_and_owned():
    cm = builders.files_configmap("a-rev-2", "ns", {"b.py": "x", "a.yaml": "y"}, owner=OWNER,
                                  labels={constants.LABEL_REVISION: "2"})
    assert cm["immutable"] is True
    assert list(cm["data"]) == ["a.yaml", "b.py"]
    assert cm["metadata"]["ownerReferences"] == [OWNER]
    assert cm["metadata"]["labels"] == {constants.LABEL_MANAGED_BY: "dgm-operator", constants.LABEL_REVISION: "2"}


def test_apply_bodies_claim_only_the_operator_fields():
    assert builders.deployment_apply("d", "ns", container="agent", revision=3, image="img:2") == {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns"},
        "spec": {"template": {"metadata": {"annotations": {"dgm.io/revision": "3"}},
                              "spec": {"containers": [{"name": "agent", "image": "img:2"}]}}},
    }
    assert builders.live_configmap_apply("cm", "ns", {"k": "v"}) == {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns"}, "data": {"k": "v"}}


def test_names_are_deterministic_and_fit_label_values():
    long = "a" * 80
    assert names.evaluation_job(long, "full") == names.evaluation_job(long, "full")
    assert len(names.evaluation_job(long, "full")) <= 63
    assert names.evaluation_job(long, "full") != names.evaluation_job(long, "quick")
    assert names.evaluation_job("c1", "quick") == "c1-eval-quick"
    assert names.revision_snapshot("agent", 4) == "agent-rev-4"
