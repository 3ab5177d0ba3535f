"""Integration fixtures: a real control plane (the dev cluster) for the whole session.

`cluster` (session): a DevCluster in a temporary state dir, or the running cluster whose
kubeconfig is in $DGM_TEST_KUBECONFIG. `namespace` (function): a fresh namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from harness import REPO, Env, Operator

from dgm_dev.devcluster import DevCluster, find_bin_dir, hoststate


class ClusterHandle:
    def __init__(self, kubeconfig: str, bin_dir: str, state_dir: str | None):
        self.kubeconfig = str(kubeconfig)
        self.bin_dir = str(bin_dir)
        self.state_dir = state_dir
        self.env = dict(os.environ)
        self.env["KUBECONFIG"] = self.kubeconfig
        self.env["PATH"] = self.bin_dir + os.pathsep + os.environ.get("PATH", "")

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [os.path.join(self.bin_dir, "kubectl"), *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def api_client(self):
        from kubernetes import config
        return config.new_client_from_config(config_file=self.kubeconfig)


@pytest.fixture(scope="session")
def cluster():
    reuse = os.environ.get("DGM_TEST_KUBECONFIG")
    old_kubeconfig = os.environ.get("KUBECONFIG")
    dc = None
    tmp = None
    if reuse:
        bin_dir = find_bin_dir()
        handle = ClusterHandle(reuse, bin_dir, None)
        ready = handle.kubectl("get", "--raw", "/readyz", check=False, timeout=15)
        if ready.returncode != 0 or ready.stdout.strip() != "ok":
            pytest.fail(f"DGM_TEST_KUBECONFIG={reuse}: the cluster is not ready: {ready.stderr.strip()}")
    else:
        tmp = tempfile.mkdtemp(prefix="dgm-test-cluster-")
        # the host before the real node touches it: after `down`, nothing may differ
        before = hoststate.snapshot()
        dc = DevCluster(Path(tmp) / "state")
        try:
            dc.up()
        except Exception:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        handle = ClusterHandle(str(dc.kubeconfig), str(dc.bin_dir), str(dc.state_dir))
    os.environ["KUBECONFIG"] = handle.kubeconfig
    try:
        yield handle
    finally:
        if old_kubeconfig is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old_kubeconfig
        if dc is not None:
            dc.down()  # with the real node, down itself fails naming anything it left
            shutil.rmtree(tmp, ignore_errors=True)
            left = hoststate.leftovers(before, dirs=[str(dc.state_dir)], gone=[str(dc.state_dir)])
            assert left == [], "the dev cluster's `down` left these behind:\n" + "\n".join(left)


@pytest.fixture
def namespace(cluster):
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    # pods are only admitted once the service-account controller created "default"
    deadline = time.monotonic() + 30
    while cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"no default service account in namespace {name}")
        time.sleep(0.1)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell a failed test
    (the operator fixture then prints the operator's log into the failure output)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture(scope="module")
def crds(cluster):
    """The project's CRDs, applied server-side (forcing ownership: other tests apply them
    too, e.g. through the Helm chart) and Established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/dgmagents.dgm.io", "crd/improvementcandidates.dgm.io",
                    "crd/kopfpeerings.kopf.dev", "crd/clusterkopfpeerings.kopf.dev")
    return cluster


@pytest.fixture
def env(cluster, namespace, crds):
    return Env(cluster, namespace)


@pytest.fixture
def operator(cluster, namespace, crds, tmp_path, request):
    op = Operator(cluster, namespace, tmp_path / "operator.log").start()
    yield op
    op.stop()
    report = getattr(request.node, "rep_call", None)  # set by the makereport hook above
    if report is not None and report.failed:
        print((tmp_path / "operator.log").read_text()[-20000:])
