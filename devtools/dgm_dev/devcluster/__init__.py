"""A real Kubernetes control plane on loopback for development and tests.

`DevCluster` (``cluster.py``) runs etcd, kube-apiserver and kube-controller-manager as
local processes under a state directory, plus a "local node" (``node.py``) that binds pods
and runs their containers' commands as host processes. It is a development convenience:
loopback only, no isolation of any kind.
"""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .binaries import BinaryError, find_bin_dir
from .cluster import DevCluster, DevClusterError

__all__ = ["BinaryError", "DevCluster", "DevClusterError", "cluster_for_benchmark", "find_bin_dir"]


@contextlib.contextmanager
def cluster_for_benchmark(existing: bool, prefix: str) -> Iterator[str]:
    """Yield a kubeconfig path: $KUBECONFIG's cluster when ``existing``, else a fresh dev
    cluster in a temporary directory (its kubectl put first on PATH), stopped afterwards."""
    if existing:
        yield os.environ["KUBECONFIG"]
        return
    cluster = DevCluster(Path(tempfile.mkdtemp(prefix=prefix)) / "state")
    cluster.up()
    os.environ["PATH"] = f"{cluster.bin_dir}{os.pathsep}{os.environ['PATH']}"
    try:
        yield str(cluster.kubeconfig)
    finally:
        cluster.down()
