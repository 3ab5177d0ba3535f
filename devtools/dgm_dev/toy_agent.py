"""A toy agent for lifecycle tests and the lifecycle benchmark.

Its evaluation reads the metrics it reports (and an exit code, a delay, whether to print
metrics at all) from ``settings.json`` in the candidate's workspace, so every branch of the
lifecycle can be reached on purpose and in well under a second. The sample agent of the
quickstart is the realistic one; this one exists to exercise the operator.
"""

from __future__ import annotations

from dgm_operator.api.constants import API_VERSION

import json

TOY_BENCH = r"""
import json, os, sys, time
s = json.load(open(os.path.join(os.environ["DGM_WORKSPACE"], "settings.json")))
if os.environ.get("DGM_STAGE") == "postapply" and "post_accuracy" in s:
    s["accuracy"] = s["post_accuracy"]
time.sleep(s.get("sleep", 0))
if s.get("exit"):
    sys.exit(s["exit"])
if s.get("emit", True):
    print(json.dumps({"metrics": {"accuracy": s["accuracy"]}, "tests": {"passed": 1}}))
"""

TOY_SERVE = r"""
import json, os, sys, time
s = json.load(open(os.path.join(os.environ["CONFIG_DIR"], "settings.json")))
if s.get("crash"):
    sys.exit(1)
while True:
    time.sleep(1)
"""


# Any image with python and the dgm CLI: the sample agent's, built by `make image` and imported
# into the dev cluster's real node (tag `dev`: IfNotPresent, never pulled).
TOY_IMAGE = "dgm-sample-agent:dev"


def toy_objects(namespace: str, *, settings: dict, auto_apply=True, max_concurrent=2, on_regression=False,
                timeout=60, max_candidates=200) -> list[dict]:
    agent_spec = {
        "target": {"deployment": "toy", "container": "agent", "configMap": "toy-config"},
        "evaluation": {
            # the toy's benchmark is its grader: the explicit single-process opt-out
            "mode": "SingleProcess",
            "image": TOY_IMAGE,
            "command": ["dgm", "evaluate", "--", "python", "-c", TOY_BENCH],
            "metrics": [{"name": "accuracy", "goal": "maximize", "weight": 1.0}],
            "timeoutSeconds": timeout,
        },
        "proposer": {"type": "parameters", "seed": 7, "searchSpace": [
            {"file": "settings.json", "key": "accuracy", "type": "float", "min": 0.0, "max": 1.0}]},
        "policy": {"autoApply": auto_apply, "minImprovement": 0.01, "maxConcurrentCandidates": max_concurrent,
                   "improvementIntervalMinutes": 600, "allowedFiles": ["settings.json"],
                   "rollback": {"onRolloutFailure": True, "onRegression": on_regression}},
        "archive": {"maxCandidates": max_candidates},
    }
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "toy-config", "namespace": namespace},
         "data": {"settings.json": json.dumps(settings), "notes.txt": "kept as is\n"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "toy", "namespace": namespace},
         # minReadySeconds: on a real kubelet a container that exits at once is Running (so
         # Ready, without a probe) for a moment; only a pod that stays up 2 s counts as available
         "spec": {"replicas": 1, "progressDeadlineSeconds": 6, "minReadySeconds": 2,
                  "selector": {"matchLabels": {"app": "toy"}},
                  "template": {"metadata": {"labels": {"app": "toy"}}, "spec": {
                      "terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "agent", "image": TOY_IMAGE,
                                      "command": ["python", "-c", TOY_SERVE],
                                      "env": [{"name": "CONFIG_DIR", "value": "/config"}],
                                      "volumeMounts": [{"name": "config", "mountPath": "/config"}]}],
                      "volumes": [{"name": "config", "configMap": {"name": "toy-config"}}]}}}},
        {"apiVersion": API_VERSION, "kind": "DGMAgent", "metadata": {"name": "toy", "namespace": namespace},
         "spec": agent_spec},
    ]


