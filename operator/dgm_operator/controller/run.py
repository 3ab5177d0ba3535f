"""`dgm run`: the operator process (kopf), with the project's settings.

kopf keeps its own state (when it keeps any) under ``dgm.io/`` annotations, there is no
finalizer (nothing the operator creates outlives its owner without garbage collection),
the liveness endpoint answers on ``/healthz``, and the watch scope is one or more
namespaces (``--namespace``, repeatable) or the whole cluster (``--all-namespaces``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dgm run", description="Run the dgm-operator.")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="watch this namespace (repeatable); default: $DGM_WATCH_NAMESPACE or all")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch the whole cluster")
    parser.add_argument("--liveness", default=os.environ.get("DGM_LIVENESS", "http://0.0.0.0:8080/healthz"),
                        help="liveness endpoint URL ('' to disable)")
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("DGM_METRICS_PORT", "9090")),
                        help="serve Prometheus metrics on this port (0 disables)")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)

    import kopf  # imported late: `dgm crds` and friends need not load it

    from . import handlers  # noqa: F401  (registers the handlers)

    namespaces = args.namespace or [n for n in os.environ.get("DGM_WATCH_NAMESPACE", "").split(",") if n]
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.metrics_port:
        from prometheus_client import start_http_server
        start_http_server(args.metrics_port)
    asyncio.run(kopf.operator(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness or None,
    ))
    return 0
