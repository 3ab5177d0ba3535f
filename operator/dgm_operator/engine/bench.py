"""`dgm bench search`: the engine's search loop on synthetic landscapes (a benchmark, not a test).

Each run is the engine loop in-process, as the operator would drive it: select k parents
from the archive (``dgm``, ``greedy`` or ``random``), let the ``parameters`` proposer mutate
the parent's real config file (``params.json``, a 4-dimensional float search space in
[0, 1]), evaluate the new file set on a synthetic landscape (one metric, ``quality``,
maximised, optimum 1.0), score it with :func:`.scoring.fitness` against the original
baseline, and add it to the archive (every evaluated child stays, as in the DGM paper).
Optuna's TPE sampler (multivariate) is the outside peer, with the same budget and the
same starting point (the baseline is its first, enqueued trial).

Landscapes (x in [0, 1]^4, start x = 0.3 everywhere, inside the trap's deceptive basin):

* ``smooth``: a Gaussian bump exp(-|x - c|^2 / (2 * 0.3^2)), c drawn per seed in [0.15, 0.85]^4.
* ``deceptive``: the additive trap (Deb and Goldberg) per coordinate,
  g(u) = 0.8 * (1 - u / 0.6) for u < 0.6, else (u - 0.6) / 0.4; f = mean g. The local optimum
  (all u = 0, f = 0.8) is where hill climbing from the start leads; the global optimum
  (all u = 1, f = 1.0) is only reachable by crossing u = 0.6 (from u = 0.3 a coordinate must
  pass u in (0.3, 0.76), all worse than the start, before it scores better).

DGM scores are normalised with the known quality bounds [0, 1] (``--normalise bounds``,
the default: the bench's quality is an accuracy, as in the paper, so "perfect" means
quality 1), or min-max over the archive (``--normalise minmax``, what the operator does
without bounds); see :mod:`.selection`.
* ``noisy``: the smooth bump, each evaluation observed with N(0, 0.05) noise.

Reported per landscape and method over the seeds: the true (noise-free) quality of the
incumbent (the candidate the method itself believes best) after the budget, mean ± stdev;
the fraction of runs whose incumbent reached 95 % of the optimum and the mean number of
evaluations it took (over the runs that reached it).

Staged evaluation (``dgm`` selection): a cheap first stage costs 20 % of a full evaluation
and observes quality with extra N(0, 0.05) noise (a subset of the benchmark); the child goes
on to the full run only when its stage score is at least its parent's score minus 0.05
quality (:func:`.scoring.stage_decision`). Compute is counted in full-evaluation units. For
each seed the target is the best score the unstaged run reached within the budget; we report
the compute each variant needed to first reach it (the staged run may use up to twice the
budget) and the compute saved.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

from . import configfiles
from .archive import Archive
from .proposers import AgentContext, ParametersProposer
from .scoring import fitness, stage_decision
from .selection import select_parents
from .types import CandidateRecord, MetricSpec, Phase, SearchParam, SelectionMethod

DIM = 4
FILE = "params.json"
KEYS = [f"search.x{i}" for i in range(DIM)]
SPACE = tuple(SearchParam(file=FILE, key=k, type="float", min=0.0, max=1.0) for k in KEYS)
SPECS = (MetricSpec("quality", "maximize"),)
START = 0.3
OPTIMUM = 1.0
K_CHILDREN = 4
STAGE_COST = 0.2
STAGE_NOISE = 0.05
STAGE_TOLERANCE = 0.05
TARGET_FRACTION = 0.95


@dataclass
class Landscape:
    name: str
    true: Callable[[Sequence[float]], float]
    noise: float = 0.0


def make_landscape(name: str, seed: int) -> Landscape:
    rng = random.Random(f"landscape-{name}-{seed}")
    if name in ("smooth", "noisy"):
        center = [rng.uniform(0.15, 0.85) for _ in range(DIM)]

        def bump(x: Sequence[float]) -> float:
            return math.exp(-sum((a - c) ** 2 for a, c in zip(x, center)) / (2 * 0.3 ** 2))

        return Landscape(name, bump, 0.05 if name == "noisy" else 0.0)
    if name == "deceptive":
        def trap(x: Sequence[float]) -> float:
            return statistics.fmean(0.8 * (1 - u / 0.6) if u < 0.6 else (u - 0.6) / 0.4 for u in x)

        return Landscape(name, trap)
    raise ValueError(f"unknown landscape {name!r}")


LANDSCAPES = ("smooth", "deceptive", "noisy")


@dataclass
class RunResult:
    best: float  # true quality of the incumbent at the end of the budget
    trace: list[tuple[float, float]] = field(default_factory=list)  # (compute, incumbent true quality)

    def compute_to(self, target: float) -> float | None:
        for compute, quality in self.trace:
            if quality >= target - 1e-12:
                return compute
        return None

    def best_at(self, compute: float) -> float:
        best = 0.0
        for c, q in self.trace:
            if c > compute + 1e-9:
                break
            best = q
        return best


def _values(files: dict[str, str]) -> list[float]:
    return [float(configfiles.get_value(FILE, files[FILE], k)) for k in KEYS]


def run_archive(method: str, land: Landscape, budget: float, seed: int, staged: bool = False,
                normalise: str = "bounds") -> RunResult:
    rng = random.Random(f"search-{seed}-{method}-{staged}")
    noise = random.Random(f"noise-{seed}-{land.name}-{method}-{staged}")
    proposer = ParametersProposer()
    base_files = {FILE: configfiles.set_values(FILE, "{}\n", {k: START for k in KEYS})}

    def observe(x: Sequence[float], extra: float = 0.0) -> float:
        sd = math.hypot(land.noise, extra)
        return land.true(x) + (noise.gauss(0.0, sd) if sd else 0.0)

    x0 = _values(base_files)
    q0 = observe(x0)
    reference = {"quality": q0}
    baseline = CandidateRecord("baseline", phase=Phase.APPLIED, metrics=reference,
                               score=fitness(reference, reference, SPECS), is_baseline=True)
    bounds = None
    if normalise == "bounds":
        bounds = (fitness({"quality": 0.0}, reference, SPECS), fitness({"quality": OPTIMUM}, reference, SPECS))
    files = {"baseline": base_files}
    truth = {"baseline": land.true(x0)}
    quality = {"baseline": q0}
    records: list[CandidateRecord] = []
    compute = 1.0
    result = RunResult(best=truth["baseline"], trace=[(compute, truth["baseline"])])
    incumbent = baseline
    seq = 0
    while compute < budget - 1e-9:
        archive = Archive(baseline, records)
        for parent in select_parents(archive, method, K_CHILDREN, rng, bounds=bounds):
            if compute >= budget - 1e-9:
                break
            seq += 1
            name = f"c{seq}"
            ctx = AgentContext(agent_name="bench", files=base_files, metrics=SPECS, search_space=SPACE,
                               baseline_metrics=reference, parent=parent, parent_files=files[parent],
                               parent_metrics={"quality": quality[parent]})
            draft = proposer.propose(ctx, rng)
            child_files = {**files[parent], **draft.changes}
            x = _values(child_files)
            record = CandidateRecord(name, parent=parent, created=seq)
            if staged:
                compute += STAGE_COST
                cheap = observe(x, STAGE_NOISE)
                threshold = fitness({"quality": quality[parent] - STAGE_TOLERANCE}, reference, SPECS)
                decision = stage_decision(0, fitness({"quality": cheap}, reference, SPECS), threshold, 2)
                if decision.action == "stop":
                    record.phase, record.reason, record.stage_reached = Phase.REJECTED, "StageThresholdNotMet", 0
                    record.metrics = {"quality": cheap}
                    record.score = decision.score
                    records.append(record)
                    files[name], truth[name], quality[name] = child_files, land.true(x), cheap
                    continue
            compute += 1.0
            q = observe(x)
            record.metrics = {"quality": q}
            record.score = fitness(record.metrics, reference, SPECS)
            record.stage_reached = 1 if staged else 0
            improved = q > quality[parent]
            record.phase = Phase.VALIDATED if improved else Phase.REJECTED
            record.reason = "ImprovementValidated" if improved else "InsufficientImprovement"
            records.append(record)
            files[name], truth[name], quality[name] = child_files, land.true(x), q
            if record.score > incumbent.score:
                incumbent = record
            result.trace.append((compute, truth[incumbent.name]))
    result.best = truth[incumbent.name]
    return result


def run_tpe(land: Landscape, budget: int, seed: int) -> RunResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    noise = random.Random(f"noise-{seed}-{land.name}-tpe")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({f"x{i}": START for i in range(DIM)})
    truth: dict[int, float] = {}

    def objective(trial) -> float:
        x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(DIM)]
        truth[trial.number] = land.true(x)
        return truth[trial.number] + (noise.gauss(0.0, land.noise) if land.noise else 0.0)

    result = RunResult(best=0.0)
    best_value, best_number = -math.inf, None

    def callback(study, trial) -> None:
        nonlocal best_value, best_number
        if trial.value is not None and trial.value > best_value:
            best_value, best_number = trial.value, trial.number
        result.trace.append((float(trial.number + 1), truth[best_number]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(objective, n_trials=int(budget), callbacks=[callback])
    result.best = truth[best_number]
    return result


def _stats(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_bench(seeds: int, budget: int, landscapes: Sequence[str] = LANDSCAPES,
              methods: Sequence[str] = ("dgm", "greedy", "random", "tpe"), normalise: str = "bounds") -> dict:
    target = TARGET_FRACTION * OPTIMUM
    out: dict = {"seeds": seeds, "budget": budget, "k_children": K_CHILDREN, "target": target,
                 "stage_cost": STAGE_COST, "normalise": normalise, "start": START,
                 "search": {}, "staging": {}}
    for name in landscapes:
        out["search"][name] = {}
        for method in methods:
            runs = [run_tpe(make_landscape(name, s), budget, s) if method == "tpe"
                    else run_archive(method, make_landscape(name, s), budget, s, normalise=normalise)
                    for s in range(seeds)]
            reach = [r.compute_to(target) for r in runs]
            reached = [c for c in reach if c is not None]
            mean, sd = _stats([r.best for r in runs])
            out["search"][name][method] = {
                "best_mean": mean, "best_stdev": sd,
                "reach95_fraction": len(reached) / len(runs),
                "evals_to_95_mean": statistics.fmean(reached) if reached else None,
            }
        plain, staged_c, best_plain, best_staged = [], [], [], []
        for s in range(seeds):
            land = make_landscape(name, s)
            unstaged = run_archive("dgm", land, budget, s, staged=False, normalise=normalise)
            staged = run_archive("dgm", land, 2 * budget, s, staged=True, normalise=normalise)
            goal = unstaged.best
            plain.append(unstaged.compute_to(goal))
            staged_c.append(staged.compute_to(goal))
            best_plain.append(unstaged.best)
            best_staged.append(staged.best_at(budget))
        pairs = [(p, q) for p, q in zip(plain, staged_c) if p is not None and q is not None]
        mp = statistics.fmean(p for p, _ in pairs) if pairs else None
        ms = statistics.fmean(q for _, q in pairs) if pairs else None
        out["staging"][name] = {
            "best_unstaged_mean": statistics.fmean(best_plain),
            "best_staged_at_equal_compute_mean": statistics.fmean(best_staged),
            "staged_reached_fraction": len(pairs) / seeds,
            "compute_unstaged_mean": mp, "compute_staged_mean": ms,
            "compute_saved": (1 - ms / mp) if pairs and mp else None,
        }
    return out


def format_table(res: dict) -> str:
    lines = [f"search benchmark: {res['seeds']} seeds, budget {res['budget']} evaluations, "
             f"k={res['k_children']} children per generation, target {res['target']:.2f} of optimum 1.0, "
             f"dgm normalisation {res['normalise']}", ""]
    lines.append(f"{'landscape':<10} {'method':<7} {'best (mean ± sd)':>18} {'reach95':>8} {'evals to 95%':>13}")
    for name, methods in res["search"].items():
        for method, r in methods.items():
            evals = "-" if r["evals_to_95_mean"] is None else f"{r['evals_to_95_mean']:.0f}"
            lines.append(f"{name:<10} {method:<7} {r['best_mean']:>9.3f} ± {r['best_stdev']:<6.3f} "
                         f"{r['reach95_fraction']:>8.0%} {evals:>13}")
    lines += ["", f"staged evaluation (dgm; cheap stage = {res['stage_cost']:.0%} of a full evaluation; "
              "compute in full evaluations)",
              f"{'landscape':<10} {'best plain':>10} {'best staged':>11} {'reached':>8} "
              f"{'compute plain':>14} {'compute staged':>15} {'saved':>6}"]
    for name, r in res["staging"].items():
        cp = "-" if r["compute_unstaged_mean"] is None else f"{r['compute_unstaged_mean']:.1f}"
        cs = "-" if r["compute_staged_mean"] is None else f"{r['compute_staged_mean']:.1f}"
        saved = "-" if r["compute_saved"] is None else f"{r['compute_saved']:.0%}"
        lines.append(f"{name:<10} {r['best_unstaged_mean']:>10.3f} {r['best_staged_at_equal_compute_mean']:>11.3f} "
                     f"{r['staged_reached_fraction']:>8.0%} {cp:>14} {cs:>15} {saved:>6}")
    lines += ["", "best plain / best staged: mean incumbent true quality at the same compute budget; "
              "compute: to first reach the plain run's final best (same seed), over the seeds where both did."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dgm bench", description="benchmarks of the engine")
    sub = parser.add_subparsers(dest="bench", required=True)
    search = sub.add_parser("search", help="parent selection and staged evaluation on synthetic landscapes")
    search.add_argument("--seeds", type=int, default=10)
    search.add_argument("--budget", type=int, default=200, help="evaluations per run (default 200)")
    search.add_argument("--landscapes", default=",".join(LANDSCAPES))
    search.add_argument("--methods", default="dgm,greedy,random,tpe")
    search.add_argument("--normalise", choices=("bounds", "minmax"), default="bounds")
    search.add_argument("--json", action="store_true", help="print machine-readable results")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.seeds < 1 or args.budget < 2:
        parser.error("--seeds must be >= 1 and --budget >= 2")
    started = time.monotonic()
    res = run_bench(args.seeds, args.budget, [s for s in args.landscapes.split(",") if s],
                    [m for m in args.methods.split(",") if m], args.normalise)
    res["seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(format_table(res))
        print(f"\n({res['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
