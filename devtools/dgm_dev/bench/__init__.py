"""Benchmarks: ``search`` (the engine in-process), ``lifecycle`` (decision latency on a
dev cluster) and ``scale`` (memory, API requests and lag with many agents)."""
