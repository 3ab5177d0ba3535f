"""What the operator writes for one proposal (``proposer.type: llm`` or ``job``), as plain data.

One proposal is three objects, all named :func:`names.proposal_job` and created in this order:

1. the **Job** (owned by the agent): an init container ``propose`` (``dgm propose-llm`` in the
   operator's image, or the user's coding agent) then a container ``result``
   (``dgm proposal-result``, the operator's image) that prints the result block the operator
   reads from its log;
2. a **NetworkPolicy** (owned by the Job) selecting that Job's pod: no ingress, egress only to
   DNS (port 53) and the model endpoint (see :func:`llm_egress`);
3. the **context ConfigMap** (owned by the Job, immutable): ``context.json``. The pod cannot
   start before it exists, so no container runs before its NetworkPolicy exists.

The Job's TTL removes all three (garbage collection follows the owner). The pod has no
service-account token and the sandbox's restricted settings; the API key reaches only the
``propose`` container, through ``env.valueFrom.secretKeyRef``: the operator never reads it.

:func:`build_context` assembles the context document from the API objects; reading the
result back is :mod:`.proposal_jobs`.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

from ..api import constants
from ..api import models as api
from ..engine import proposal, safety as engine_safety
from . import builders, mapping

PROPOSE_CONTAINER = "propose"
RESULT_CONTAINER = "result"
CONTEXT_KEY = "context.json"
OUT_SIZE_LIMIT = "64Mi"
LLM_LIMITS = {"cpu": "500m", "memory": "256Mi"}
LLM_REQUESTS = {"cpu": "50m", "memory": "96Mi"}
RESULT_LIMITS = {"cpu": "200m", "memory": "128Mi"}
RESULT_REQUESTS = {"cpu": "10m", "memory": "32Mi"}
DNS_PORT = 53
#: finished proposal Jobs (and the model's replies in their logs) are kept a day
PROPOSAL_JOB_TTL_SECONDS = 86400

_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def labels(agent: str, candidate: str) -> dict[str, str]:
    return {constants.LABEL_MANAGED_BY: constants.FIELD_MANAGER, constants.LABEL_AGENT: agent,
            constants.LABEL_ROLE: constants.ROLE_PROPOSAL, constants.LABEL_PROPOSAL: candidate}


def _meta(name: str, namespace: str, owner: Mapping[str, Any], lbls: Mapping[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(lbls), "ownerReferences": [dict(owner)]}


# ------------------------------------------------------------------------------ containers


def _mounts(*, out_read_only: bool) -> list[dict[str, Any]]:
    return [
        {"name": "context", "mountPath": proposal.CONTEXT_PATH, "subPath": CONTEXT_KEY, "readOnly": True},
        {"name": "out", "mountPath": proposal.OUT_DIR, **({"readOnly": True} if out_read_only else {})},
        {"name": "tmp", "mountPath": "/tmp"},
    ]


_COMMON_ENV = [
    {"name": "DGM_PROPOSAL_CONTEXT", "value": proposal.CONTEXT_PATH},
    {"name": "DGM_PROPOSAL_OUT", "value": proposal.OUT_DIR},
    {"name": "HOME", "value": "/tmp"},
]


def llm_propose_container(spec: api.LLMProposerSpec, *, image: str, token_budget: int | None) -> dict[str, Any]:
    """The built-in proposer: ``dgm propose-llm`` with its settings in the environment and
    the key (if any) from the Secret; ``token_budget`` is what is left of today's budget."""
    env: list[dict[str, Any]] = [
        {"name": "DGM_LLM_BASE_URL", "value": spec.base_url},
        {"name": "DGM_LLM_MODEL", "value": spec.model},
        {"name": "DGM_LLM_TIMEOUT_SECONDS", "value": str(spec.timeout_seconds)},
        {"name": "DGM_LLM_MAX_FIX_ATTEMPTS", "value": str(spec.max_fix_attempts)},
        {"name": "DGM_LLM_MAX_RETRIES", "value": str(proposal.DEFAULT_TRANSPORT_RETRIES)},
    ]
    if spec.temperature is not None:
        env.append({"name": "DGM_LLM_TEMPERATURE", "value": repr(float(spec.temperature))})
    if spec.max_tokens is not None:
        env.append({"name": "DGM_LLM_MAX_TOKENS", "value": str(spec.max_tokens)})
    if token_budget is not None:
        env.append({"name": "DGM_LLM_TOKEN_BUDGET", "value": str(int(token_budget))})
    if spec.api_key_secret_ref is not None:
        env.append({"name": "DGM_LLM_API_KEY", "valueFrom": {"secretKeyRef": {
            "name": spec.api_key_secret_ref.name, "key": spec.api_key_secret_ref.key, "optional": False}}})
    return {
        "name": PROPOSE_CONTAINER,
        "image": image,
        "command": ["dgm", "propose-llm"],
        "args": ["--context", proposal.CONTEXT_PATH, "--out", proposal.OUT_DIR],
        "env": env + copy.deepcopy(_COMMON_ENV),
        "resources": {"limits": dict(LLM_LIMITS), "requests": dict(LLM_REQUESTS)},
        "securityContext": copy.deepcopy(_SECURITY),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": _mounts(out_read_only=False),
    }


