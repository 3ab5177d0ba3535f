"""Smoke test on kind: the node is Ready and a Job runs to completion in a real container."""

from __future__ import annotations

import subprocess


def kubectl(env, *args, input=None):
    return subprocess.run(["kubectl", *args], env=env, input=input, capture_output=True, text=True,
                          check=True, timeout=180).stdout


def test_kind_runs_a_job(kind_cluster):
    kubectl(kind_cluster, "wait", "--for=condition=Ready", "node", "--all", "--timeout=120s")
    kubectl(kind_cluster, "create", "job", "dgm-smoke", "--image=busybox:1.36", "--", "sh", "-c", "echo ok")
    try:
        kubectl(kind_cluster, "wait", "--for=condition=Complete", "job/dgm-smoke", "--timeout=170s")
    finally:
        subprocess.run(["kubectl", "delete", "job", "dgm-smoke", "--wait=false"], env=kind_cluster,
                       capture_output=True)
