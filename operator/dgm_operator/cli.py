"""The `dgm` command. Each subcommand lives in the module that owns its concern; this
file only dispatches, importing lazily so `dgm crds` does not pay for kopf's import."""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, function taking argv list and returning an exit code, help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "dev-cluster": ("dgm_operator.devcluster.cli", "main", "start, stop or inspect the local dev cluster"),
    "crds": ("dgm_operator.api.crdgen", "main", "write crds/*.yaml from the pydantic models"),
    "bench": ("dgm_operator.cli", "bench", "benchmarks: search (engine), lifecycle (latency), scale (memory, lag)"),
    "evaluate": ("dgm_operator.evaluate", "main", "run a benchmark command and write the termination log"),
    "run": ("dgm_operator.run", "main", "run the operator"),
    "demo": ("dgm_operator.demo", "main", "the quickstart agent improving itself on a dev cluster"),
}


def bench(argv: list[str]) -> int:
    """`dgm bench search ...` (the engine) or `dgm bench lifecycle ...` (the operator)."""
    if argv[:1] == ["lifecycle"]:
        from .bench_lifecycle import main as lifecycle_main
        return lifecycle_main(argv[1:])
    if argv[:1] == ["scale"]:
        from .bench_scale import main as scale_main
        return scale_main(argv[1:])
    from .engine.bench import main as search_main
    return search_main(argv)


def usage() -> str:
    lines = ["usage: dgm COMMAND [ARGS...]", "", "commands:"]
    for name, (_, _, help_text) in COMMANDS.items():
        lines.append(f"  {name:<12} {help_text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"dgm: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
