"""A real Kubernetes control plane on loopback for development and tests.

`DevCluster` (``cluster.py``) runs etcd, kube-apiserver and kube-controller-manager as
local processes under a state directory, plus a "local node" (``node.py``) that binds pods
and runs their containers' commands as host processes. It is a development convenience:
loopback only, no isolation of any kind.
"""

from .binaries import BinaryError, find_bin_dir
from .cluster import DevCluster, DevClusterError

__all__ = ["BinaryError", "DevCluster", "DevClusterError", "find_bin_dir"]
