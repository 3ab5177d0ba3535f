"""`dgm bench safety`: time of the safety analysis on large and hostile inputs.

Every input must be decided; this measures how long deciding takes (best of `--repeat`
runs), from the sample agent's own files up to the largest file a ConfigMap can hold and
the pathological inputs of the tests (chained `+ 1`, deep nesting, a YAML bomb)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from dgm_operator.engine.safety import SafetyPolicy, analyze

from ..sample_agent.agent import default_workspace


def cases() -> dict[str, tuple[dict[str, str], SafetyPolicy | None]]:
    workspace = default_workspace()
    big = SafetyPolicy(max_change_bytes=1 << 22)
    laughs = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8))
    return {
        "sample ranker.py": ({"ranker.py": (workspace / "ranker.py").read_text()}, None),
        "sample config.yaml": ({"config.yaml": (workspace / "config.yaml").read_text()}, None),
        "64 KiB of Python functions": ({"a.py": "def f(a, b):\n    return a.b + b['k']\n" * 1_500}, None),
        "1 MiB of Python functions": ({"a.py": "def f(a, b):\n    return a.b + b['k']\n" * 24_000}, big),
        "1 MiB Python list literal": ({"a.py": "x = [" + "1, " * 340_000 + "]\n"}, big),
        "1 MiB YAML, no aliases": ({"c.yaml": "".join(f"k{i}: [1, 2]\n" for i in range(70_000))}, big),
        "5,000 chained + 1": ({"a.py": "x = " + " + ".join(["1"] * 5_000) + "\n"}, None),
        "100,000 chained + 1": ({"a.py": "x = " + " + ".join(["1"] * 100_000) + "\n"}, big),
        "100,000 nested parentheses": ({"a.py": "x = " + "(" * 100_000 + ")" * 100_000 + "\n"}, big),
        "100,000 nested YAML lists": ({"c.yaml": "a: " + "[" * 100_000 + "]" * 100_000}, big),
        "500,000 nested JSON lists": ({"c.json": "[" * 500_000 + "]" * 500_000}, big),
        "billion laughs": ({"c.yaml": laughs}, None),
    }


def run(repeat: int) -> list[dict[str, Any]]:
    out = []
    for name, (changes, policy) in cases().items():
        best = float("inf")
        report = None
        for _ in range(repeat):
            start = time.perf_counter()
            report = analyze(changes, policy)
            best = min(best, time.perf_counter() - start)
        assert report is not None
        out.append({"input": name, "kib": round(sum(len(v.encode()) for v in changes.values()) / 1024),
                    "seconds": round(best, 4), "score": report.score,
                    "first_finding": report.findings[0].rule if report.findings else None})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dgm bench safety", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per input (the best is reported)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = run(max(1, args.repeat))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['input']:<30} {row['kib']:>6} KiB  {row['seconds'] * 1000:>8.0f} ms  "
                  f"score {row['score']:.2f}  {row['first_finding'] or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
