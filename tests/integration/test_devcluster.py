"""The dev cluster against a real kube-apiserver: CRDs, Jobs with termination logs,
Deployments rolling out and failing to progress, start/stop and bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest
from polling import wait_for

from dgm_dev.devcluster import BinaryError, DevCluster, DevClusterError
from dgm_dev.devcluster.procs import is_alive, pids_mentioning

pytestmark = pytest.mark.integration




def get_json(cluster, *args):
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


CRD = textwrap.dedent("""
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: widgets.test.dgm.dev}
    spec:
      group: test.dgm.dev
      scope: Namespaced
      names: {plural: widgets, singular: widget, kind: Widget}
      versions:
      - name: v1
        served: true
        storage: true
        additionalPrinterColumns:
        - {name: Color, type: string, jsonPath: .spec.color}
        - {name: Size, type: integer, jsonPath: .spec.size}
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                properties:
                  color: {type: string}
                  size: {type: integer}
    """)


def test_crd_printer_columns(cluster, namespace):
    cluster.kubectl("apply", "-f", "-", input=CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.test.dgm.dev", "--timeout=60s")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=textwrap.dedent("""
        apiVersion: test.dgm.dev/v1
        kind: Widget
        metadata: {name: w1}
        spec: {color: teal, size: 7}
        """))
    out = cluster.kubectl("get", "widgets", "-n", namespace).stdout
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "COLOR", "SIZE"]
    assert row.split()[:3] == ["w1", "teal", "7"]


def test_job_termination_log(cluster, namespace):
    manifest = textwrap.dedent("""
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: job-config}
        data: {settings.txt: from-configmap}
        ---
        apiVersion: batch/v1
        kind: Job
        metadata: {name: evaluate}
        spec:
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              volumes:
              - {name: cfg, configMap: {name: job-config, items: [{key: settings.txt, path: sub/s.txt}]}}
              - {name: scratch, emptyDir: {}}
              containers:
              - name: main
                image: dgm-sample-agent:dev
                imagePullPolicy: Never
                command: [sh, -c]
                args:
                - >-
                  echo "$(cat /etc/dgm/sub/s.txt)" > /scratch/x &&
                  printf '{"metrics": {"accuracy": 0.82}, "pod": "%s", "cfg": "%s"}' "$POD_NAME" "$(cat /scratch/x)"
                  > /dev/termination-log
                env:
                - name: POD_NAME
                  valueFrom: {fieldRef: {fieldPath: metadata.name}}
                volumeMounts:
                - {name: cfg, mountPath: /etc/dgm}
                - {name: scratch, mountPath: /scratch}
        """)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)

    def complete():
        job = get_json(cluster, "job", "evaluate", "-n", namespace)
        conds = {c["type"]: c["status"] for c in job.get("status", {}).get("conditions", [])}
        assert conds.get("Failed") != "True", job["status"]
        return conds.get("Complete") == "True"

    wait_for("job completion", complete, timeout=90)
    pods = get_json(cluster, "pods", "-n", namespace, "-l", "job-name=evaluate")["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["status"]["phase"] == "Succeeded"
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    message = json.loads(term["message"])
    assert message == {"metrics": {"accuracy": 0.82}, "pod": pod["metadata"]["name"], "cfg": "from-configmap"}


def test_deployment_rollout_and_progress_deadline(cluster, namespace):
    manifest = textwrap.dedent("""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: agent}
        spec:
          replicas: 1
          progressDeadlineSeconds: 4
          # a real kubelet reports a container that exits at once as Running (Ready without a
          # probe) for a moment: only a pod up for 2 s counts as available
          minReadySeconds: 2
          selector: {matchLabels: {app: agent}}
          template:
            metadata: {labels: {app: agent}}
            spec:
              terminationGracePeriodSeconds: 1
              containers:
              - {name: main, image: dgm-sample-agent:dev, imagePullPolicy: Never,
                 command: [python, -c, "import time; time.sleep(3600)"]}
        """)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    cluster.kubectl("rollout", "status", "deployment/agent", "-n", namespace, "--timeout=90s", timeout=100)
    cluster.kubectl("patch", "deployment", "agent", "-n", namespace, "--type=json", "-p", json.dumps([
        {"op": "replace", "path": "/spec/template/spec/containers/0/command",
         "value": ["sh", "-c", "echo crashing >&2; exit 3"]}]))

    def deadline_exceeded():
        dep = get_json(cluster, "deployment", "agent", "-n", namespace)
        for c in dep.get("status", {}).get("conditions", []):
            if c["type"] == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
                return dep
        return None

    dep = wait_for("ProgressDeadlineExceeded", deadline_exceeded, timeout=90)
    assert dep["status"].get("availableReplicas") == 1  # the old revision still serves
    pods = get_json(cluster, "pods", "-n", namespace, "-l", "app=agent")["items"]
    crashing = [p for p in pods if p["spec"]["containers"][0]["command"][0] == "sh"]
    assert crashing
    st = crashing[0]["status"]["containerStatuses"][0]
    assert st["ready"] is False and st["restartCount"] >= 1
    last = st.get("lastState", {}).get("terminated") or st["state"].get("terminated")
    assert last["exitCode"] == 3


def test_separate_cluster_up_down(tmp_path):
    # a second cluster beside the session's: control plane only (one real node per machine)
    state = tmp_path / "dc"
    dc = DevCluster(state, node="none")
    try:
        dc.up()
        pids = dc.pids()
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
        assert all(is_alive(p) for p in pids.values())
        kubectl = Path(dc.bin_dir) / "kubectl"
        out = subprocess.run([str(kubectl), "--kubeconfig", str(dc.kubeconfig), "get", "--raw", "/readyz"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "ok", out.stderr
        assert all(s.alive for s in dc.status().values())
    finally:
        dc.down()
    assert not any(is_alive(p) for p in pids.values())
    assert pids_mentioning(str(state)) == []
    assert not state.exists()


def _no_orphans(state: Path):
    assert pids_mentioning(str(state)) == [], "processes left behind"


def test_busy_port_names_component(tmp_path, cluster):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        for kwargs, component in (({"apiserver_port": port}, "kube-apiserver"), ({"etcd_port": port}, "etcd")):
            state = tmp_path / component
            with pytest.raises(DevClusterError) as err:
                DevCluster(state, bin_dir=cluster.bin_dir, node="none", **kwargs).up()
            assert err.value.component == component
            assert component in str(err.value) and str(port) in str(err.value)
            _no_orphans(state)


def _bins_without_controller_manager(tmp_path, cluster) -> Path:
    """A binary directory with the real etcd, kube-apiserver and kubectl only."""
    bins = tmp_path / "bin"
    bins.mkdir()
    for name in ("etcd", "kube-apiserver", "kubectl"):
        os.symlink(Path(cluster.bin_dir) / name, bins / name)
    return bins


def test_missing_binary_names_component(tmp_path, cluster):
    bins = _bins_without_controller_manager(tmp_path, cluster)
    state = tmp_path / "state"
    with pytest.raises(BinaryError) as err:
        DevCluster(state, bin_dir=bins, node="none").up()
    assert err.value.component == "kube-controller-manager"
    assert "kube-controller-manager" in str(err.value)
    _no_orphans(state)


def test_component_dying_at_start_is_reported_and_cleaned_up(tmp_path, cluster):
    bins = _bins_without_controller_manager(tmp_path, cluster)
    fake = bins / "kube-controller-manager"
    fake.write_text("#!/bin/sh\necho 'fake controller manager: refusing to start' >&2\nexit 3\n")
    fake.chmod(0o755)
    state = tmp_path / "state"
    dc = DevCluster(state, bin_dir=bins, node="none")
    with pytest.raises(DevClusterError) as err:
        dc.up()
    assert err.value.component == "kube-controller-manager"
    log = state / "kube-controller-manager.log"
    assert str(log) in str(err.value)
    assert "refusing to start" in log.read_text()
    assert not any(is_alive(p) for p in dc.pids().values())
    _no_orphans(state)
