"""Maps API objects (dicts from the API server, parsed by the pydantic models) onto the
engine's plain types, and engine results back onto status fragments. Pure."""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from ..api import models as api
from ..engine import safety as engine_safety
from ..engine.policies import image_allowed
from ..engine.types import CandidateRecord, Finding, MetricSpec, Phase, SearchParam, Severity


def metric_specs(agent: api.DGMAgent) -> list[MetricSpec]:
    return [MetricSpec(m.name, m.goal, m.weight, m.unit) for m in agent.spec.evaluation.metrics]


def search_space(agent: api.DGMAgent) -> list[SearchParam]:
    out = []
    for p in agent.spec.proposer.search_space or []:
        out.append(SearchParam(
            file=p.file, key=p.key, type=p.type, min=p.min, max=p.max, step=p.step,
            choices=tuple(p.choices or ()), hints={k: v.value if hasattr(v, "value") else v for k, v in (p.hints or {}).items()},
        ))
    return out


def safety_policy(agent: api.DGMAgent) -> engine_safety.SafetyPolicy:
    policy = agent.spec.policy
    kwargs: dict[str, Any] = dict(
        allowed_files=tuple(policy.allowed_files or ("*",)),
        max_change_bytes=policy.max_change_bytes,
        max_files=policy.max_files,
        search_space=tuple(search_space(agent)),
    )
    protected = agent.spec.evaluation.protected_files
    if protected:
        kwargs["protected_files"] = tuple(engine_safety.DEFAULT_PROTECTED_FILES) + tuple(protected)
    if policy.allowed_imports:
        kwargs["allowed_imports"] = frozenset(policy.allowed_imports)
    return engine_safety.SafetyPolicy(**kwargs)


def configmap_key_findings(changes: Mapping[str, str]) -> list[Finding]:
    """Change keys become ConfigMap keys of the live agent (the rule lives in the engine;
    :func:`engine_safety.analyze` applies it to every change)."""
    return engine_safety.configmap_key_findings(changes)


def metrics_to_list(metrics: Mapping[str, float], *, units: Mapping[str, str | None], when: str,
                    samples: Mapping[str, Sequence[float]] | None = None) -> list[dict[str, Any]]:
    out = []
    for name in sorted(metrics):
        item: dict[str, Any] = {"name": name, "value": metrics[name], "timestamp": when}
        if units.get(name):
            item["unit"] = units[name]
        if samples and samples.get(name) and len(samples[name]) > 1:
            item["context"] = {"samples": list(samples[name])}
        out.append(item)
    return out


def metrics_from_list(items: Sequence[Mapping[str, Any]] | None) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(means, samples) from a status metric list."""
    means: dict[str, float] = {}
    samples: dict[str, list[float]] = {}
    for item in items or []:
        means[item["name"]] = float(item["value"])
        ctx = item.get("context") or {}
        if isinstance(ctx.get("samples"), list):
            samples[item["name"]] = [float(v) for v in ctx["samples"]]
    return means, samples


def parse_result(message: str | None) -> tuple[dict[str, float] | None, dict[str, list[float]], dict[str, Any], str | None]:
    """(metrics or None, samples, tests, error) from an evaluation's termination message."""
    if not message:
        return None, {}, {}, "the evaluation wrote no termination message"
    try:
        payload = json.loads(message)
    except ValueError:
        return None, {}, {}, f"the termination message is not JSON: {message[:200]!r}"
    if not isinstance(payload, dict):
        return None, {}, {}, "the termination message is not a JSON object"
    raw = payload.get("metrics")
    metrics = None
    if isinstance(raw, dict):
        metrics = {k: float(v) for k, v in raw.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not metrics:
            metrics = None
    samples = {k: [float(x) for x in v] for k, v in (payload.get("samples") or {}).items()
               if isinstance(v, list) and all(isinstance(x, (int, float)) for x in v)}
    tests = payload["tests"] if isinstance(payload.get("tests"), dict) else {}
    error = payload.get("error")
    return metrics, samples, tests, str(error) if error is not None else None


def candidate_record(obj: Mapping[str, Any], order: float) -> CandidateRecord:
    spec, status = obj.get("spec", {}), obj.get("status") or {}
    validation = status.get("validation") or {}
    metrics, _ = metrics_from_list(validation.get("metricsAfter"))
    return CandidateRecord(
        name=obj["metadata"]["name"],
        parent=spec.get("parent") or None,
        phase=Phase(status.get("phase") or Phase.PROPOSED.value),
        metrics=metrics,
        score=validation.get("improvementScore"),
        reason=status.get("reason"),
        created=order,
    )


def image_findings(image: str | None, current: str | None, allowed: Sequence[str],
                   grader_image: str | None = None) -> list[Finding]:
    """An image change is a finding: it is evaluated with that image, and it waits for
    approval unless policy.allowedImages matches it (see the apply chain). The grader's own
    image is never a candidate's: it holds the task suite and its answers."""
    if not image or image == current:
        return []
    if grader_image and image.split("@")[0] == grader_image.split("@")[0]:
        return [Finding("grader_image", Severity.CRITICAL, None,
                        f"the candidate's image {image} is the evaluation's grader image, which holds the answers")]
    ok = image_allowed(image, allowed)
    return [Finding("image_change", Severity.LOW, None,
                    f"changes the agent's image from {current or '(unknown)'} to {image}"
                    + ("; matches policy.allowedImages" if ok else "; not in policy.allowedImages: needs approval"))]
