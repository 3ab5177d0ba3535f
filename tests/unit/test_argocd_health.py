"""The Argo CD health checks in gitops/argocd/, run by a real Lua 5.1 (lupa) on sample objects.

The script runs as Argo CD runs it: a function body with the live object in the global `obj`
(lists as 1-based tables), returning a table with `status` and `message`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

lupa = pytest.importorskip("lupa")
try:
    from lupa import lua51 as lua_module
except ImportError:  # an older lupa: its default runtime
    lua_module = lupa

REPO = Path(__file__).resolve().parents[2]
ARGOCD = REPO / "gitops" / "argocd"
SCRIPTS = {"DGMAgent": ARGOCD / "health-dgmagent.lua",
           "ImprovementCandidate": ARGOCD / "health-improvementcandidate.lua"}
VALID = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def to_lua(lua, value):
    if isinstance(value, dict):
        return lua.table_from({k: to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return lua.table_from([to_lua(lua, v) for v in value])  # a sequence: keys 1..n
    return value


def health(kind: str, obj: dict, script: str | None = None) -> tuple[str, str]:
    lua = lua_module.LuaRuntime(unpack_returned_tuples=True)
    assert "5.1" in lua.eval("_VERSION") or lua_module is lupa
    fn = lua.execute(f"return function(obj)\n{script or SCRIPTS[kind].read_text()}\nend")
    hs = fn(to_lua(lua, obj))
    status, message = hs["status"], hs["message"]
    assert status in VALID, status
    assert isinstance(message, str) and message, (status, message)
    return status, message


def cond(ctype, status, reason="", message=""):
    return {"type": ctype, "status": status, "reason": reason, "message": message}


def agent(generation=1, status=None):
    obj = {"apiVersion": "dgm.io/v1alpha1", "kind": "DGMAgent",
           "metadata": {"name": "a", "namespace": "ns", "generation": generation}, "spec": {}}
    if status is not None:
        obj["status"] = status
    return obj


READY = cond("Ready", "True", "BaselineMeasured", "revision 2 measured")
NOT_DEGRADED = cond("Degraded", "False", "AsExpected", "target and baseline are in place")

AGENT_CASES = [
    ("no status", agent(), "Progressing", "observe"),
    ("generation not observed", agent(3, {"observedGeneration": 2, "phase": "Ready",
                                          "conditions": [READY, NOT_DEGRADED]}), "Progressing", "generation 3"),
    ("observedGeneration missing", agent(1, {"phase": "Ready", "conditions": [READY]}), "Progressing", "generation 1"),
    ("baselining", agent(1, {"observedGeneration": 1, "phase": "Baselining", "conditions": [
        cond("Ready", "False", "Baselining", "revision 1 being measured")]}), "Progressing", "being measured"),
    ("baseline failed", agent(1, {"observedGeneration": 1, "phase": "Baselining", "conditions": [
        cond("Degraded", "True", "BaselineFailed", "baseline Job a-baseline-r1 failed: exit code 1"),
        cond("Ready", "False", "Baselining", "revision 1 being measured")]}), "Degraded", "exit code 1"),
    ("target missing", agent(2, {"observedGeneration": 2, "phase": "Degraded", "conditions": [
        cond("Degraded", "True", "TargetNotFound", "Deployment x not found in ns"),
        cond("Ready", "False", "TargetNotFound", "Deployment x not found in ns")]}), "Degraded", "Deployment x not found"),
    ("ready false with a failure reason", agent(1, {"observedGeneration": 1, "phase": "Ready", "conditions": [
        cond("Ready", "False", "RolloutFailed", "revision 3 did not progress")]}), "Degraded", "did not progress"),
    ("ready", agent(1, {"observedGeneration": 1, "phase": "Ready", "currentRevision": 2,
                        "conditions": [NOT_DEGRADED, READY]}), "Healthy", "Revision 2"),
    ("improving", agent(1, {"observedGeneration": 1, "phase": "Improving",
                            "conditions": [READY, cond("Improving", "True", "Proposed", "a-g1")]}), "Healthy", "measured"),
    ("paused", agent(4, {"observedGeneration": 4, "phase": "Paused", "conditions": [READY]}), "Suspended", "Paused"),
    ("no conditions yet", agent(1, {"observedGeneration": 1, "phase": "Pending"}), "Progressing", "Pending"),
]


def candidate(phase=None, reason=None, message=None, generation=1, observed=1, **status):
    obj = {"apiVersion": "dgm.io/v1alpha1", "kind": "ImprovementCandidate",
           "metadata": {"name": "c", "namespace": "ns", "generation": generation}, "spec": {"agentRef": "a"}}
    if phase is not None:
        st = {"phase": phase, "observedGeneration": observed, **status}
        if reason:
            st["reason"] = reason
        if message:
            st["message"] = message
        obj["status"] = st
    return obj


CANDIDATE_CASES = [
    ("no status", candidate(), "Progressing", "analyse"),
    ("proposed", candidate("Proposed", "Queued", "waiting for a slot"), "Progressing", "Proposed: waiting"),
    ("testing", candidate("Testing", "EvaluationStarted", "evaluation Job c-eval-full created"), "Progressing", "c-eval-full"),
    ("validated, approval changed in Git not yet seen", candidate("Validated", "AwaitingApproval", "x", generation=2, observed=1),
     "Progressing", "generation 2"),
    ("awaiting approval", candidate("Validated", "AwaitingApproval", "autoApply is false: set approved: true to apply"),
     "Suspended", "autoApply is false"),
    ("validated, agent paused", candidate("Validated", "AgentPaused", "the agent is paused"), "Suspended", "paused"),
    ("validated", candidate("Validated", "ImprovementValidated", "improvement 0.8"), "Healthy", "improvement 0.8"),
    ("applied", candidate("Applied", "Verified", "post-apply evaluation confirmed", revision=2), "Healthy", "Revision 2"),
    ("applied, approved later in Git", candidate("Applied", "RolloutComplete", "rolled out", generation=3, observed=1),
     "Healthy", "rolled out"),
    ("applied, rollout failed", candidate("Applied", "RolloutFailed", "revision 2 did not progress", revision=2),
     "Degraded", "did not progress"),
    ("rejected", candidate("Rejected", "InsufficientImprovement", "improvement 0.0 below 0.01"), "Healthy", "Rejected"),
    ("rejected by user", candidate("Rejected", "RejectedByUser", "rejected through the dgm.io/action annotation",
                                   generation=2, observed=1), "Healthy", "dgm.io/action"),
    ("failed", candidate("Failed", "MetricsUnavailable", "no metrics"), "Degraded", "Failed: no metrics"),
    ("failed without message", candidate("Failed", "DeadlineExceeded"), "Degraded", "DeadlineExceeded"),
    ("rolled back", candidate("RolledBack", "Regression", "regressed; revision 1 restored"), "Degraded", "revision 1 restored"),
    ("unknown phase", candidate("Exploded"), "Unknown", "Exploded"),
]


@pytest.mark.parametrize("obj,expected,fragment", [c[1:] for c in AGENT_CASES], ids=[c[0] for c in AGENT_CASES])
def test_dgmagent_health(obj, expected, fragment):
    status, message = health("DGMAgent", obj)
    assert status == expected, message
    assert fragment in message


@pytest.mark.parametrize("obj,expected,fragment", [c[1:] for c in CANDIDATE_CASES], ids=[c[0] for c in CANDIDATE_CASES])
def test_candidate_health(obj, expected, fragment):
    status, message = health("ImprovementCandidate", obj)
    assert status == expected, message
    assert fragment in message


def test_scripts_do_not_leak_globals():
    """Argo CD reuses one Lua state per check; the scripts keep their variables local."""
    for kind, path in SCRIPTS.items():
        lua = lua_module.LuaRuntime()
        before = set(lua.eval("(function() local k = {} for n in pairs(_G) do k[#k+1] = n end return k end)()").values())
        fn = lua.execute(f"return function(obj)\n{path.read_text()}\nend")
        fn(to_lua(lua, candidate("Testing") if kind == "ImprovementCandidate" else agent()))
        after = set(lua.eval("(function() local k = {} for n in pairs(_G) do k[#k+1] = n end return k end)()").values())
        assert after == before, (kind, after - before)


def test_argocd_cm_patch_embeds_the_scripts_and_the_ignore_rules():
    cm = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    data = cm["data"]
    assert data["resource.customizations.health.dgm.io_DGMAgent"] == SCRIPTS["DGMAgent"].read_text()
    assert data["resource.customizations.health.dgm.io_ImprovementCandidate"] == SCRIPTS["ImprovementCandidate"].read_text()
    for key in ("resource.customizations.ignoreDifferences.apps_Deployment",
                "resource.customizations.ignoreDifferences.ConfigMap"):
        rule = yaml.safe_load(data[key])
        assert rule["managedFieldsManagers"] == ["dgm-operator"]
    # the embedded copies run too
    status, _ = health("DGMAgent", agent(1, {"observedGeneration": 1, "phase": "Ready", "conditions": [READY]}),
                       script=data["resource.customizations.health.dgm.io_DGMAgent"])
    assert status == "Healthy"
