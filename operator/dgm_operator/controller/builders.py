"""Manifests the operator writes, as plain data (no Kubernetes client here).

Each builder takes what it needs as arguments and returns the object as a dict, so the
sandbox contract of ``design.md`` ("Evaluation contract") is checked by unit tests against
expected output, and the reconcilers only send what these functions return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..api import constants
from . import names

SANDBOX_UID = 65532  # the grader's user: the conventional "nonroot" user of distroless images
AGENT_UID = 65533  # the agent under test runs as another user than the grader
DEFAULT_AGENT_PORT = 8000
EGRESS_CHECK_SECONDS = 20
EGRESS_CHECK_LIMITS = {"cpu": "100m", "memory": "64Mi"}
DEFAULT_LIMITS = {"cpu": "1", "memory": "512Mi"}
DEFAULT_REQUESTS = {"cpu": "100m", "memory": "128Mi"}
JOB_TTL_SECONDS = 3600
TMP_SIZE_LIMIT = "256Mi"


def owner_reference(obj: Mapping[str, Any], *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference to ``obj`` (a full object dict read from the API)."""
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def _metadata(name: str, namespace: str, owner: Mapping[str, Any] | None, labels: Mapping[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {constants.LABEL_MANAGED_BY: constants.FIELD_MANAGER, **labels},
    }
    if owner is not None:
        meta["ownerReferences"] = [dict(owner)]
    return meta


def files_configmap(
    name: str, namespace: str, files: Mapping[str, str], *, owner: Mapping[str, Any] | None, labels: Mapping[str, str]
) -> dict[str, Any]:
    """An immutable ConfigMap holding a file set (a candidate workspace or a revision snapshot).

    File names are ConfigMap keys (``[-._a-zA-Z0-9]+``, no directories), as in the agent's
    live ConfigMap; the safety analysis rejects any other name before this is built.
    """
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(name, namespace, owner, labels),
        "immutable": True,
        "data": dict(sorted(files.items())),
    }


@dataclass(frozen=True)
class ContainerRun:
    """What one container of the evaluation pod runs."""

    image: str
    command: Sequence[str]
    args: Sequence[str] = ()
    env: Sequence[Mapping[str, str]] = ()


