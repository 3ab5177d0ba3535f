"""The proposal Job as the operator builds it, run here the way a node would run it: its
context ConfigMap written to files, its Secret reference resolved, its `propose` init
container and then its `result` container executed as subprocesses with the Job's own
commands, arguments and environment, against the STAND-IN model server on loopback. The
`result` container's stdout becomes the pod log the reconciler reads (FakeKube), and the
candidate appears. This checks the wiring between the manifest and the programs without a
cluster; tests/integration/test_llm_proposer.py does it on a real node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dgm_dev.llm_standin import Script, StandIn
from test_proposal_reconcile import JOB, ask
from test_reconcilers import NS, World

from dgm_operator.api import constants
from dgm_operator.controller import proposal_builders as pb
from dgm_operator.engine import proposal

SECRETS = {("llm-key", "token"): "sk-from-the-secret"}
EDIT = 'settings.json\n<<<<<<< SEARCH\n{"accuracy": 0.5}\n=======\n{"accuracy": 0.9}\n>>>>>>> REPLACE\n'


def run_container(container: dict, root: Path) -> subprocess.CompletedProcess:
    """Run one container of the pod as a process: /proposal is `root`, `dgm` is this
    interpreter's CLI, env values and Secret references resolved as the kubelet would."""
    def path(text: str) -> str:
        return text.replace("/proposal/", f"{root}/")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DGM_", "OPENAI_"))}
    for e in container["env"]:
        if "valueFrom" in e:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = SECRETS[(ref["name"], ref["key"])]
        else:
            env[e["name"]] = path(e["value"])
    env["HOME"] = str(root)
    command = container["command"]
    assert command[0] == "dgm"
    argv = [sys.executable, "-m", "dgm_operator.cli", *command[1:], *[path(a) for a in container.get("args", [])]]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def test_the_job_as_built_proposes_a_candidate(tmp_path: Path) -> None:
    script = Script([{"content": "raise the accuracy setting"}, {"content": EDIT}])
    with StandIn(script) as standin:
        w = World().ready()
        w.kube.objects[("agent", NS, "toy")]["spec"]["proposer"] = {"type": "llm", "llm": {
            "baseURL": standin.base_url, "model": "stand-in", "apiKeySecretRef": {"name": "llm-key", "key": "token"}}}
        ask(w)
        job = w.kube.get_job(NS, JOB)
        cm = w.kube.get_configmap(NS, JOB)
        # the node: mount the context, run the init container, then the main container
        root = tmp_path / "proposal"
        (root / "out").mkdir(parents=True)
        (root / "context.json").write_text(cm["data"][pb.CONTEXT_KEY])
        pod = job["spec"]["template"]["spec"]
        (propose,), (result,) = pod["initContainers"], pod["containers"]
        first = run_container(propose, root)
        assert first.returncode == 0, first.stderr
        second = run_container(result, root)
        assert second.returncode == 0, second.stderr
    assert script.received[0]["authorization"] == "Bearer sk-from-the-secret"
    w.kube.finish_job(NS, JOB)
    w.kube.container_logs[(JOB, pb.RESULT_CONTAINER)] = second.stdout
    w.rec.reconcile_agent(NS, "toy")
    cand = w.kube.get_candidate(NS, "toy-g1")
    assert cand is not None and cand["spec"]["changes"] == {"settings.json": '{"accuracy": 0.9}'}
    assert cand["spec"]["description"] == "raise the accuracy setting"
    tokens = cand["status"]["proposal"]["tokens"]
    assert tokens["total"] == tokens["prompt"] + tokens["completion"] > 0
    assert w.agent_status()["tokens"]["used"] == tokens["total"]
    assert json.loads((root / "out" / "result.json").read_text())["kind"] == proposal.RESULT_KIND
    assert w.kube.get_job(NS, JOB)["metadata"]["annotations"][constants.ANNOTATION_PROPOSAL_RESULT] == "toy-g1"
