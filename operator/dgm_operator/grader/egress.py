"""`dgm egress-check`: the evaluation pod's first container. It proves from inside the
pod that egress is denied before any candidate code runs.

It connects to a target that is reachable whenever egress is open: by default the
Kubernetes API server's Service (``KUBERNETES_SERVICE_HOST``/``PORT``, which the kubelet
sets in every pod). Egress counts as denied after ``--denied-after`` consecutive failed
connections; a connection that succeeds restarts the count (a NetworkPolicy can take a
moment to apply to a new pod). When egress is still open at the deadline it writes a
termination message saying so and exits 3; the operator then ends the candidate with
reason SandboxNotEnforced, and the candidate's containers never start.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time

EXIT_EGRESS_OPEN = 3
EXIT_NO_TARGET = 4


def _default_target() -> str | None:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    return f"{host}:{port}" if host and port else None


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def connects(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check(target: str, *, seconds: float, denied_after: int, timeout: float,
          clock=time.monotonic, sleep=time.sleep) -> tuple[bool, str]:
    """(egress denied, what was seen)."""
    host, port = _split(target)
    deadline = clock() + seconds
    failures = opened = 0
    while True:
        if connects(host, port, timeout):
            opened += 1
            failures = 0
        else:
            failures += 1
            if failures >= denied_after:
                return True, f"egress denied: {failures} connections to {target} failed"
        if clock() >= deadline:
            return False, (f"egress is not denied: {opened} connection(s) to {target} succeeded within "
                           f"{seconds:.0f}s; the cluster does not enforce the sandbox's deny-egress NetworkPolicy")
        sleep(0.25)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dgm egress-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default=_default_target(),
                        help="host:port reachable when egress is open (default: the API server's Service)")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("DGM_EGRESS_CHECK_SECONDS", "20")))
    parser.add_argument("--denied-after", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per connection attempt")
    parser.add_argument("--termination-log", default="/dev/termination-log")
    args = parser.parse_args(argv)
    if not args.target:
        ok, message, code = False, "cannot check egress: no --target and no KUBERNETES_SERVICE_HOST", EXIT_NO_TARGET
    else:
        ok, message = check(args.target, seconds=args.seconds, denied_after=args.denied_after, timeout=args.timeout)
        code = 0 if ok else EXIT_EGRESS_OPEN
    print(message, flush=True)
    if not ok:
        try:
            with open(args.termination_log, "w") as f:
                f.write(json.dumps({"sandbox": "EgressNotDenied" if code == EXIT_EGRESS_OPEN else "EgressUnchecked",
                                    "error": message}))
        except OSError:
            pass
    return code