def job_propose_container(spec: api.JobProposerSpec) -> dict[str, Any]:
    """A user's coding agent as the proposer: their image, command and environment (values
    or Secret keys), our mounts and security settings."""
    env: list[dict[str, Any]] = []
    for e in spec.env or []:
        if e.value_from is not None:
            ref = e.value_from.secret_key_ref
            env.append({"name": e.name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key,
                                                                         "optional": False}}})
        else:
            env.append({"name": e.name, "value": e.value or ""})
    resources = spec.resources.model_dump(exclude_none=True) if spec.resources else {}
    container: dict[str, Any] = {
        "name": PROPOSE_CONTAINER,
        "image": spec.image,
        "env": env + copy.deepcopy(_COMMON_ENV),
        "resources": {"limits": dict(resources.get("limits") or builders.DEFAULT_LIMITS),
                      "requests": dict(resources.get("requests") or builders.DEFAULT_REQUESTS)},
        "securityContext": copy.deepcopy(_SECURITY),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": _mounts(out_read_only=False),
    }
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    return container


def result_container(image: str) -> dict[str, Any]:
    return {
        "name": RESULT_CONTAINER,
        "image": image,
        "command": ["dgm", "proposal-result"],
        "args": ["--context", proposal.CONTEXT_PATH, "--out", proposal.OUT_DIR],
        "env": copy.deepcopy(_COMMON_ENV),
        "resources": {"limits": dict(RESULT_LIMITS), "requests": dict(RESULT_REQUESTS)},
        "securityContext": copy.deepcopy(_SECURITY),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": _mounts(out_read_only=True),
    }


# ------------------------------------------------------------------------------------ Job


def proposal_job(
    *,
    name: str,
    namespace: str,
    owner: Mapping[str, Any],
    agent: str,
    candidate: str,
    parent: str | None,
    propose: Mapping[str, Any],
    result_image: str,
    deadline_seconds: int,
    sandbox: api.SandboxSpec | None = None,
) -> dict[str, Any]:
    """The proposal Job: ``propose`` (init container) then ``result``; no token, restricted
    settings, a deadline, no retries, a TTL. ``parent`` (None: the current revision) is kept
    in an annotation for the candidate the result becomes."""
    lbls = labels(agent, candidate)
    sandbox = sandbox or api.SandboxSpec()
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": builders.SANDBOX_UID,
            "runAsGroup": builders.SANDBOX_UID,
            "fsGroup": builders.SANDBOX_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [copy.deepcopy(dict(propose))],
        "containers": [result_container(result_image)],
        "volumes": [
            {"name": "context", "configMap": {"name": name, "items": [{"key": CONTEXT_KEY, "path": CONTEXT_KEY}]}},
            {"name": "out", "emptyDir": {"sizeLimit": OUT_SIZE_LIMIT}},
            {"name": "tmp", "emptyDir": {"sizeLimit": builders.TMP_SIZE_LIMIT}},
        ],
    }
    if sandbox.runtime_class_name:
        pod_spec["runtimeClassName"] = sandbox.runtime_class_name
    if sandbox.node_selector:
        pod_spec["nodeSelector"] = dict(sandbox.node_selector)
    if sandbox.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in sandbox.tolerations]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": lbls, "ownerReferences": [dict(owner)],
                     "annotations": {constants.ANNOTATION_PARENT: parent or ""}},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(deadline_seconds),
            "ttlSecondsAfterFinished": PROPOSAL_JOB_TTL_SECONDS,
            "template": {"metadata": {"labels": {**(sandbox.pod_labels or {}), **lbls}}, "spec": pod_spec},
        },
    }


def deadline_seconds(spec: api.ProposerSpec) -> int:
    if spec.llm is not None and spec.type.value == "llm":
        return proposal.proposal_deadline_seconds(spec.llm.timeout_seconds, spec.llm.max_fix_attempts)
    if spec.job is not None:
        return spec.job.timeout_seconds
    raise ValueError(f"proposer type {spec.type.value} runs no proposal Job")


# ------------------------------------------------------------------------ ConfigMap, policy


def context_configmap(name: str, namespace: str, context_text: str, *, owner: Mapping[str, Any],
                      agent: str, candidate: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name, namespace, owner, labels(agent, candidate)),
        "immutable": True,
        "data": {CONTEXT_KEY: context_text},
    }


def url_port(url: str) -> int:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"proposer.llm.baseURL: an http(s) URL with a host is required, got {url!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"proposer.llm.baseURL: {exc}") from exc
    return port or (443 if parts.scheme == "https" else 80)


def _rules(rules: Sequence[api.EgressRule]) -> list[dict[str, Any]]:
    out = []
    for r in rules:
        rule: dict[str, Any] = {"ports": [{"port": p.port, "protocol": p.protocol} for p in r.ports]}
        if r.to is not None:
            rule["to"] = [dict(peer) for peer in r.to]
        out.append(rule)
    return out


