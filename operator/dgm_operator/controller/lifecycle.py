"""The reconcilers: read the state from the API, ask the engine, write the result.

Level-based: every call looks at what is in the API now and takes the next step, so a
missed event, a duplicate event or a restarted operator all end in the same place.
Children have deterministic names (:mod:`.names`) and creation treats AlreadyExists as
done. Decisions come from the engine's pure policies; this module only moves data.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import signal
import statistics
import threading
from collections import defaultdict
from typing import Any, Callable, Mapping

from ..api import constants
from . import builders, mapping, names
from . import metrics as telemetry
from ..api import models as api
from .conditions import get_condition, set_condition
from ..engine import policies, proposers, safety as engine_safety, scoring, selection
from ..engine.archive import Archive
from ..engine.types import CandidateRecord, Phase
from .kube import Kube, now

log = logging.getLogger(__name__)

ACTIVE = constants.ACTIVE_PHASES
TERMINAL = constants.FINAL_PHASES
VERIFIED_REASONS = constants.VERIFIED_REASONS
POST_APPLY_STAGE = "postapply"


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def failpoint(name: str) -> None:
    """Crash-safety test hook: with ``DGM_FAILPOINT=name`` the operator SIGKILLs itself here,
    between two writes, so tests can show a restart neither loses nor duplicates work."""
    if os.environ.get("DGM_FAILPOINT") == name:
        log.warning("failpoint %s: killing the operator", name)
        os.kill(os.getpid(), signal.SIGKILL)


def job_state(job: Mapping[str, Any] | None) -> tuple[str, str]:
    """("running" | "succeeded" | "failed" | "missing", reason) of a Job dict."""
    if job is None:
        return "missing", ""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "succeeded", cond.get("reason") or ""
        if cond.get("type") == "Failed":
            return "failed", cond.get("reason") or ""
    return "running", ""


class Reconciler:
    """One per operator process. Locks serialise work on one candidate and on one agent
    (apply, rollback, admission to Testing) inside this process; the operator runs as a
    single replica (or with kopf peering), so that is enough."""

    def __init__(self, kube: Kube, clock: Callable[[], float] | None = None):
        self.kube = kube
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc).timestamp())
        self._locks: dict[tuple[str, str, str], threading.RLock] = defaultdict(threading.RLock)
        self._guard = threading.Lock()
        # Namespaces whose deny-egress NetworkPolicy this process created or found: one
        # create per namespace and process instead of one per Job.
        self._sandboxed_namespaces: set[str] = set()

    def lock(self, kind: str, namespace: str, name: str) -> threading.RLock:
        with self._guard:
            return self._locks[(kind, namespace, name)]

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Drop the lock of an object that needs no more work (decided or deleted), so the
        table does not grow with every candidate ever seen."""
        with self._guard:
            self._locks.pop((kind, namespace, name), None)

    # ================================================================ candidates
    def reconcile_candidate(self, namespace: str, name: str) -> list[str]:
        """Take the next step for one candidate. Returns sibling candidates worth a look
        (queued ones, when this one left the active set)."""
        with self.lock("candidate", namespace, name):
            obj = self.kube.get_candidate(namespace, name)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                self.forget("candidate", namespace, name)
                return []
            cand = api.ImprovementCandidate.model_validate(obj)
            status = obj.get("status") or {}
            phase = status.get("phase") or Phase.PROPOSED.value
            if phase in TERMINAL:
                self.forget("candidate", namespace, name)
                return []
            agent_obj = self.kube.get_agent(namespace, cand.spec.agent_ref)
            if agent_obj is None:
                self._candidate_status(obj, {"phase": phase}, reason="AgentNotFound",
                                       message=f"DGMAgent {cand.spec.agent_ref!r} not found in {namespace}")
                return []
            if (obj["metadata"].get("labels") or {}).get(constants.LABEL_AGENT) != cand.spec.agent_ref:
                obj = self.kube.patch_metadata(obj, {"labels": {constants.LABEL_AGENT: cand.spec.agent_ref}})
            agent = api.DGMAgent.model_validate(agent_obj)
            action = (obj["metadata"].get("annotations") or {}).get(constants.ANNOTATION_ACTION)
            if action == "reject" and phase in (Phase.PROPOSED.value, Phase.VALIDATED.value):
                self._finish(obj, agent_obj, Phase.REJECTED.value, "RejectedByUser",
                             "rejected through the dgm.io/action annotation", cond=("Applied", False))
                return self._siblings(namespace, agent_obj)
            if phase == Phase.PROPOSED.value:
                return self._proposed(obj, cand, agent_obj, agent)
            if phase == Phase.TESTING.value:
                return self._testing(obj, cand, agent_obj, agent)
            if phase == Phase.VALIDATED.value:
                self._validated(obj, cand, agent_obj, agent)
                return []
            if phase == Phase.APPLIED.value:
                self._applied(obj, cand, agent_obj, agent)
            return []

    # -- Proposed: safety analysis, then admission to Testing -------------------------
    def _proposed(self, obj, cand: api.ImprovementCandidate, agent_obj, agent: api.DGMAgent) -> list[str]:
        namespace = obj["metadata"]["namespace"]
        base_files, why = self._parent_files(obj, cand, agent_obj)
        if base_files is None:
            self._candidate_status(obj, {"phase": Phase.PROPOSED.value}, reason=why[0], message=why[1])
            return []
        status = obj.get("status") or {}
        generation = obj["metadata"].get("generation")
        patch: dict[str, Any] = {}
        conditions = status.get("conditions") or []
        if get_condition(conditions, "SafetyChecked") is None:
            report = engine_safety.analyze(cand.spec.changes, mapping.safety_policy(agent))
            findings = list(report.findings) + mapping.configmap_key_findings(cand.spec.changes)
            score = engine_safety.score_findings(findings)
            decision = policies.evaluate_chain(policies.SAFETY_CHAIN, policies.Facts(
                safety_score=score, safety_threshold=agent.spec.policy.safety_threshold, findings=findings))
            patch["safety"] = {"score": round(score, 4), "findings": [
                {k: v for k, v in f.as_dict().items() if v is not None} for f in findings]}
            if decision is not None:
                conditions = set_condition(conditions, "SafetyChecked", False, decision.reason, decision.message,
                                           generation=generation, now=now())
                self._write(obj, {**patch, "conditions": conditions, "phase": Phase.REJECTED.value,
                                  "reason": decision.reason, "message": decision.message},
                            event=(decision.reason, decision.message, True))
                return []
            conditions = set_condition(conditions, "SafetyChecked", True, "SafetyPassed",
                                       f"safety score {score:.2f} >= threshold {agent.spec.policy.safety_threshold:.2f}"
                                       f" ({len(findings)} findings)", generation=generation, now=now())
        files = {**base_files, **cand.spec.changes}
        with self.lock("agent", namespace, agent.metadata["name"]):
            active = sum(1 for c in self.kube.list_candidates(namespace, agent.metadata["name"])
                         if (c.get("status") or {}).get("phase") == Phase.TESTING.value)
            decision = policies.evaluate_chain((policies.concurrency_limit_reached,), policies.Facts(
                active_candidates=active, max_concurrent_candidates=agent.spec.policy.max_concurrent_candidates))
            if decision is not None:
                if patch or status.get("reason") != "Queued":
                    self._write(obj, {**patch, "conditions": conditions, "phase": Phase.PROPOSED.value,
                                      "reason": "Queued", "message": decision.message})
                return []
            stage = self._stages(agent)[0]
            job_name = self._start_stage(obj, agent_obj, agent, files, stage, create_workspace=True)
            failpoint("job-created")
            started = now()
            conditions = set_condition(conditions, "Evaluated", "Unknown", "EvaluationRunning",
                                       f"stage {stage['name']}: Job {job_name}", generation=generation, now=started)
            self._write(obj, {**patch, "conditions": conditions, "phase": Phase.TESTING.value,
                              "reason": "EvaluationStarted", "message": f"evaluation Job {job_name} created",
                              "validation": {"jobName": job_name, "stage": stage["name"], "stagesPassed": [],
                                             "startedAt": started}},
                        event=("EvaluationStarted", f"stage {stage['name']}: Job {job_name}", False))
        return []

    def _parent_files(self, obj, cand, agent_obj) -> tuple[dict[str, str] | None, tuple[str, str]]:
        """The parent's full file set: the parent candidate's workspace, or the files of
        the agent's current revision when the candidate starts from the baseline."""
        namespace = obj["metadata"]["namespace"]
        if cand.spec.parent:
            parent = self.kube.get_candidate(namespace, cand.spec.parent)
            if parent is None:
                return None, ("ParentNotFound", f"parent candidate {cand.spec.parent!r} does not exist")
            cm = self.kube.get_configmap(namespace, names.workspace_configmap(cand.spec.parent))
            if cm is None:
                return None, ("ParentUnavailable",
                              f"parent {cand.spec.parent!r} has no workspace (it never reached evaluation)")
            return dict(cm.get("data") or {}), ("", "")
        agent_status = agent_obj.get("status") or {}
        revision = agent_status.get("currentRevision")
        if not revision:
            return None, ("WaitingForAgent", "the agent has no revision snapshot yet")
        cm = self.kube.get_configmap(namespace, names.revision_snapshot(agent_obj["metadata"]["name"], revision))
        if cm is None:
            return None, ("WaitingForAgent", f"snapshot of revision {revision} not found")
        return dict(cm.get("data") or {}), ("", "")

    def _stages(self, agent: api.DGMAgent) -> list[dict[str, Any]]:
        ev = agent.spec.evaluation
        if not ev.stages:
            return [{"name": "full", "args": [], "passThreshold": None, "repeats": ev.repeats}]
        return [{"name": s.name, "args": list(s.args or []), "passThreshold": s.pass_threshold,
                 "repeats": s.repeats or ev.repeats} for s in ev.stages]

    def _start_stage(self, obj, agent_obj, agent: api.DGMAgent, files: Mapping[str, str] | None,
                     stage: Mapping[str, Any], *, create_workspace: bool, workspace: str | None = None) -> str:
        """Create (idempotently) the workspace ConfigMap, the namespace's deny-egress
        NetworkPolicy and the stage's evaluation Job, all owned by ``obj``."""
        namespace, owner_name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        owner = builders.owner_reference(obj)
        is_candidate = obj["kind"] == "ImprovementCandidate"
        labels = {constants.LABEL_AGENT: agent_obj["metadata"]["name"]}
        if is_candidate:
            labels[constants.LABEL_CANDIDATE] = owner_name
        workspace = workspace or names.workspace_configmap(owner_name)
        if create_workspace:
            self.kube.create(builders.files_configmap(workspace, namespace, files or {}, owner=owner,
                                                      labels={**labels, constants.LABEL_ROLE: "workspace"}))
            failpoint("workspace-created")
        if namespace not in self._sandboxed_namespaces:
            self.kube.create(builders.sandbox_network_policy(namespace))
            self._sandboxed_namespaces.add(namespace)
        ev = agent.spec.evaluation
        job_name = (names.evaluation_job(owner_name, stage["name"]) if is_candidate
                    else names.baseline_job(owner_name, int(stage["revision"]), stage["name"]))
        sandbox = ev.sandbox or api.SandboxSpec()
        resources = ev.resources.model_dump(exclude_none=True) if ev.resources else None
        self.kube.create(builders.evaluation_job(
            name=job_name, namespace=namespace, owner=owner, labels=labels, image=ev.image,
            command=list(ev.command or []), args=[*(ev.args or []), *stage.get("args", [])],
            env=[{"name": e.name, "value": e.value} for e in ev.env or []],
            workspace_configmap=workspace, timeout_seconds=ev.timeout_seconds,
            repeats=int(stage.get("repeats") or ev.repeats), stage=stage["name"], resources=resources,
            runtime_class_name=sandbox.runtime_class_name, node_selector=sandbox.node_selector,
            tolerations=sandbox.tolerations, pod_labels=sandbox.pod_labels,
        ))
        return job_name

    # -- Testing: read the Job back, score, decide ----------------------------------------
    def _job_result(self, namespace: str, job_name: str):
        """None while running; else (state, reason, metrics, samples, tests, error, message)."""
        job = self.kube.get_job(namespace, job_name)
        state, reason = job_state(job)
        if state == "running":
            return None
        message, exit_code = self.kube.job_pod_message(namespace, job_name) if job else (None, None)
        metrics, samples, tests, error = mapping.parse_result(message)
        return state, reason, metrics, samples, tests, error, message, exit_code

    def _testing(self, obj, cand, agent_obj, agent: api.DGMAgent) -> list[str]:
        namespace = obj["metadata"]["namespace"]
        status = obj.get("status") or {}
        validation = dict(status.get("validation") or {})
        stages = self._stages(agent)
        index = next((i for i, s in enumerate(stages) if s["name"] == validation.get("stage")), 0)
        stage = stages[index]
        job_name = validation.get("jobName") or names.evaluation_job(obj["metadata"]["name"], stage["name"])
        result = self._job_result(namespace, job_name)
        if result is None:
            return []
        state, job_reason, metrics, samples, tests, error, message, exit_code = result
        if state == "missing":
            # The Job is gone (deleted by hand, or TTL before we looked): run the stage again.
            self._start_stage(obj, agent_obj, agent, None, stage, create_workspace=False)
            return []
        baseline = (agent_obj.get("status") or {}).get("baseline") or {}
        base_metrics, base_samples = mapping.metrics_from_list(stage_baseline(baseline, stage["name"]))
        if state == "succeeded" and metrics is not None and not base_metrics:
            return []  # wait for the agent's baseline; the agent pokes us when it has one
        specs = mapping.metric_specs(agent)
        facts = policies.Facts(
            evaluation_failed=state == "failed",
            failure_message=self._failure_message(job_name, job_reason, exit_code, error, message),
            metrics=metrics, required_metrics=[m.name for m in specs], min_improvement=agent.spec.policy.min_improvement,
        )
        validation.update({"jobName": job_name, "stage": stage["name"], "finishedAt": now()})
        if tests:
            validation["tests"] = tests
        started = _ts(validation.get("startedAt"))
        if started is not None:
            validation["durationSeconds"] = round(self.clock() - started, 3)
            telemetry.EVALUATION_SECONDS.labels(namespace, agent_obj["metadata"]["name"], stage["name"]).observe(
                validation["durationSeconds"])
        if state == "failed" and job_reason == "DeadlineExceeded":
            decision = policies.Decision("DeadlineExceeded", f"evaluation Job {job_name} exceeded "
                                         f"activeDeadlineSeconds {agent.spec.evaluation.timeout_seconds}")
        else:
            decision = policies.evaluate_chain((policies.evaluation_failed, policies.metrics_unavailable), facts)
        if decision is not None:
            self._finish(obj, agent_obj, Phase.FAILED.value, decision.reason, decision.message,
                         extra={"validation": validation}, cond=("Evaluated", False))
            return self._siblings(namespace, agent_obj)
        units = {m.name: m.unit for m in agent.spec.evaluation.metrics}
        cand_stats = _stats(metrics, samples)
        base_stats = _stats(base_metrics, base_samples)
        gain = scoring.improvement_score(metrics, base_metrics, specs)
        noise = scoring.noise_bound(cand_stats, base_stats, specs) * scoring.DEFAULT_Z
        after = mapping.metrics_to_list(metrics, units=units, when=now(), samples=samples)
        results = [r for r in validation.get("stageResults") or [] if r.get("name") != stage["name"]]
        results.append({"name": stage["name"], "metrics": after, "improvementScore": round(gain, 6)})
        validation.update({
            "metricsBefore": stage_baseline(baseline, stage["name"]) or [],
            "metricsAfter": after, "stageResults": results,
            "improvementScore": round(gain, 6), "noise": round(noise, 6),
            "repeats": int(stage.get("repeats") or 1),
        })
        last = index == len(stages) - 1
        if not last:
            threshold = stage["passThreshold"] if stage["passThreshold"] is not None else 0.0
            decision = policies.stage_failed(policies.Facts(stage=index, stage_score=gain, stage_threshold=threshold))
            if decision is not None:
                self._finish(obj, agent_obj, Phase.REJECTED.value, decision.reason, decision.message,
                             extra={"validation": validation}, cond=("Evaluated", True))
                return self._siblings(namespace, agent_obj)
            nxt = stages[index + 1]
            next_job = self._start_stage(obj, agent_obj, agent, None, nxt, create_workspace=False)
            validation.update({"jobName": next_job, "stage": nxt["name"],
                               "stagesPassed": [s["name"] for s in stages[: index + 1]],
                               "startedAt": now()})
            validation.pop("finishedAt", None)
            self._write(obj, {"validation": validation, "reason": "StagePassed",
                              "message": f"stage {stage['name']} scored {gain:.4f}; running {nxt['name']}"},
                        event=("StagePassed", f"stage {stage['name']} scored {gain:.4f}", False))
            return []
        validation["stagesPassed"] = [s["name"] for s in stages]
        telemetry.IMPROVEMENT_SCORE.labels(namespace, agent_obj["metadata"]["name"]).observe(gain)
        facts.improvement, facts.noise_bound = gain, noise
        decision = policies.evaluate_chain((policies.insufficient_improvement, policies.validated), facts)
        assert decision is not None  # `validated` always answers when improvement is set
        if decision.reason != "ImprovementValidated":
            self._finish(obj, agent_obj, Phase.REJECTED.value, decision.reason, decision.message,
                         extra={"validation": validation}, cond=("Evaluated", True))
            return self._siblings(namespace, agent_obj)
        obj = self._write(obj, {"validation": validation, "phase": Phase.VALIDATED.value,
                                "reason": decision.reason, "message": decision.message,
                                "conditions": set_condition((obj.get("status") or {}).get("conditions"),
                                                            "Evaluated", True, decision.reason, decision.message,
                                                            generation=obj["metadata"].get("generation"), now=now())},
                          event=(decision.reason, decision.message, False))
        self._validated(obj, cand, agent_obj, agent)
        return self._siblings(namespace, agent_obj)

    @staticmethod
    def _failure_message(job_name, job_reason, exit_code, error, message) -> str:
        parts = [f"evaluation Job {job_name} failed"]
        if job_reason:
            parts.append(f"({job_reason})")
        if exit_code not in (None, 0):
            parts.append(f"exit code {exit_code}")
        if error:
            parts.append(f": {error}")
        elif message and not message.lstrip().startswith("{"):
            parts.append(f": {message[-300:]}")
        return " ".join(parts)

    # -- Validated: the approval gate, then apply -----------------------------------------
    def _validated(self, obj, cand, agent_obj, agent: api.DGMAgent) -> None:
        action = (obj["metadata"].get("annotations") or {}).get(constants.ANNOTATION_ACTION)
        decision = policies.evaluate_chain(policies.APPLY_CHAIN, policies.Facts(
            auto_apply=agent.spec.policy.auto_apply, approved=cand.spec.approved or action == "approve"))
        if decision is None and agent.spec.paused:
            decision = policies.agent_paused(policies.Facts(paused=True))
        if decision is not None:
            if (obj.get("status") or {}).get("reason") != decision.reason:
                self._write(obj, {"reason": decision.reason, "message": decision.message},
                            event=(decision.reason, decision.message, False))
            return
        self.apply_candidate(obj, agent_obj)

    def apply_candidate(self, obj, agent_obj) -> None:
        """New revision: immutable snapshot, live ConfigMap, Deployment template stamp (and
        image), by server-side apply; then the agent's and the candidate's status."""
        namespace, cand_name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        agent_name = agent_obj["metadata"]["name"]
        with self.lock("agent", namespace, agent_name):
            agent_obj = self.kube.get_agent(namespace, agent_name) or agent_obj
            agent = api.DGMAgent.model_validate(agent_obj)
            astatus = agent_obj.get("status") or {}
            revisions = list(astatus.get("revisions") or [])
            done = next((r for r in revisions if r.get("candidate") == cand_name), None)
            if done is None:
                workspace = self.kube.get_configmap(namespace, names.workspace_configmap(cand_name))
                if workspace is None:
                    self._finish(obj, agent_obj, Phase.FAILED.value, "WorkspaceMissing",
                                 "the candidate's workspace ConfigMap is gone; cannot apply", cond=("Applied", False))
                    return
                files = dict(workspace.get("data") or {})
                number = max((int(r["revision"]) for r in revisions), default=1) + 1
                current = next((r for r in revisions if r.get("revision") == astatus.get("currentRevision")), {})
                image = obj["spec"].get("image") or current.get("image")
                snapshot = names.revision_snapshot(agent_name, number)
                self.kube.create(builders.files_configmap(
                    snapshot, namespace, files, owner=builders.owner_reference(agent_obj),
                    labels={constants.LABEL_AGENT: agent_name, constants.LABEL_REVISION: str(number),
                            constants.LABEL_CANDIDATE: cand_name, constants.LABEL_ROLE: "revision"}))
                failpoint("snapshot-created")
                self._roll_to(agent, files, number, image)
                validation = (obj.get("status") or {}).get("validation") or {}
                done = {"revision": number, "candidate": cand_name, "snapshot": snapshot, "image": image,
                        "appliedAt": now(), "score": validation.get("improvementScore")}
                self.kube.patch_status(agent_obj, {
                    "revisions": revisions + [done], "currentRevision": number,
                    "baseline": {"revision": number, "metrics": validation.get("metricsAfter") or [],
                                 "stages": [{"name": r["name"], "metrics": r.get("metrics") or []}
                                            for r in validation.get("stageResults") or []],
                                 "score": 0.0, "jobName": validation.get("jobName"), "measuredAt": now()},
                })
                self.kube.event(agent_obj, "RevisionApplied", f"revision {number} from candidate {cand_name}")
                telemetry.APPLIES.labels(namespace, agent_name).inc()
                failpoint("agent-status-written")
            self._finish(obj, agent_obj, Phase.APPLIED.value, "Applied",
                         f"applied as revision {done['revision']}", extra={"revision": done["revision"]},
                         cond=("Applied", True))

    def _roll_to(self, agent: api.DGMAgent, files: Mapping[str, str], revision: int, image: str | None) -> None:
        ns, target = agent.metadata["namespace"], agent.spec.target
        self.kube.apply(builders.live_configmap_apply(target.config_map, ns, files))
        failpoint("live-configmap-applied")
        deployment = self.kube.get_deployment(ns, target.deployment)
        if deployment is None:
            raise RuntimeError(f"Deployment {target.deployment} not found")
        containers = deployment["spec"]["template"]["spec"]["containers"]
        container = next((c for c in containers if c["name"] == target.container), containers[0])
        self.kube.apply(builders.deployment_apply(target.deployment, ns, container=container["name"],
                                                  revision=revision, image=image or container["image"]))

    # -- Applied: watch the rollout, verify after apply, roll back ------------------------
    def _applied(self, obj, cand, agent_obj, agent: api.DGMAgent) -> None:
        namespace = obj["metadata"]["namespace"]
        status = obj.get("status") or {}
        revision = status.get("revision")
        astatus = agent_obj.get("status") or {}
        if revision is None or astatus.get("currentRevision") != revision:
            return
        if status.get("reason") in VERIFIED_REASONS:
            return
        deployment = self.kube.get_deployment(namespace, agent.spec.target.deployment)
        if deployment is None:
            return
        rollout = rollout_state(deployment, revision)
        rollback = agent.spec.policy.rollback
        if rollout == "failed":
            if rollback.on_rollout_failure:
                self.rollback(agent_obj, previous_revision(astatus, revision), reason="RolloutFailed",
                              message=f"revision {revision} did not progress (ProgressDeadlineExceeded)")
            elif status.get("reason") != "RolloutFailed":
                self._write(obj, {"reason": "RolloutFailed", "message": f"revision {revision} did not progress"},
                            event=("RolloutFailed", f"revision {revision} did not progress", True))
            return
        if rollout != "complete":
            return
        if not rollback.on_regression:
            self._write(obj, {"reason": "RolloutComplete", "message": f"revision {revision} rolled out"},
                        event=("RolloutComplete", f"revision {revision} rolled out", False))
            return
        snapshot = names.revision_snapshot(agent_obj["metadata"]["name"], revision)
        stage = {"name": POST_APPLY_STAGE, "args": list(self._stages(agent)[-1]["args"]),
                 "repeats": agent.spec.evaluation.repeats}
        job_name = names.evaluation_job(obj["metadata"]["name"], POST_APPLY_STAGE)
        result = self._job_result(namespace, job_name)
        if result is None:
            return
        if result[0] == "missing":
            self._start_stage(obj, agent_obj, agent, None, stage, create_workspace=False, workspace=snapshot)
            if status.get("reason") != "Verifying":
                self._write(obj, {"reason": "Verifying", "message": f"post-apply evaluation Job {job_name}"})
            return
        state, _, metrics, samples, _, _, _, _ = result
        validation = status.get("validation") or {}
        before, _ = mapping.metrics_from_list(validation.get("metricsBefore"))
        specs = mapping.metric_specs(agent)
        if state != "succeeded" or metrics is None or not before or any(m.name not in metrics for m in specs):
            self._write(obj, {"reason": "VerificationInconclusive",
                              "message": "the post-apply evaluation produced no usable metrics; keeping the revision"})
            return
        post = scoring.improvement_score(metrics, before, specs)
        decision = policies.regression(policies.Facts(post_apply_improvement=post,
                                                      regression_tolerance=agent.spec.policy.min_improvement))
        if decision is not None:
            self.rollback(agent_obj, previous_revision(astatus, revision), reason=decision.reason,
                          message=decision.message)
            return
        self._write(obj, {"reason": "Verified",
                          "message": f"post-apply score {post:.4f} against the previous revision"},
                    event=("Verified", f"post-apply score {post:.4f}", False))

    def rollback(self, agent_obj, target: int | None, *, reason: str, message: str) -> bool:
        """Restore revision ``target`` byte for byte (its snapshot and image), mark newer
        revisions rolled back and their candidates RolledBack. False if impossible."""
        namespace, agent_name = agent_obj["metadata"]["namespace"], agent_obj["metadata"]["name"]
        with self.lock("agent", namespace, agent_name):
            agent_obj = self.kube.get_agent(namespace, agent_name) or agent_obj
            agent = api.DGMAgent.model_validate(agent_obj)
            astatus = agent_obj.get("status") or {}
            revisions = [dict(r) for r in astatus.get("revisions") or []]
            record = next((r for r in revisions if r.get("revision") == target), None)
            if target is None or record is None:
                self.kube.event(agent_obj, "RollbackFailed", f"no revision {target} to roll back to", warning=True)
                return False
            snapshot = self.kube.get_configmap(namespace, record.get("snapshot") or names.revision_snapshot(agent_name, target))
            if snapshot is None:
                self.kube.event(agent_obj, "RollbackFailed", f"snapshot of revision {target} is missing", warning=True)
                return False
            self._roll_to(agent, dict(snapshot.get("data") or {}), target, record.get("image"))
            stamp = now()
            rolled = []
            for r in revisions:
                if r["revision"] > target and not r.get("rolledBackAt"):
                    r["rolledBackAt"] = stamp
                    if r.get("candidate"):
                        rolled.append(r["candidate"])
            self.kube.patch_status(agent_obj, {"revisions": revisions, "currentRevision": target,
                                               "baseline": {"revision": target, "metrics": None, "stages": None,
                                                            "score": None, "jobName": None, "measuredAt": None}})
            self.kube.event(agent_obj, "RolledBack", f"revision {target} restored: {message}", warning=True)
            telemetry.ROLLBACKS.labels(namespace, agent_name, reason).inc()
        for cand_name in rolled:
            cobj = self.kube.get_candidate(namespace, cand_name)
            if cobj is not None and (cobj.get("status") or {}).get("phase") == Phase.APPLIED.value:
                self._finish(cobj, agent_obj, Phase.ROLLED_BACK.value, reason,
                             f"{message}; revision {target} restored", cond=("RolledBack", True))
        return True

    # -- status writing -----------------------------------------------------------------------
    def _write(self, obj, status_patch: Mapping[str, Any], *, event: tuple[str, str, bool] | None = None):
        patch = dict(status_patch)
        patch.setdefault("observedGeneration", obj["metadata"].get("generation"))
        out = self.kube.patch_status(obj, patch)
        if event is not None:
            self.kube.event(obj, event[0], event[1], warning=event[2])
        return out

    def _candidate_status(self, obj, patch: Mapping[str, Any], *, reason: str, message: str) -> None:
        status = obj.get("status") or {}
        if status.get("reason") == reason and status.get("message") == message and status.get("phase"):
            return
        self._write(obj, {**patch, "reason": reason, "message": message}, event=(reason, message, True))

    def _finish(self, obj, agent_obj, phase: str, reason: str, message: str, *, extra=None, cond=None) -> None:
        status = obj.get("status") or {}
        patch: dict[str, Any] = {"phase": phase, "reason": reason, "message": message, **(extra or {})}
        if cond is not None:
            patch["conditions"] = set_condition(status.get("conditions"), cond[0], cond[1], reason, message,
                                                generation=obj["metadata"].get("generation"), now=now())
        warning = phase in (Phase.FAILED.value, Phase.ROLLED_BACK.value) or reason == "UnsafeChange"
        self._write(obj, patch, event=(reason, message, warning))
        telemetry.DECISIONS.labels(obj["metadata"]["namespace"], agent_obj["metadata"]["name"], phase, reason).inc()

    def _siblings(self, namespace: str, agent_obj) -> list[str]:
        return [c["metadata"]["name"] for c in self.kube.list_candidates(namespace, agent_obj["metadata"]["name"])
                if (c.get("status") or {}).get("phase", Phase.PROPOSED.value) == Phase.PROPOSED.value]

    # ================================================================ agents
    def reconcile_agent(self, namespace: str, name: str) -> list[str]:
        """Snapshot, baseline, rollback requests, the improvement loop and the summary.
        Returns the agent's candidates that still need the operator (see
        :func:`needs_attention`): the agent's timer is their level-based safety net."""
        with self.lock("agent", namespace, name):
            obj = self.kube.get_agent(namespace, name)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                return []
            agent = api.DGMAgent.model_validate(obj)
            status = dict(obj.get("status") or {})
            generation = obj["metadata"].get("generation")
            conditions = status.get("conditions") or []
            patch: dict[str, Any] = {}
            target = agent.spec.target
            deployment = self.kube.get_deployment(namespace, target.deployment)
            live = self.kube.get_configmap(namespace, target.config_map)
            missing = ([f"Deployment {target.deployment}"] if deployment is None else []) + \
                      ([f"ConfigMap {target.config_map}"] if live is None else [])
            if missing:
                msg = " and ".join(missing) + f" not found in {namespace}"
                conditions = set_condition(conditions, "Degraded", True, "TargetNotFound", msg, generation=generation, now=now())
                conditions = set_condition(conditions, "Ready", False, "TargetNotFound", msg, generation=generation, now=now())
                self._agent_status(obj, status, {"phase": "Degraded", "conditions": conditions, "observedGeneration": generation})
                return []
            # Revision 1: the live files before the operator ever changed them.
            if not status.get("revisions"):
                containers = deployment["spec"]["template"]["spec"]["containers"]
                container = next((c for c in containers if c["name"] == target.container), containers[0])
                snapshot = names.revision_snapshot(name, 1)
                self.kube.create(builders.files_configmap(
                    snapshot, namespace, dict(live.get("data") or {}), owner=builders.owner_reference(obj),
                    labels={constants.LABEL_AGENT: name, constants.LABEL_REVISION: "1", constants.LABEL_ROLE: "revision"}))
                status["revisions"] = [{"revision": 1, "snapshot": snapshot, "image": container["image"], "appliedAt": now()}]
                status["currentRevision"] = 1
                patch.update(revisions=status["revisions"], currentRevision=1)
                self.kube.event(obj, "Snapshotted", f"live ConfigMap {target.config_map} kept as revision 1")
            revision = int(status["currentRevision"])
            # Baseline of the current revision.
            baseline = status.get("baseline") or {}
            if baseline.get("revision") != revision or not baseline.get("metrics"):
                baseline, failure = self._baseline(obj, agent, revision)
                if baseline is not None:
                    patch["baseline"] = baseline
                    status["baseline"] = baseline
                    self.kube.event(obj, "BaselineMeasured", f"revision {revision}: " + ", ".join(
                        f"{m['name']}={m['value']:.4g}" for m in baseline["metrics"]))
                elif failure:
                    conditions = set_condition(conditions, "Degraded", True, failure[0], failure[1], generation=generation, now=now())
            ready = bool((status.get("baseline") or {}).get("metrics"))
            if ready:
                conditions = set_condition(conditions, "Degraded", False, "AsExpected", "target and baseline are in place",
                                           generation=generation, now=now())
            conditions = set_condition(conditions, "Ready", ready, "BaselineMeasured" if ready else "Baselining",
                                       f"revision {revision} " + ("measured" if ready else "being measured"),
                                       generation=generation, now=now())
            candidates = self.kube.list_candidates(namespace, name)
            # Rollback requests: spec (declarative, from Git) or annotation (imperative).
            request = self._rollback_request(obj, agent, status)
            if request is not None:
                key, to = request
                patch["handledRollback"] = key
                status["handledRollback"] = key
                self._agent_status(obj, status, patch)
                patch = {}
                self.rollback(obj, to, reason="RollbackRequested", message=f"rollback to revision {to} requested")
                return []
            # The improvement loop.
            active = sum(1 for c in candidates if (c.get("status") or {}).get("phase", "Proposed") in ACTIVE)
            decision = policies.evaluate_chain(policies.AGENT_CHAIN, policies.Facts(
                paused=agent.spec.paused, active_candidates=active,
                max_concurrent_candidates=agent.spec.policy.max_concurrent_candidates))
            improving_reason, improving_msg = (decision if decision else ("Idle", "waiting for the next interval"))
            if ready and decision is None and self._proposal_due(obj, agent, status):
                created, info = self._propose(obj, agent, status, candidates)
                patch["proposals"] = int(status.get("proposals") or 0) + 1
                patch["lastProposalTime"] = now()
                ann = (obj["metadata"].get("annotations") or {}).get(constants.ANNOTATION_PROPOSE)
                if ann:
                    patch["handledPropose"] = ann
                improving_reason, improving_msg = ("Proposed", info) if created else ("ProposerFailed", info)
                if created:
                    candidates = self.kube.list_candidates(namespace, name)
                    active += 1
            conditions = set_condition(conditions, "Improving", improving_reason in ("Proposed",) or active > 0,
                                       improving_reason, improving_msg, generation=generation, now=now())
            # Archive summary and retention.
            archive = self._archive(candidates, status)
            summary = archive.summary()
            keep = {r.get("candidate") for r in status.get("revisions") or [] if r.get("candidate") and not r.get("rolledBackAt")}
            for victim in archive.prune(agent.spec.archive.max_candidates, protected=keep):
                self.kube.delete_candidate(namespace, victim)
            telemetry.set_candidate_counts(namespace, name, [(c.get("status") or {}).get("phase") or "Proposed"
                                                           for c in candidates])
            phase = ("Paused" if agent.spec.paused else "Improving" if active else "Ready") if ready else "Baselining"
            patch.update({
                "phase": phase, "conditions": conditions, "observedGeneration": generation,
                "activeCandidates": active,
                "archive": {"size": summary.size, "bestScore": summary.best_score, "bestCandidate": summary.best_candidate},
            })
            self._agent_status(obj, status, patch)
            return [c["metadata"]["name"] for c in candidates if needs_attention(c)]

    def _agent_status(self, obj, status: Mapping[str, Any], patch: Mapping[str, Any]) -> None:
        """Write only what changed (ignoring condition timestamps that did not move)."""
        changed = {k: v for k, v in patch.items() if (obj.get("status") or {}).get(k) != v}
        if changed:
            self.kube.patch_status(obj, changed)

    def _baseline(self, obj, agent: api.DGMAgent, revision: int):
        """Measure ``revision`` with every stage's arguments (one Job per stage, owned by the
        agent), so each stage of a candidate is scored against the same stage of its base."""
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        specs = mapping.metric_specs(agent)
        units = {m.name: m.unit for m in agent.spec.evaluation.metrics}
        measured, pending = [], False
        for stage in self._stages(agent):
            job_name = names.baseline_job(name, revision, stage["name"])
            result = self._job_result(namespace, job_name)
            if result is None:
                pending = True
                continue
            if result[0] == "missing":
                self._start_stage(obj, obj, agent, None, {**stage, "revision": revision}, create_workspace=False,
                                  workspace=names.revision_snapshot(name, revision))
                pending = True
                continue
            state, job_reason, metrics, samples, _, error, message, exit_code = result
            if state != "succeeded" or metrics is None or any(m.name not in metrics for m in specs):
                why = self._failure_message(job_name, job_reason, exit_code, error, message) if state != "succeeded" \
                    else f"baseline Job {job_name} reported no usable metrics (need {', '.join(m.name for m in specs)})"
                return None, ("BaselineFailed", why)
            measured.append({"name": stage["name"],
                             "metrics": mapping.metrics_to_list(metrics, units=units, when=now(), samples=samples)})
        if pending:
            return None, None
        return {"revision": revision, "metrics": measured[-1]["metrics"], "stages": measured, "score": 0.0,
                "jobName": names.baseline_job(name, revision, measured[-1]["name"]), "measuredAt": now()}, None

    def _rollback_request(self, obj, agent: api.DGMAgent, status) -> tuple[str, int] | None:
        handled = status.get("handledRollback")
        ann = (obj["metadata"].get("annotations") or {}).get(constants.ANNOTATION_ROLLBACK)
        if ann:
            key = f"annotation:{ann}"
            if key != handled:
                current = int(status.get("currentRevision") or 1)
                target = previous_revision(status, current) if ann.split("@")[0] in ("", "previous") else int(ann.split("@")[0])
                return key, target
        want = agent.spec.rollback_to_revision
        if want is not None:
            key = f"spec:{want}@{obj['metadata'].get('generation')}"
            if key != handled and want != status.get("currentRevision"):
                return key, want
        return None

    def _proposal_due(self, obj, agent: api.DGMAgent, status) -> bool:
        ann = (obj["metadata"].get("annotations") or {}).get(constants.ANNOTATION_PROPOSE)
        if ann and ann != status.get("handledPropose"):
            return True
        if agent.spec.proposer.type.value == "webhook" and agent.spec.proposer.webhook is None:
            return False
        # The first proposal comes one interval after the agent was created, not at once,
        # so applying an agent never starts work before anyone asked for it.
        last = _ts(status.get("lastProposalTime")) or _ts(obj["metadata"].get("creationTimestamp"))
        return last is None or self.clock() - last >= agent.spec.policy.improvement_interval_minutes * 60

    def _archive(self, candidates, status) -> Archive:
        baseline = CandidateRecord(name="", phase=Phase.APPLIED, score=0.0, is_baseline=True)
        ordered = sorted(candidates, key=lambda c: c["metadata"].get("creationTimestamp") or "")
        records = [mapping.candidate_record(c, i) for i, c in enumerate(ordered, start=1)]
        known = {r.name for r in records}
        for r in records:  # a parent that was pruned or never existed: hang it off the baseline
            if r.parent and r.parent not in known:
                r.parent = None
        return Archive(baseline, records)

    def _propose(self, obj, agent: api.DGMAgent, status, candidates) -> tuple[bool, str]:
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        number = int(status.get("proposals") or 0) + 1
        seed = (agent.spec.proposer.seed if agent.spec.proposer.seed is not None else hash(obj["metadata"]["uid"])) + number
        rng = random.Random(seed)
        archive = self._archive(candidates, status)
        method = agent.spec.archive.parent_selection.value
        parent = selection.select_parents(archive, method, 1, rng)[0]
        parent_name = parent or None
        files_cm = self.kube.get_configmap(namespace, names.revision_snapshot(name, int(status["currentRevision"])))
        files = dict((files_cm or {}).get("data") or {})
        parent_files = None
        parent_metrics = None
        if parent_name:
            ws = self.kube.get_configmap(namespace, names.workspace_configmap(parent_name))
            if ws is None:
                parent_name = None
            else:
                parent_files = dict(ws.get("data") or {})
                parent_metrics = archive.get(parent_name).metrics
        base_metrics, _ = mapping.metrics_from_list((status.get("baseline") or {}).get("metrics"))
        ctx = proposers.AgentContext(
            agent_name=name, files=files, metrics=mapping.metric_specs(agent), search_space=mapping.search_space(agent),
            baseline_metrics=base_metrics, parent=parent_name, parent_files=parent_files,
            parent_metrics=parent_metrics, archive=archive.summary())
        kind = agent.spec.proposer.type.value
        settings = {}
        if kind == "webhook" and agent.spec.proposer.webhook is not None:
            settings = {"url": agent.spec.proposer.webhook.url, "timeout_seconds": agent.spec.proposer.webhook.timeout_seconds}
        try:
            draft = proposers.make_proposer(kind, settings).propose(ctx, rng)
        except (proposers.ProposerError, ValueError) as exc:
            self.kube.event(obj, "ProposerFailed", str(exc), warning=True)
            return False, f"proposer {kind} failed: {exc}"
        cand_name = names.proposed_candidate(name, number)
        body = {
            "apiVersion": constants.API_VERSION, "kind": constants.CANDIDATE_KIND,
            "metadata": {"name": cand_name, "namespace": namespace,
                         "labels": {constants.LABEL_AGENT: name, constants.LABEL_MANAGED_BY: constants.FIELD_MANAGER},
                         "ownerReferences": [builders.owner_reference(obj)]},
            "spec": {"agentRef": name, "improvementType": draft.improvement_type.value,
                     "description": draft.description, "changes": draft.changes,
                     "expectedImprovement": draft.expected_improvement, "riskLevel": draft.risk_level},
        }
        if parent_name:
            body["spec"]["parent"] = parent_name
        if draft.image:
            body["spec"]["image"] = draft.image
        self.kube.create_candidate(namespace, body)
        self.kube.event(obj, "CandidateProposed", f"{cand_name} from {parent_name or 'the baseline'} ({method}): {draft.description}")
        return True, f"proposed {cand_name} from {parent_name or 'the baseline'}"


