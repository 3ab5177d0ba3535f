"""`dgm dev-cluster up | down | status`."""

from __future__ import annotations

import argparse
import sys

from .binaries import BinaryError
from .cluster import DevCluster, DevClusterError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dgm dev-cluster", description=(
        "A real single-node Kubernetes on this machine: etcd, kube-apiserver, kube-controller-manager, "
        "kube-scheduler and a real node (containerd + runc, kubelet, bridge CNI, kube-proxy, kube-router's "
        "NetworkPolicy firewall) with the locally built images. Needs root; --node=process is the fallback "
        "without root (pods as host processes, no isolation). Development only."))
    p.add_argument("--state-dir", default=".dev-cluster", help="state directory (default ./.dev-cluster)")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the cluster (returns once it is ready)")
    up.add_argument("--apiserver-port", type=int, help="kube-apiserver port (default: a free one)")
    up.add_argument("--etcd-port", type=int, help="etcd client port (default: a free one)")
    up.add_argument("--bin-dir", help="directory of the control-plane binaries (default: see docs)")
    up.add_argument("--node", choices=("real", "process", "none"), default="real",
                    help="real (default): containerd + kubelet; process: pods as host processes without any "
                         "isolation, for hosts without root; none: the control plane only")
    up.add_argument("--no-node", action="store_const", const="none", dest="node", help="same as --node=none")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    down = sub.add_parser("down", help="stop every process started by `up`")
    down.add_argument("--keep", action="store_true", help="keep the state directory")
    sub.add_parser("status", help="show what runs")
    for s in (up, down, sub.choices["status"]):
        s.add_argument("--state-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.cmd == "up":
            c = DevCluster(args.state_dir, bin_dir=args.bin_dir, apiserver_port=args.apiserver_port,
                           etcd_port=args.etcd_port, node=args.node).up(timeout=args.timeout)
            print(f"export KUBECONFIG={c.kubeconfig}")
            print(f"export PATH={c.bin_dir}:$PATH")
            return 0
        c = DevCluster(args.state_dir)
        if args.cmd == "down":
            if not c.record_path.exists():
                print(f"no dev cluster in {c.state_dir}", file=sys.stderr)
                return 0
            c.down(keep=args.keep)
            print(f"dev cluster stopped ({c.state_dir}{' kept' if args.keep else ' removed'})", file=sys.stderr)
            return 0
        if not c.record_path.exists():
            print(f"no dev cluster in {c.state_dir}")
            return 1
        st = c.status()
        for s in st.values():
            print(f"{s.name:<24} {'running' if s.alive else 'stopped':<8} pid={s.pid or '-':<8} log={s.log}")
        ready = c.readyz()
        print(f"{'apiserver /readyz':<24} {ready or 'no answer'}")
        print(f"KUBECONFIG={c.kubeconfig}")
        return 0 if ready == "ok" else 1
    except (DevClusterError, BinaryError) as e:
        print(f"dgm dev-cluster: error: {e}", file=sys.stderr)
        return 1