def llm_egress(spec: api.LLMProposerSpec) -> list[dict[str, Any]]:
    """``spec.egress`` if set; else TCP to the port of ``baseURL``, any destination. A host
    name cannot be turned into a NetworkPolicy peer (policies match IPs and labels, and a
    Service name's IP is not the pod's after kube-proxy), so the default pins the port only;
    set ``egress`` to pin the destination (an ipBlock, or the serving pods' namespace and
    labels for an in-cluster vLLM or Ollama)."""
    if spec.egress:
        return _rules(spec.egress)
    return [{"ports": [{"port": url_port(spec.base_url), "protocol": "TCP"}]}]


def job_egress(spec: api.JobProposerSpec) -> list[dict[str, Any]]:
    return _rules(spec.egress or [])


def proposal_network_policy(name: str, namespace: str, *, owner: Mapping[str, Any], agent: str, candidate: str,
                            egress: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Selects the proposal's pod: no ingress; egress to DNS and ``egress`` only."""
    dns = {"ports": [{"port": DNS_PORT, "protocol": "UDP"}, {"port": DNS_PORT, "protocol": "TCP"}]}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, namespace, owner, labels(agent, candidate)),
        "spec": {
            "podSelector": {"matchLabels": {constants.LABEL_PROPOSAL: candidate,
                                            constants.LABEL_ROLE: constants.ROLE_PROPOSAL}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [dns, *[dict(r) for r in egress]],
        },
    }


# ----------------------------------------------------------------------------- the context


def _status(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("status") or {}


def build_context(
    agent: api.DGMAgent,
    *,
    proposal_name: str,
    parent_files: Mapping[str, str],
    parent: Mapping[str, Any] | None,
    candidates: Sequence[Mapping[str, Any]],
) -> proposal.ProposalContext:
    """The context document of one proposal. ``parent`` is the parent candidate's object
    (None: the agent's current revision, whose files are ``parent_files``); ``candidates``
    are the agent's candidates, whose children of the same parent make the lineage."""
    meta = agent.metadata
    status = agent.status.to_wire() if agent.status is not None else {}
    spec = agent.spec
    baseline = status.get("baseline") or {}
    base_metrics, _ = mapping.metrics_from_list(baseline.get("metrics"))
    parent_name = (parent or {}).get("metadata", {}).get("name") if parent else None
    ctx_parent: dict[str, Any] = {"name": parent_name, "files": dict(parent_files)}
    if parent is not None:
        validation = _status(parent).get("validation") or {}
        ctx_parent["metrics"], _ = mapping.metrics_from_list(validation.get("metricsAfter"))
        ctx_parent["score"] = validation.get("improvementScore")
        ctx_parent["description"] = (parent.get("spec") or {}).get("description") or None
        tests = proposal.bounded_tests(validation.get("tests"))
        if tests:
            ctx_parent["evaluation"] = {"tests": tests}
    else:
        ctx_parent["metrics"] = base_metrics
    children = []
    for i, c in enumerate(sorted(candidates, key=lambda c: c["metadata"].get("creationTimestamp") or "")):
        cspec, cstatus = c.get("spec") or {}, _status(c)
        if (cspec.get("parent") or None) != parent_name or c["metadata"]["name"] == proposal_name:
            continue
        children.append({
            "name": c["metadata"]["name"], "parent": parent_name, "phase": cstatus.get("phase") or "Proposed",
            "reason": cstatus.get("reason"), "message": cstatus.get("message"),
            "score": (cstatus.get("validation") or {}).get("improvementScore"),
            "description": cspec.get("description"), "changes": cspec.get("changes") or {}, "created": i,
        })
    safety_policy = mapping.safety_policy(agent)
    ctx = proposal.ProposalContext(
        agent=str(meta.get("name")),
        namespace=str(meta.get("namespace")),
        proposal=proposal_name,
        objective=proposal.Objective(
            metrics=[proposal.ContextMetric(name=m.name, goal=m.goal.value, weight=m.weight, unit=m.unit)
                     for m in spec.evaluation.metrics],
            min_improvement=spec.policy.min_improvement),
        baseline=proposal.ContextBaseline(revision=baseline.get("revision") or status.get("currentRevision"),
                                          metrics=base_metrics),
        parent=proposal.ContextParent.model_validate(ctx_parent),
        lineage=proposal.lineage_entries(parent_files, children),
        rules=proposal.Rules(
            allowed_files=list(safety_policy.allowed_files),
            protected_files=list(safety_policy.protected_files),
            max_change_bytes=safety_policy.max_change_bytes,
            max_files=safety_policy.max_files,
            allowed_imports=sorted(safety_policy.allowed_imports or engine_safety.DEFAULT_ALLOWED_IMPORTS),
            safety_threshold=spec.policy.safety_threshold,
            search_space=[proposal.ContextParameter(file=p.file, key=p.key, type=p.type.value, min=p.min, max=p.max,
                                                    step=p.step, choices=list(p.choices) if p.choices else None)
                          for p in spec.proposer.search_space],
            rejected=proposal.safety_rule_lines(),
        ),
    )
    return proposal.fit_context(ctx)
