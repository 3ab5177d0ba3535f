"""`kubectl dgm` against the dev cluster with the operator running: every action goes
through an annotation, and the operator acts on it (approve, reject, rollback, propose)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dgm_dev.toy_agent import toy_objects
from harness import candidate

pytestmark = pytest.mark.integration


def dgm(env, *args: str) -> subprocess.CompletedProcess:
    """`kubectl dgm ARGS -n NS`, as the console script runs it, on the test cluster's kubeconfig."""
    return subprocess.run([sys.executable, "-m", "dgm_operator.plugin.kubectl", *args, "-n", env.ns],
                          capture_output=True, text=True, env=env.cluster.env, timeout=60)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc.stdout


def awaiting_approval(env, name):
    seen = {}

    def check():
        seen["status"] = (env.get("improvementcandidates", name) or {}).get("status") or {}
        return seen["status"] if (seen["status"].get("phase"), seen["status"].get("reason")) == (
            "Validated", "AwaitingApproval") else None
    try:
        return env.wait(f"{name} awaiting approval", check, timeout=120)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status: {seen.get('status')}") from None


def test_approve_and_reject_gated_candidates(env, operator):
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.5}, auto_apply=False))
    env.wait_ready()
    env.apply(candidate(env.ns, "gated", {"accuracy": 0.8}), candidate(env.ns, "unwanted", {"accuracy": 0.7}))
    awaiting_approval(env, "gated")
    awaiting_approval(env, "unwanted")

    out = ok(dgm(env, "approve", "gated"))
    assert "gated approved" in out
    st = env.wait_phase("gated", "Applied", "Rejected", "Failed")["status"]
    assert (st["phase"], st["revision"]) == ("Applied", 2)
    obj = env.get("improvementcandidates", "gated")
    assert obj["metadata"]["annotations"]["dgm.io/action"] == "approve"
    assert not obj["spec"].get("approved")  # the spec (which Git may own) is untouched
    assert json.loads(env.get("configmap", "toy-config")["data"]["settings.json"]) == {"accuracy": 0.8}

    # approving twice, or rejecting an applied candidate, is refused with a clear message
    again = dgm(env, "approve", "gated")
    assert again.returncode == 1 and "gated is Applied" in again.stderr
    assert dgm(env, "reject", "gated").returncode == 1
    missing = dgm(env, "approve", "no-such-candidate")
    assert missing.returncode == 1 and "no-such-candidate not found" in missing.stderr

    ok(dgm(env, "reject", "unwanted"))
    st = env.wait_phase("unwanted", "Rejected", "Applied")["status"]
    assert (st["phase"], st["reason"]) == ("Rejected", "RejectedByUser")
    assert env.agent_status()["currentRevision"] == 2

    tree = ok(dgm(env, "tree", "toy"))
    lines = tree.splitlines()
    gated = next(line for line in lines if "gated" in line)
    unwanted = next(line for line in lines if "unwanted" in line)
    assert "Applied" in gated and "2 *" in gated and "+0.600" in gated
    assert "Rejected" in unwanted and "RejectedByUser" in unwanted
    assert lines[1].startswith("toy (baseline)")


def test_rollback_propose_and_tree(env, operator):
    env.apply(*toy_objects(env.ns, settings={"accuracy": 0.5}))
    env.wait_ready()
    original = env.get("configmap", "toy-config")["data"]
    assert dgm(env, "rollback", "toy").returncode == 1  # only revision 1 so far

    env.apply(candidate(env.ns, "v2", {"accuracy": 0.9}))
    assert env.wait_phase("v2", "Applied", "Rejected", "Failed")["status"]["phase"] == "Applied"
    assert env.get("configmap", "toy-config")["data"] != original
    bad = dgm(env, "rollback", "toy", "--to", "7")
    assert bad.returncode == 1 and "no revision 7" in bad.stderr
    current = dgm(env, "rollback", "toy", "--to", "2")
    assert current.returncode == 1 and "already the current revision" in current.stderr

    out = ok(dgm(env, "rollback", "toy"))
    assert "from revision 2 to 1" in out
    st = env.wait_phase("v2", "RolledBack")["status"]
    assert st["reason"] == "RollbackRequested"
    assert env.get("configmap", "toy-config")["data"] == original
    assert env.agent_status()["currentRevision"] == 1
    assert env.get("dgmagents", "toy")["metadata"]["annotations"]["dgm.io/rollback-to"].startswith("previous@")

    env.wait_ready()  # the baseline of revision 1 is measured again
    ok(dgm(env, "propose", "toy"))
    proposed = env.wait("toy-g1 proposed", lambda: env.get("improvementcandidates", "toy-g1"))
    assert proposed["metadata"]["labels"]["dgm.io/agent"] == "toy"

    # toy-g1 may itself be applied by now (the toy agent auto-applies): the line marked
    # current is the baseline's unless a newer revision is live
    tree = ok(dgm(env, "tree", "toy"))
    current = env.agent_status()["currentRevision"]
    lines = tree.splitlines()
    if current == 1:
        assert lines[1].rstrip().endswith("1 *"), tree  # the baseline is current again
    else:
        assert any("toy-g1" in line and line.rstrip().endswith(f"{current} *") for line in lines), tree
    assert any(line.lstrip("|`- ").startswith("v2 ") and "RolledBack" in line for line in lines), tree
    assert any("toy-g1" in line for line in lines), tree