def _restricted(uid: int) -> dict[str, Any]:
    """The restricted Pod Security profile for one container, under its own user."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def evaluation_job(
    *,
    name: str,
    namespace: str,
    owner: Mapping[str, Any],
    labels: Mapping[str, str],
    grader: ContainerRun,
    agent: ContainerRun | None,
    agent_port: int | None = None,
    workspace_configmap: str,
    timeout_seconds: int,
    repeats: int,
    stage: str,
    egress_check_seconds: int | None = EGRESS_CHECK_SECONDS,
    resources: Mapping[str, Mapping[str, str]] | None = None,
    runtime_class_name: str | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] | None = None,
    pod_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The sandboxed evaluation Job: one per candidate and stage (or per baseline revision).

    With ``agent`` (Grader mode) the pod runs the agent under test as a native sidecar
    (``agent``: its image, the files read-only at /workspace, its own user and /tmp) and
    the ``grader`` (the evaluation image, its own user and /tmp, no workspace), which
    drives the agent on localhost and alone writes the result to its termination log. No
    process namespace or writable volume is shared. Without ``agent`` (SingleProcess) one
    ``evaluate`` container runs ``grader`` with the files mounted.

    Before either starts, ``egress-check`` proves from inside that egress is denied. Every
    container: no service-account token, the restricted Pod Security profile, limits; the
    Job: a deadline, no retries, a TTL, and the ``dgm.io/sandbox`` label that the
    deny-egress NetworkPolicy selects.
    """
    resources = resources or {}
    limits = {"limits": dict(resources.get("limits") or DEFAULT_LIMITS),
              "requests": dict(resources.get("requests") or DEFAULT_REQUESTS)}
    all_labels = {**labels, constants.LABEL_SANDBOX: "true", constants.LABEL_STAGE: stage}
    pod_meta_labels = {**(pod_labels or {}), **all_labels}
    workspace_mount = {"name": "workspace", "mountPath": "/workspace", "readOnly": True}
    env = [
        *[dict(e) for e in grader.env],
        {"name": "DGM_STAGE", "value": stage},
        {"name": "DGM_REPEATS", "value": str(repeats)},
        {"name": "HOME", "value": "/tmp"},
    ]
    main: dict[str, Any] = {
        "name": "grader" if agent is not None else "evaluate",
        "image": grader.image,
        "command": list(grader.command),
        "args": list(grader.args),
        "env": env,
        "resources": limits,
        "securityContext": _restricted(SANDBOX_UID),
        "terminationMessagePath": "/dev/termination-log",
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    init: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = [
        {"name": "workspace", "configMap": {"name": workspace_configmap}},
        {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}},
    ]
    if egress_check_seconds:
        init.append({
            "name": "egress-check",
            "image": grader.image,
            "command": ["dgm", "egress-check", "--seconds", str(egress_check_seconds)],
            "resources": {"limits": dict(EGRESS_CHECK_LIMITS), "requests": dict(EGRESS_CHECK_LIMITS)},
            "securityContext": _restricted(SANDBOX_UID),
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        })
    if agent is not None:
        port = agent_port or DEFAULT_AGENT_PORT
        env.append({"name": "DGM_AGENT_URL", "value": f"http://127.0.0.1:{port}"})
        main["terminationMessagePolicy"] = "File"  # the agent's or grader's logs never reach status
        init.append({
            "name": "agent",
            "image": agent.image,
            "command": list(agent.command),
            "args": list(agent.args),
            "env": [*[dict(e) for e in agent.env],
                    {"name": "DGM_WORKSPACE", "value": "/workspace"},
                    {"name": "DGM_AGENT_PORT", "value": str(port)},
                    {"name": "HOME", "value": "/tmp"},
                    {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
            "workingDir": "/workspace",
            "restartPolicy": "Always",  # a native sidecar: it ends when the grader does
            "resources": limits,
            "securityContext": _restricted(AGENT_UID),
            "terminationMessagePolicy": "File",
            "volumeMounts": [workspace_mount, {"name": "agent-tmp", "mountPath": "/tmp"}],
        })
        volumes.append({"name": "agent-tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}})
    else:
        main["terminationMessagePolicy"] = "FallbackToLogsOnError"
        main["workingDir"] = "/workspace"
        main["env"] += [{"name": "DGM_WORKSPACE", "value": "/workspace"}]
        main["volumeMounts"].insert(0, workspace_mount)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "shareProcessNamespace": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SANDBOX_UID,
            "runAsGroup": SANDBOX_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [main],
        "volumes": volumes,
    }
    if init:
        pod_spec["initContainers"] = init
    if runtime_class_name:
        pod_spec["runtimeClassName"] = runtime_class_name
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod_spec["tolerations"] = [dict(t) for t in tolerations]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(name, namespace, owner, all_labels),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(timeout_seconds),
            "ttlSecondsAfterFinished": JOB_TTL_SECONDS,
            "template": {"metadata": {"labels": pod_meta_labels}, "spec": pod_spec},
        },
    }


def sandbox_network_policy(namespace: str) -> dict[str, Any]:
    """Denies all egress (and ingress) of pods labelled as sandboxes in ``namespace``."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(names.SANDBOX_NETWORK_POLICY, namespace, None, {}),
        "spec": {
            "podSelector": {"matchLabels": {constants.LABEL_SANDBOX: "true"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [],
        },
    }


def live_configmap_apply(name: str, namespace: str, files: Mapping[str, str]) -> dict[str, Any]:
    """Server-side apply body for the agent's live ConfigMap: only ``data`` is ours."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": dict(sorted(files.items())),
    }


def deployment_apply(name: str, namespace: str, *, container: str, revision: int, image: str) -> dict[str, Any]:
    """Server-side apply body that stamps the pod template with the revision (so the
    Deployment rolls) and sets the agent container's image; nothing else is claimed."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "template": {
                "metadata": {"annotations": {constants.ANNOTATION_REVISION: str(revision)}},
                "spec": {"containers": [{"name": container, "image": image}]},
            }
        },
    }
