"""`dgm run`: the operator process (kopf), with the project's settings.

kopf keeps its own state (when it keeps any) under ``dgm.io/`` annotations. There is no
finalizer (nothing the operator creates outlives its owner without garbage collection).
The liveness endpoint answers on ``/healthz``. The watch scope is one or more namespaces
(``--namespace``, repeatable) or the whole cluster (``--all-namespaces``).

Several replicas: ``--peering NAME`` turns on kopf's peering through the ClusterKopfPeering
(cluster-wide) or the KopfPeering objects (one per watched namespace) of that name. They must
exist (the Helm chart creates them). The replica with the highest priority acts and the
others stand by (see :mod:`.peering`). ``/readyz`` (``--readiness``) answers 200 only on
the replica that acts; liveness is served by all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlparse


def identity(started: float) -> str:
    """This process among the peers: the pod (POD_NAME from the downward API) or host, the
    pid and the start time, so a restarted container is a new peer."""
    who = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{who}/{os.getpid()}/{int(started * 1000)}"


def serve_readiness(url: str, ready: Callable[[], bool], about: Callable[[], dict[str, object]]) -> ThreadingHTTPServer:
    """``GET <path>``: 200 when ``ready()``, else 503; a small JSON body says why."""
    parsed = urlparse(url)
    if parsed.scheme != "http" or not parsed.port:
        raise ValueError(f"--readiness: expected http://HOST:PORT/PATH, got {url!r}")
    path = parsed.path or "/readyz"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path.split("?")[0] != path:
                self.send_error(404)
                return
            ok = ready()
            body = json.dumps({"ready": ok, **about()}).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: not logged
            pass

    server = ThreadingHTTPServer((parsed.hostname or "0.0.0.0", parsed.port), Handler)
    threading.Thread(target=server.serve_forever, name="dgm-readiness", daemon=True).start()
    return server


def main(argv: list[str]) -> int:
    started = time.time()
    parser = argparse.ArgumentParser(prog="dgm run", description="Run the operator.")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="watch this namespace (repeatable); default: $DGM_WATCH_NAMESPACE or all")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch the whole cluster")
    parser.add_argument("--liveness", default=os.environ.get("DGM_LIVENESS", "http://0.0.0.0:8080/healthz"),
                        help="liveness endpoint URL ('' to disable)")
    parser.add_argument("--readiness", default=os.environ.get("DGM_READINESS", "http://0.0.0.0:8081/readyz"),
                        help="readiness endpoint URL, ready only on the replica that acts ('' to disable)")
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("DGM_METRICS_PORT", "9090")),
                        help="serve Prometheus metrics on this port (0 disables)")
    parser.add_argument("--peering", default=os.environ.get("DGM_PEERING") or None,
                        help="kopf peering object name: one replica acts, the others stand by "
                             "(default: $DGM_PEERING, or none: this process acts alone)")
    parser.add_argument("--priority", type=int, default=None,
                        help="peering priority (default: $DGM_PEERING_PRIORITY, or higher the earlier "
                             "the process started)")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    lifetime_env = os.environ.get("DGM_PEERING_LIFETIME", "20")
    try:
        lifetime = int(lifetime_env)
        if lifetime < 5:
            raise ValueError
    except ValueError:
        parser.error(f"DGM_PEERING_LIFETIME must be whole seconds >= 5, got {lifetime_env!r}")
    priority_env = os.environ.get("DGM_PEERING_PRIORITY")
    try:
        priority_env_value = int(priority_env) if priority_env else None
    except ValueError:
        parser.error(f"DGM_PEERING_PRIORITY must be an integer, got {priority_env!r}")

    import kopf  # imported late: `dgm crds` and friends need not load it

    from . import handlers
    from .peering import Activity, start_priority

    namespaces = args.namespace or [n for n in os.environ.get("DGM_WATCH_NAMESPACE", "").split(",") if n]
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    me = identity(started)
    priority = args.priority if args.priority is not None else (
        priority_env_value if priority_env_value is not None else start_priority(started))
    activity = Activity(me, priority, list(namespaces) or [None], standalone=not args.peering)
    handlers.RUNTIME = handlers.Runtime(namespaces=list(namespaces), activity=activity, peering=args.peering,
                                        peering_lifetime=lifetime)
    if args.metrics_port:
        from prometheus_client import start_http_server
        start_http_server(args.metrics_port)
    if args.readiness:
        serve_readiness(args.readiness, handlers.ready, lambda: {
            "role": "active" if activity.is_active() else "standby", "identity": me,
            "priority": priority, "peering": args.peering})
    logging.getLogger(__name__).info("dgm-operator %s (identity %s, peering %s, priority %d)",
                                     "watching " + ",".join(namespaces) if namespaces else "cluster-wide",
                                     me, args.peering or "off", priority)
    asyncio.run(kopf.operator(
        standalone=not args.peering,
        peering_name=args.peering,
        priority=priority if args.peering else None,
        identity=me,  # type: ignore[arg-type]  # kopf's peering.Identity is a NewType of str
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness or None,
    ))
    return 0
