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
* ``noisy``: the smooth bump, each evaluation observed with N(0, 0.05) noise.

All three landscapes take values in [0, 1], like the paper's accuracies. DGM scores are
normalised with the known quality bounds [0, 1] (``--normalise bounds``, the default): the
affine map from fitness back to [0, 1] gives exactly the raw (observed) quality, so
``sigmoid(10 * (alpha - 0.5))`` sees what the paper's rule sees, an accuracy-like score
with its centre alpha_0 = 0.5 in the middle of the attainable range. ``--normalise minmax``
(what the operator does without bounds) rescales over the archive instead, so alpha_0 = 0.5
then means "midway between the worst and best member so far"; see :mod:`.selection`.

The loop is the paper's: each generation draws k = 4 parents with replacement (for every
method; ``greedy`` takes the best member k times, ``random`` draws uniformly), each parent
gets one child from the same ``parameters`` proposer (Gaussian step 0.15 x range), and every
evaluated child joins the archive, whatever its score; nothing is pruned. Every method gets
the same number of evaluations, the baseline's included.

Reported per landscape and method over the seeds: the true (noise-free) quality of the
incumbent (the candidate the method itself believes best) after the budget, mean ± stdev;
the fraction of runs whose incumbent reached 95 % of the optimum and the mean number of
evaluations it took (over the runs that reached it); and, paired by seed (the same landscape
instance), how often ``dgm`` ended above / below the method, with a two-sided sign test.

Staged evaluation (``dgm`` selection): a cheap first stage costs 20 % of a full evaluation
and observes quality with extra N(0, 0.05) noise (a subset of the benchmark); the child goes
on to the full run only when its stage score is at least its parent's score minus 0.05
quality (:func:`.scoring.stage_decision`). A child stopped at the cheap stage still joins the
archive with its stage score (as in the paper, whose archive keeps every child evaluated on
the first-stage subset). Compute is counted in full-evaluation units; a child that passes
pays 0.2 + 1.0, since the operator runs the full stage as its own Job over the whole
benchmark. For each seed the target is the best score the unstaged run reached within the
budget; the staged run may use up to twice the budget. Compute saved is reported three ways:

* ``reached``: over the seeds where the staged run reached the target (the original figure;
  it drops the seeds where staging did worst, so it flatters staging);
* ``all``: over all seeds, a staged run that never reached the target counted at its cap
  (twice the budget, less than its true cost, so still an upper bound on the saving);
* ``curve``: from the mean-over-seeds curves, the compute at which staged runs reach, on
  average, the unstaged runs' mean final quality, against the compute unstaged runs need
  for it (pools the seeds; but the mean curves are flat near the end of the budget, so a
  small difference in quality moves it a lot: read it with the equal-compute qualities).
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