def _stats(metrics: Mapping[str, float], samples: Mapping[str, list[float]]) -> dict[str, scoring.MetricStats]:
    out = {}
    for name, value in metrics.items():
        values = samples.get(name) or [value]
        if len(values) > 1:
            out[name] = scoring.MetricStats(value, statistics.stdev(values), len(values))
        else:
            out[name] = scoring.MetricStats(value, 0.0, 1)
    return out


def needs_attention(candidate: Mapping[str, Any]) -> bool:
    """Whether a candidate still has a step to take: not decided yet, waiting for approval
    or the baseline, or applied but its rollout not yet verified."""
    status = candidate.get("status") or {}
    phase = status.get("phase") or Phase.PROPOSED.value
    if phase in (Phase.PROPOSED.value, Phase.TESTING.value, Phase.VALIDATED.value):
        return True
    return phase == Phase.APPLIED.value and status.get("reason") not in VERIFIED_REASONS


def stage_baseline(baseline: Mapping[str, Any], stage: str) -> list[dict[str, Any]] | None:
    """The baseline's metrics for ``stage``: its own measurement when there is one, else
    the last stage's (a single-stage agent, or a post-apply check)."""
    for item in baseline.get("stages") or []:
        if item.get("name") == stage and item.get("metrics"):
            return item["metrics"]
    return baseline.get("metrics")


def previous_revision(agent_status: Mapping[str, Any], revision: int) -> int | None:
    """The newest revision below ``revision`` that was not rolled back."""
    older = [int(r["revision"]) for r in agent_status.get("revisions") or []
             if int(r["revision"]) < revision and not r.get("rolledBackAt")]
    return max(older) if older else None


def rollout_state(deployment: Mapping[str, Any], revision: int) -> str:
    """"pending" | "complete" | "failed" for the rollout of ``revision``."""
    meta, spec, status = deployment["metadata"], deployment["spec"], deployment.get("status") or {}
    stamped = ((spec["template"].get("metadata") or {}).get("annotations") or {}).get(constants.ANNOTATION_REVISION)
    if stamped != str(revision) or (status.get("observedGeneration") or 0) < meta.get("generation", 0):
        return "pending"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return "failed"
    replicas = spec.get("replicas", 1)
    if (status.get("updatedReplicas") or 0) >= replicas and (status.get("availableReplicas") or 0) >= replicas \
            and (status.get("replicas") or 0) <= replicas:
        return "complete"
    return "pending"
