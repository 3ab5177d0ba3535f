"""End-to-end tests on kind. Skipped unless Docker works and `kind` and `kubectl` are on PATH.

`kind_cluster` (session) creates the cluster from kind-config.yaml (or uses the existing
cluster of that name) and deletes it afterwards unless DGM_E2E_KEEP=1."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent
NAME = "dgm-e2e"


def _skip_reason() -> str | None:
    if shutil.which("docker") is None:
        return "e2e tests need Docker: `docker` is not on PATH"
    try:
        r = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"e2e tests need Docker: `docker info` failed ({e})"
    if r.returncode != 0:
        return f"e2e tests need Docker: `docker info` failed: {(r.stderr or r.stdout).strip()[:200]}"
    for tool in ("kind", "kubectl"):
        if shutil.which(tool) is None:
            return f"e2e tests need `{tool}` on PATH"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def kind_cluster(tmp_path_factory):
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    existing = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True).stdout.split()
    created = NAME not in existing
    if created:
        subprocess.run(["kind", "create", "cluster", "--name", NAME, "--config", str(HERE / "kind-config.yaml"),
                       "--kubeconfig", str(kubeconfig), "--wait", "120s"], check=True)
    else:
        kubeconfig.write_text(subprocess.run(["kind", "get", "kubeconfig", "--name", NAME],
                                             capture_output=True, text=True, check=True).stdout)
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    try:
        yield env
    finally:
        if created and os.environ.get("DGM_E2E_KEEP") != "1":
            subprocess.run(["kind", "delete", "cluster", "--name", NAME], check=False)