from dgm_operator.engine import configfiles
from dgm_operator.engine.archive import Archive
from dgm_operator.engine.proposers import AgentContext, ParametersProposer
from dgm_operator.engine.scoring import fitness, stage_decision
from dgm_operator.engine.selection import select_parents
from dgm_operator.engine.types import CandidateRecord, MetricSpec, Phase, SearchParam, SelectionMethod

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
        """True quality of the incumbent after `compute` (0 before the first evaluation)."""
        i = bisect.bisect_right(self.trace, compute + 1e-9, key=lambda t: t[0])
        return self.trace[i - 1][1] if i else 0.0


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


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test p-value (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(a: Sequence[float], b: Sequence[float], eps: float = 1e-9) -> dict:
    """`a` against `b`, seed by seed: wins, losses, ties and the sign test's p-value."""
    wins = sum(x > y + eps for x, y in zip(a, b))
    losses = sum(x < y - eps for x, y in zip(a, b))
    return {"wins": wins, "losses": losses, "ties": len(a) - wins - losses, "sign_p": sign_test(wins, losses)}


def _first_reach(runs: Sequence[RunResult], target: float, limit: float, step: float = STAGE_COST) -> float | None:
    """Least compute (on a grid of `step`) at which the mean incumbent quality of `runs` reaches `target`."""
    for i in range(1, int(round(limit / step)) + 1):
        c = i * step
        if statistics.fmean(r.best_at(c) for r in runs) >= target - 1e-12:
            return c
    return None


def run_bench(seeds: int, budget: int, landscapes: Sequence[str] = LANDSCAPES,
              methods: Sequence[str] = ("dgm", "greedy", "random", "tpe"), normalise: str = "bounds") -> dict:
    target = TARGET_FRACTION * OPTIMUM
    out: dict = {"seeds": seeds, "budget": budget, "k_children": K_CHILDREN, "target": target,
                 "stage_cost": STAGE_COST, "normalise": normalise, "start": START,
                 "search": {}, "staging": {}}
    for name in landscapes:
        out["search"][name] = {}
        bests: dict[str, list[float]] = {}
        dgm_runs: list[RunResult] | None = None
        for method in methods:
            runs = [run_tpe(make_landscape(name, s), budget, s) if method == "tpe"
                    else run_archive(method, make_landscape(name, s), budget, s, normalise=normalise)
                    for s in range(seeds)]
            if method == "dgm":
                dgm_runs = runs
            bests[method] = [r.best for r in runs]
            reach = [r.compute_to(target) for r in runs]
            reached = [c for c in reach if c is not None]
            mean, sd = _stats(bests[method])
            out["search"][name][method] = {
                "best_mean": mean, "best_stdev": sd,
                "reach95_fraction": len(reached) / len(runs),
                "evals_to_95_mean": statistics.fmean(reached) if reached else None,
                "dgm_vs": (paired(bests["dgm"], bests[method]) if "dgm" in bests and method != "dgm" else None),
            }
        unstaged_runs, staged_runs = [], []
        for s in range(seeds):
            land = make_landscape(name, s)
            # the unstaged dgm run is the search table's own run when there is one (same seed, same streams)
            unstaged_runs.append(dgm_runs[s] if dgm_runs is not None
                                 else run_archive("dgm", land, budget, s, staged=False, normalise=normalise))
            staged_runs.append(run_archive("dgm", land, 2 * budget, s, staged=True, normalise=normalise))
        plain = [u.compute_to(u.best) for u in unstaged_runs]
        staged_c = [st.compute_to(u.best) for u, st in zip(unstaged_runs, staged_runs)]
        pairs = [(p, q) for p, q in zip(plain, staged_c) if p is not None and q is not None]
        mp = statistics.fmean(p for p, _ in pairs) if pairs else None
        ms = statistics.fmean(q for _, q in pairs) if pairs else None
        plain_all = statistics.fmean(p for p in plain if p is not None)
        staged_all = statistics.fmean(2 * budget if q is None else q for q in staged_c)
        goal = statistics.fmean(u.best for u in unstaged_runs)
        curve_plain = _first_reach(unstaged_runs, goal, budget)
        curve_staged = _first_reach(staged_runs, goal, 2 * budget)
        out["staging"][name] = {
            "best_unstaged_mean": goal,
            "best_staged_at_equal_compute_mean": statistics.fmean(st.best_at(budget) for st in staged_runs),
            "best_staged_at_twice_compute_mean": statistics.fmean(st.best for st in staged_runs),
            "staged_reached_fraction": len(pairs) / seeds,
            "compute_unstaged_mean": mp, "compute_staged_mean": ms,
            "compute_saved": (1 - ms / mp) if pairs and mp else None,
            "compute_saved_all_seeds": 1 - staged_all / plain_all,
            "curve_compute_unstaged": curve_plain, "curve_compute_staged": curve_staged,
            "compute_saved_curve": (1 - curve_staged / curve_plain) if curve_plain and curve_staged else None,
        }
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def format_table(res: dict) -> str:
    lines = [f"search benchmark: {res['seeds']} seeds, budget {res['budget']} evaluations, "
             f"k={res['k_children']} children per generation, target {res['target']:.2f} of optimum 1.0, "
             f"dgm normalisation {res['normalise']}", ""]
    lines.append(f"{'landscape':<10} {'method':<7} {'best (mean ± sd)':>18} {'reach95':>8} {'evals to 95%':>13}"
                 f"  {'dgm vs it (W/L/T, sign p)':>26}")
    for name, methods in res["search"].items():
        for method, r in methods.items():
            evals = "-" if r["evals_to_95_mean"] is None else f"{r['evals_to_95_mean']:.0f}"
            vs = r.get("dgm_vs")
            versus = "" if vs is None else f"{vs['wins']}/{vs['losses']}/{vs['ties']}, p={vs['sign_p']:.2g}"
            lines.append(f"{name:<10} {method:<7} {r['best_mean']:>9.3f} ± {r['best_stdev']:<6.3f} "
                         f"{r['reach95_fraction']:>8.0%} {evals:>13}  {versus:>26}".rstrip())
    lines += ["", f"staged evaluation (dgm; cheap stage = {res['stage_cost']:.0%} of a full evaluation; "
              "compute in full evaluations)",
              f"{'landscape':<10} {'best plain':>10} {'best staged':>11} {'reached':>8} "
              f"{'compute plain':>14} {'compute staged':>15} {'saved':>6} {'saved all':>10} {'saved curve':>12}"]
    for name, r in res["staging"].items():
        cp = "-" if r["compute_unstaged_mean"] is None else f"{r['compute_unstaged_mean']:.1f}"
        cs = "-" if r["compute_staged_mean"] is None else f"{r['compute_staged_mean']:.1f}"
        lines.append(f"{name:<10} {r['best_unstaged_mean']:>10.3f} {r['best_staged_at_equal_compute_mean']:>11.3f} "
                     f"{r['staged_reached_fraction']:>8.0%} {cp:>14} {cs:>15} {_pct(r['compute_saved']):>6} "
                     f"{_pct(r['compute_saved_all_seeds']):>10} {_pct(r['compute_saved_curve']):>12}")
    lines += ["", "best plain / best staged: mean incumbent true quality at the same compute budget.",
              "compute plain / staged, saved: to first reach the plain run's final best (same seed), over the "
              "seeds where the staged run did (flatters staging);",
              "saved all: every seed, a staged run that never got there counted at its cap (2 x budget); "
              "saved curve: compute for the mean staged curve to reach the plain runs' mean final best.",
              "dgm vs it: seeds where dgm's final best was above / below / equal to the method's (same landscape), "
              "two-sided sign test."]
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
