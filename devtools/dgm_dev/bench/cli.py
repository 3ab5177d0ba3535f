"""`dgm bench search|lifecycle|scale|failover|safety|llm-cost ...`."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    if argv[:1] == ["lifecycle"]:
        from .lifecycle import main as lifecycle_main
        return lifecycle_main(argv[1:])
    if argv[:1] == ["llm-cost"]:
        from .llm_cost import main as llm_cost_main
        return llm_cost_main(argv[1:])
    if argv[:1] == ["scale"]:
        from .scale import main as scale_main
        return scale_main(argv[1:])
    if argv[:1] == ["safety"]:
        from .safety import main as safety_main
        return safety_main(argv[1:])
    if argv[:1] == ["failover"]:
        from .failover import main as failover_main
        return failover_main(argv[1:])
    from .search import main as search_main
    return search_main(argv)
