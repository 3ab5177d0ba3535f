"""The `dgm` command. Each subcommand lives in the module that owns its concern; this
file only dispatches, importing lazily so `dgm crds` does not pay for kopf's import.

The runtime's own subcommands are listed below. The development tools
(``dgm-operator-dev`` in ``devtools/``) add theirs (``dev-cluster``, ``demo``, ``bench``)
through the ``dgm.commands`` entry-point group, so the runtime never imports them.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points
from typing import Callable

ENTRY_POINT_GROUP = "dgm.commands"

# subcommand -> (module, function taking argv list and returning an exit code, help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "crds": ("dgm_operator.api.crdgen", "main", "write crds/*.yaml from the pydantic models"),
    "evaluate": ("dgm_operator.grader.evaluate", "main", "run a benchmark command in-process and write the termination log"),
    "grade": ("dgm_operator.grader.grade", "main", "drive an agent (A2A or HTTP) through a task suite; write the termination log"),
    "run": ("dgm_operator.controller.run", "main", "run the operator"),
    "egress-check": ("dgm_operator.grader.egress", "main", "prove from inside a sandbox pod that egress is denied"),
    "propose-llm": ("dgm_operator.proposal.llm", "main",
                    "(in a proposal Job) ask an OpenAI-compatible model for a candidate"),
    "proposal-result": ("dgm_operator.proposal.result", "main",
                        "(in a proposal Job) print the proposer's output for the operator"),
}
# commands of the development tools, named here only to say where they come from
DEV_COMMANDS: dict[str, str] = {
    "dev-cluster": "start, stop or inspect the local dev cluster",
    "demo": "the quickstart agent improving itself on a dev cluster",
    "bench": "benchmarks: search (engine), lifecycle (latency), scale (memory, requests, lag), failover",
    "llm-standin": "a stand-in OpenAI-compatible server (scripted replies, not a model) for tests",
}


def _plugins() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def usage() -> str:
    plugins = _plugins()
    lines = ["usage: dgm COMMAND [ARGS...]", "", "commands:"]
    for name, (_, _, help_text) in COMMANDS.items():
        lines.append(f"  {name:<16} {help_text}")
    for name, help_text in DEV_COMMANDS.items():
        note = "" if name in plugins else "  (needs the development tools: pip install ./devtools)"
        lines.append(f"  {name:<16} {help_text}{note}")
    return "\n".join(lines)


def resolve(name: str) -> Callable[[list[str]], int | None]:
    """The function behind a subcommand; raises LookupError with a message for the user."""
    if name in COMMANDS:
        module_name, func_name, _ = COMMANDS[name]
        func: Callable[[list[str]], int | None] = getattr(importlib.import_module(module_name), func_name)
        return func
    plugin = _plugins().get(name)
    if plugin is not None:
        loaded: Callable[[list[str]], int | None] = plugin.load()  # type: ignore[attr-defined]
        return loaded
    if name in DEV_COMMANDS:
        raise LookupError(f"dgm: {name!r} is part of the development tools, which are not installed "
                          f"(install them from the dgm-operator checkout: pip install -e ./devtools)")
    raise LookupError(f"dgm: unknown command {name!r}\n\n{usage()}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    try:
        func = resolve(argv[0])
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 2
    return int(func(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
