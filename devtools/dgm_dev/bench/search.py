"""`dgm bench search`: the engine's search loop on landscapes (a benchmark, not a test).

Each run is the engine loop in-process, as the operator drives it: select k parents from
the archive, let the ``parameters`` proposer write the parent's real config file, evaluate
the new file set on a landscape, score it with :func:`.scoring.fitness` against the
original baseline, and add it to the archive (every evaluated child stays, as in the DGM
paper). A proposal whose merged file set equals an archived candidate's is a duplicate
(:mod:`.dedupe`): it is not evaluated and costs nothing, it enters the archive as
``DuplicateCandidate`` (never a parent, but a try that counts for ``adaptive``'s stall, as in
the operator), and the next parent is drawn.
Optuna's TPE sampler run alone (multivariate, the start enqueued as its first trial) is
the outside peer, with the same budget.

Landscapes (the interface is :class:`Landscape`; ``--landscape MODULE:CALLABLE`` adds one):

* ``smooth``: a Gaussian bump exp(-|x - c|^2 / (2 * 0.3^2)) on [0, 1]^4, c drawn per seed.
* ``deceptive``: the additive trap (Deb and Goldberg) per coordinate,
  g(u) = 0.8 * (1 - u / 0.6) for u < 0.6, else (u - 0.6) / 0.4; f = mean g. Hill climbing from
  the start (0.3) leads to the local optimum (all u = 0, f = 0.8); the global one (all u = 1,
  f = 1.0) is only reached across worse points.
* ``noisy``: the smooth bump observed with N(0, 0.05) noise.
* ``rugged``: an NK landscape (Kauffman): N = 16 bool parameters, each bit's contribution a
  random table over itself and K = 4 random other bits, f = mean contribution, rescaled to
  [0, 1] by its exact minimum and maximum (enumerated), start all False. Many local optima.
* ``sample-agent``: the real sample QA agent (``dgm_dev.sample_agent``): its quickstart search
  space (retrieval scorer, top_k, chunking, min_score, text normalisation, n-grams: 114,048
  configurations), its benchmark run in-process (``sample_agent.bench.run_bench``) on the
  ``config.yaml`` the proposer wrote, quality = the quickstart's weighted fitness (accuracy,
  response time, error rate, memory) against the default configuration. The full stage is the
  100 questions, the cheap stage the 25-question ``quick`` subset (cost 0.25). The agent's
  measured compute time is machine noise (microseconds against the simulated reader's
  0.004 s per context token), so the clock is frozen during the run: response time is the
  reader's cost alone and the landscape is deterministic. Evaluations are cached by
  configuration within the process; every evaluation still counts against the budget.

Selection methods (``dgm``, ``greedy``, ``random``, ``hgm``, ``adaptive``, ``elite``; see
:mod:`.selection`) all use the mutation proposer (Gaussian step 0.15 x range, bools flipped,
choices resampled), k = 4 parents per generation; ``optuna`` is the ``parameters`` proposer
with its default Optuna TPE sampler (warm-started from the archive at every proposal,
:mod:`.sampling`) under the default selection. Scores are normalised for ``dgm`` and ``hgm``
with the landscape's known quality bounds when it declares them (as the paper's accuracies),
else min-max over the archive (what the operator does).

Reported per landscape and method over the seeds: the true quality of the incumbent (the
candidate the method itself believes best) after the budget, mean ± stdev; the fraction of
runs reaching 95 % of the optimum (when known) and the mean evaluations to get there; the
mean number of distinct parents; and, paired by seed (the same landscape instance), how often
the default method ended above / below the method, with a two-sided exact sign test.

Staged evaluation (default selection): each child first runs the cheap stage (cost
``cheap_cost`` of a full evaluation); its stage score is compared with its parent's on the
same tasks, and it runs the full evaluation when promoted:

* ``rank``: its stage gain is in the top 1/eta of the gains of the children evaluated at that
  stage so far (:func:`.scoring.rank_decision`, eta = 3 by default);
* ``threshold``: its stage gain is at least -0.05 x the quality range (the former rule).

A child stopped at the cheap stage joins the archive with its parent's score plus its stage
gain (as in the paper, whose archive keeps every child evaluated on the first-stage subset),
but only fully evaluated children can become the incumbent. Compute is counted in full
evaluations (a promoted child pays cheap + 1). For each seed the target is the best true
quality the unstaged run reached within the budget; staged runs may use twice the budget.
The saving over all seeds counts a staged run that never reached the target at its cap.
"""

from __future__ import annotations

import argparse
import bisect
import importlib
import json
import math
import random
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from dgm_operator.api.models import ArchiveSpec
from dgm_operator.engine import configfiles
from dgm_operator.engine.archive import Archive, is_eligible
from dgm_operator.engine.dedupe import files_digest
from dgm_operator.engine.proposers import AgentContext, ParametersProposer, current_value, trial_params
from dgm_operator.engine.scoring import fitness, rank_decision
from dgm_operator.engine.selection import select_parents
from dgm_operator.engine.types import CandidateRecord, MetricSpec, Phase, SearchParam, SelectionMethod

DIM = 4
FILE = "params.json"
SPECS = (MetricSpec("quality", "maximize"),)
START = 0.3
K_CHILDREN = 4
STAGE_COST = 0.2
STAGE_NOISE = 0.05
STAGE_TOLERANCE = 0.05
TARGET_FRACTION = 0.95
ETA = 3.0
MAX_DUPLICATES = 50  # consecutive duplicate proposals before a run gives up (the space is exhausted)
DEFAULT_METHOD = ArchiveSpec().parent_selection.value
SELECTION_METHODS = tuple(m.value for m in SelectionMethod)
LANDSCAPES = ("smooth", "deceptive", "noisy", "rugged", "sample-agent")

Params = Mapping[str, Any]


@dataclass
class Landscape:
    """A search problem: the interface of ``--landscape MODULE:CALLABLE``.

    CALLABLE(seed: int) returns a Landscape (the seed draws the instance, e.g. an optimum's
    position). `space` gives the dimensions and their bounds (:class:`SearchParam`: ``float``
    or ``int`` with ``min``/``max``, ``choice`` with ``choices``, ``bool``; :func:`box` builds a
    float box). `quality(params, rng)` takes the parameter values by key and a seeded RNG
    (for noise) and returns (observed, true) quality, higher is better: the search sees the
    observed value, the report judges by the true one. Optional: `start` values (default: the
    middle of each range, the first choice, False), `bounds` (the known range of quality, for
    the DGM paper's normalisation), `optimum` (the best true quality, for the reach-95 %
    column), `cheap` (the cheap stage's observation; default: observed quality with extra
    N(0, 0.05 x range) noise) and `cheap_cost` (its cost in full evaluations).
    """

    name: str
    space: Sequence[SearchParam]
    quality: Callable[[Params, random.Random], tuple[float, float]]
    start: Params | None = None
    bounds: tuple[float, float] | None = None
    optimum: float | None = None
    cheap: Callable[[Params, random.Random], float] | None = None
    cheap_cost: float = STAGE_COST
    files: Mapping[str, str] = field(default_factory=dict)  # other files of the workspace

    def true(self, x: Sequence[float] | Params) -> float:
        params = x if isinstance(x, Mapping) else {p.key: v for p, v in zip(self.space, x)}
        return self.quality(params, random.Random(0))[1]

    def check(self) -> None:
        if not self.space:
            raise ValueError(f"landscape {self.name}: space must name at least one parameter")
        if len({p.key for p in self.space}) != len(self.space):
            raise ValueError(f"landscape {self.name}: parameter keys must be unique")
        if self.bounds is not None and not self.bounds[1] > self.bounds[0]:
            raise ValueError(f"landscape {self.name}: bounds must be (lo, hi) with hi > lo")
        if not self.cheap_cost > 0:
            raise ValueError(f"landscape {self.name}: cheap_cost must be > 0")


def box(dim: int, lo: float = 0.0, hi: float = 1.0, file: str = FILE) -> tuple[SearchParam, ...]:
    """A float box [lo, hi]^dim with keys x0 .. x{dim-1} (in `file`, a JSON file by default)."""
    return tuple(SearchParam(file=file, key=f"x{i}", type="float", min=lo, max=hi) for i in range(dim))


def _xs(params: Params) -> list[float]:
    return [float(params[f"x{i}"]) for i in range(DIM)]


def _bump(center: Sequence[float]) -> Callable[[Sequence[float]], float]:
    def f(x: Sequence[float]) -> float:
        return math.exp(-sum((a - c) ** 2 for a, c in zip(x, center)) / (2 * 0.3 ** 2))
    return f


def _trap(x: Sequence[float]) -> float:
    return statistics.fmean(0.8 * (1 - u / 0.6) if u < 0.6 else (u - 0.6) / 0.4 for u in x)


def _nk(seed: int, n: int = 16, k: int = 4) -> Landscape:
    import numpy as np

    rng = np.random.default_rng(seed)
    neighbours = [np.concatenate(([i], rng.choice([j for j in range(n) if j != i], k, replace=False)))
                  for i in range(n)]
    tables = rng.random((n, 2 ** (k + 1)))
    # exact range by enumeration (2^16 configurations, vectorised)
    allx = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(np.int64)
    total = np.zeros(2 ** n)
    weights = 2 ** np.arange(k + 1)
    for i in range(n):
        total += tables[i][allx[:, neighbours[i]] @ weights]
    total /= n
    lo, hi = float(total.min()), float(total.max())
    keys = [f"b{i:02d}" for i in range(n)]

    def quality(params: Params, _rng: random.Random) -> tuple[float, float]:
        bits = np.array([1 if params[key] else 0 for key in keys])
        value = sum(tables[i][int(bits[neighbours[i]] @ weights)] for i in range(n)) / n
        q = (float(value) - lo) / (hi - lo)
        return q, q

    space = tuple(SearchParam(file=FILE, key=key, type="bool") for key in keys)
    return Landscape("rugged", space, quality, start={key: False for key in keys}, bounds=(0.0, 1.0),
                     optimum=1.0)


def make_landscape(name: str, seed: int) -> Landscape:
    rng = random.Random(f"landscape-{name}-{seed}")
    start = {f"x{i}": START for i in range(DIM)}
    if name in ("smooth", "noisy"):
        true = _bump([rng.uniform(0.15, 0.85) for _ in range(DIM)])
        sd = 0.05 if name == "noisy" else 0.0

        def quality(params: Params, noise: random.Random) -> tuple[float, float]:
            t = true(_xs(params))
            return t + (noise.gauss(0.0, sd) if sd else 0.0), t

        return Landscape(name, box(DIM), quality, start=start, bounds=(0.0, 1.0), optimum=1.0)
    if name == "deceptive":
        def trap(params: Params, _noise: random.Random) -> tuple[float, float]:
            t = _trap(_xs(params))
            return t, t

        return Landscape(name, box(DIM), trap, start=start, bounds=(0.0, 1.0), optimum=1.0)
    if name == "rugged":
        return _nk(seed)
    if name == "sample-agent":
        return sample_agent_landscape()
    raise ValueError(f"unknown landscape {name!r} (known: {', '.join(LANDSCAPES)}; or MODULE:CALLABLE)")


# --- the sample agent -------------------------------------------------------------------

SAMPLE_SPECS = (MetricSpec("accuracy", "maximize", 1.0), MetricSpec("response_time", "minimize", 0.3),
                MetricSpec("error_rate", "minimize", 0.5), MetricSpec("memory_usage", "minimize", 0.2))
_SAMPLE_CACHE: dict[tuple[Any, ...], dict[str, dict[str, float]]] = {}


class _FrozenClock:
    """Stands in for the sample agent's `time` module: perf_counter never moves."""

    @staticmethod
    def perf_counter() -> float:
        return 0.0


def sample_agent_space() -> tuple[SearchParam, ...]:
    """The quickstart DGMAgent's search space (examples/quickstart/dgmagent.yaml)."""
    c = "config.yaml"
    return (
        SearchParam(c, "retrieval.scorer", "choice", choices=("overlap", "tfidf", "bm25")),
        SearchParam(c, "retrieval.top_k", "int", 1, 12, 1),
        SearchParam(c, "retrieval.chunk_size", "int", 1, 4, 1),
        SearchParam(c, "retrieval.chunk_overlap", "int", 0, 2, 1),
        SearchParam(c, "retrieval.min_score", "float", 0.0, 5.0, 0.5),
        SearchParam(c, "text.lowercase", "bool"),
        SearchParam(c, "text.stemming", "bool"),
        SearchParam(c, "text.stopwords", "bool"),
        SearchParam(c, "text.ngrams", "int", 1, 3, 1),
    )


def _sample_metrics(files: Mapping[str, str], key: tuple[Any, ...]) -> dict[str, dict[str, float]]:
    if key not in _SAMPLE_CACHE:
        from dgm_dev.sample_agent import agent as agent_module
        from dgm_dev.sample_agent.bench import run_bench

        with tempfile.TemporaryDirectory(prefix="dgm-bench-") as tmp:
            for name, text in files.items():
                Path(tmp, name).write_text(text)
            saved = agent_module.time
            agent_module.time = _FrozenClock  # type: ignore[assignment]
            try:
                _SAMPLE_CACHE[key] = {subset: run_bench(tmp, subset, 0)["metrics"] for subset in ("full", "quick")}
            finally:
                agent_module.time = saved
    return _SAMPLE_CACHE[key]


def sample_agent_landscape() -> Landscape:
    from dgm_dev.sample_agent.agent import default_workspace

    ws = default_workspace()
    base = {name: (ws / name).read_text() for name in ("config.yaml", "ranker.py")}
    space = sample_agent_space()
    start = {p.key: current_value(p, base) for p in space}

    def metrics(params: Params) -> dict[str, dict[str, float]]:
        files = dict(base)
        files["config.yaml"] = configfiles.set_values("config.yaml", base["config.yaml"], dict(params))
        return _sample_metrics(files, tuple(params[p.key] for p in space))

    reference = metrics(start)

    def quality(params: Params, _rng: random.Random) -> tuple[float, float]:
        q = fitness(metrics(params)["full"], reference["full"], SAMPLE_SPECS)
        return q, q

    def cheap(params: Params, _rng: random.Random) -> float:
        return fitness(metrics(params)["quick"], reference["quick"], SAMPLE_SPECS)

    return Landscape("sample-agent", space, quality, start=start, cheap=cheap, cheap_cost=0.25,
                     files={"ranker.py": base["ranker.py"]})


def load_landscape(spec: str, seed: int) -> Landscape:
    """``MODULE:CALLABLE`` -> CALLABLE(seed), checked to be a Landscape."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--landscape {spec!r}: expected MODULE:CALLABLE")
    factory = getattr(importlib.import_module(module_name), attr)
    land = factory(seed)
    if not isinstance(land, Landscape):
        raise ValueError(f"--landscape {spec}: {attr}(seed) returned {type(land).__name__}, not a Landscape")
    land.check()
    return land


# --- runs -------------------------------------------------------------------------------

@dataclass
class RunResult:
    best: float  # true quality of the incumbent at the end of the budget
    trace: list[tuple[float, float]] = field(default_factory=list)  # (compute, incumbent true quality)
    parents: int = 0  # distinct parents used
    duplicates: int = 0  # duplicate proposals skipped
    exhausted: bool = False  # stopped early: MAX_DUPLICATES duplicates in a row

    def compute_to(self, target: float) -> float | None:
        for compute, quality in self.trace:
            if quality >= target - 1e-12:
                return compute
        return None

    def best_at(self, compute: float) -> float:
        """True quality of the incumbent after `compute` (-inf before the first evaluation)."""
        i = bisect.bisect_right(self.trace, compute + 1e-9, key=lambda t: t[0])
        return self.trace[i - 1][1] if i else -math.inf


def _start_files(land: Landscape) -> dict[str, str]:
    start = {p.key: current_value(p, {}) for p in land.space}
    start.update(land.start or {})
    files = dict(land.files)
    by_file: dict[str, dict[str, Any]] = {}
    for p in land.space:
        by_file.setdefault(p.file, {})[p.key] = start[p.key]
    for name, values in by_file.items():
        empty = "{}\n" if name.endswith(".json") else ""
        files[name] = configfiles.set_values(name, files.get(name, empty), values)
    return files


def _params(land: Landscape, files: Mapping[str, str]) -> dict[str, Any]:
    return {p.key: current_value(p, files) for p in land.space}


def _unit(param: SearchParam, value: Any) -> float:
    """A parameter value mapped to [0, 1] (bools 0/1, choices by index)."""
    if param.type.value == "bool":
        return 1.0 if value else 0.0
    if param.type.value == "choice":
        return param.choices.index(value) / max(1, len(param.choices) - 1)
    return (float(value) - float(param.min)) / (param.span or 1.0)  # type: ignore[arg-type]


def subset_field(land: Landscape, seed: int, components: int = 8) -> Callable[[Params], float]:
    """The cheap stage's error of a *fixed* task subset: a smooth random field of unit
    variance over the (normalised) parameters, drawn per landscape instance. Nearby
    configurations get nearly the same error, so a child and its parent measured on the same
    subset differ by about their true difference (the paired comparison the operator makes)."""
    rng = random.Random(f"subset-{land.name}-{seed}")
    waves = [([rng.gauss(0.0, 1.5) for _ in land.space], rng.uniform(0, 2 * math.pi)) for _ in range(components)]
    scale = math.sqrt(2.0 / components)

    def error(params: Params) -> float:
        u = [_unit(p, params[p.key]) for p in land.space]
        return scale * sum(math.sin(2 * math.pi * sum(f * x for f, x in zip(freq, u)) + phase)
                           for freq, phase in waves)

    return error


def run_archive(method: str, land: Landscape, budget: float, seed: int, staging: str | None = None,
                normalise: str = "bounds", sampler: str = "mutation", eta: float = ETA,
                cheap_model: str = "subset") -> RunResult:
    """One run of the archive loop; `staging` None (one full stage), "rank" or "threshold"."""
    rng = random.Random(f"search-{seed}-{method}-{staging}-{sampler}")
    noise = random.Random(f"noise-{seed}-{land.name}-{method}-{staging}-{sampler}")
    proposer = ParametersProposer(sampler=sampler)
    base_files = _start_files(land)
    span = (land.bounds[1] - land.bounds[0]) if land.bounds else 1.0

    def observe(files: Mapping[str, str]) -> tuple[float, float]:
        return land.quality(_params(land, files), noise)

    subset = subset_field(land, seed) if cheap_model == "subset" else None

    def observe_cheap(files: Mapping[str, str]) -> float:
        params = _params(land, files)
        if land.cheap is not None:
            return land.cheap(params, noise)
        if subset is not None:
            return land.quality(params, noise)[0] + STAGE_NOISE * span * subset(params)
        return land.quality(params, noise)[0] + noise.gauss(0.0, STAGE_NOISE * span)

    q0, t0 = observe(base_files)
    reference = {"quality": q0}
    baseline = CandidateRecord("baseline", phase=Phase.APPLIED, metrics=reference,
                               score=fitness(reference, reference, SPECS), is_baseline=True)
    bounds = None
    if normalise == "bounds" and land.bounds is not None:
        bounds = (fitness({"quality": land.bounds[0]}, reference, SPECS),
                  fitness({"quality": land.bounds[1]}, reference, SPECS))
    files = {"baseline": base_files}
    truth = {"baseline": t0}
    quality = {"baseline": q0}
    cheap_score: dict[str, float] = {}
    digests = {files_digest(base_files): "baseline"}
    records: list[CandidateRecord] = []
    compute = 1.0
    if staging:
        compute += land.cheap_cost
        cheap_score["baseline"] = observe_cheap(base_files)
    result = RunResult(best=t0, trace=[(compute, t0)])
    incumbent = baseline
    gains: list[float] = []
    parents: set[str] = set()
    point: dict[str, dict[str, Any]] = {}  # trial parameters by name (the Optuna proposer's history)
    seq = 0
    in_a_row = 0
    while compute < budget - 1e-9 and not result.exhausted:
        archive = Archive(baseline, records)
        for parent in select_parents(archive, method, K_CHILDREN, rng, bounds=bounds):
            if compute >= budget - 1e-9:
                break
            trials = []
            if sampler != "mutation":
                for r in (baseline, *records):
                    if is_eligible(r):
                        if r.name not in point:
                            point[r.name] = trial_params(land.space, files[r.name])
                        trials.append((point[r.name], float(r.score)))  # type: ignore[arg-type]
            ctx = AgentContext(agent_name="bench", files=base_files, metrics=SPECS, search_space=tuple(land.space),
                               baseline_metrics=reference, parent=parent, parent_files=files[parent],
                               parent_metrics={"quality": quality[parent]}, trials=trials)
            draft = proposer.propose(ctx, rng)
            child_files = {**files[parent], **draft.changes}
            digest = files_digest(child_files)
            if digest in digests:
                # decided DuplicateCandidate, as the operator does: in the archive, never a parent
                seq += 1
                records.append(CandidateRecord(f"c{seq}", parent=parent, phase=Phase.REJECTED,
                                               reason="DuplicateCandidate", created=seq))
                result.duplicates += 1
                in_a_row += 1
                if in_a_row >= MAX_DUPLICATES:
                    result.exhausted = True
                    break
                continue
            in_a_row = 0
            seq += 1
            name = f"c{seq}"
            digests[digest] = name
            parents.add(parent)
            record = CandidateRecord(name, parent=parent, created=seq)
            files[name] = child_files
            if staging:
                compute += land.cheap_cost
                cheap = observe_cheap(child_files)
                cheap_score[name] = cheap
                gain = cheap - cheap_score[parent]
                if staging == "rank":
                    promoted = rank_decision(0, gain, gains, 2, eta).action != "stop"
                    gains.append(gain)
                else:
                    promoted = gain >= -STAGE_TOLERANCE * span
                if not promoted:
                    estimate = quality[parent] + gain
                    record.phase, record.reason, record.stage_reached = Phase.REJECTED, "StageThresholdNotMet", 0
                    record.metrics = {"quality": estimate}
                    record.score = fitness(record.metrics, reference, SPECS)
                    records.append(record)
                    truth[name], quality[name] = land.true(_params(land, child_files)), estimate
                    continue
            compute += 1.0
            q, t = observe(child_files)
            record.metrics = {"quality": q}
            record.score = fitness(record.metrics, reference, SPECS)
            record.stage_reached = 1 if staging else 0
            improved = q > quality[parent]
            record.phase = Phase.VALIDATED if improved else Phase.REJECTED
            record.reason = "ImprovementValidated" if improved else "InsufficientImprovement"
            records.append(record)
            truth[name], quality[name] = t, q
            if record.score > float(incumbent.score):  # type: ignore[arg-type]
                incumbent = record
            result.trace.append((compute, truth[incumbent.name]))
    result.best = truth[incumbent.name]
    result.parents = len(parents)
    return result


def run_tpe(land: Landscape, budget: int, seed: int) -> RunResult:
    """Optuna's TPE alone (multivariate), the start enqueued as its first trial."""
    import optuna
    from dgm_operator.engine.sampling import distributions, param_name

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    noise = random.Random(f"noise-{seed}-{land.name}-tpe")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dists = distributions(land.space)
    start = _params(land, _start_files(land))
    study.enqueue_trial({param_name(p): start[p.key] for p in land.space})
    truth: dict[int, float] = {}
    result = RunResult(best=0.0)
    best_value, best_number = -math.inf, -1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(int(budget)):
            trial = study.ask(dists)
            params = {p.key: trial.params[param_name(p)] for p in land.space}
            observed, truth[trial.number] = land.quality(params, noise)
            study.tell(trial, observed)
            if observed > best_value:
                best_value, best_number = observed, trial.number
            result.trace.append((float(trial.number + 1), truth[best_number]))
    result.best = truth[best_number]
    return result


# --- statistics -------------------------------------------------------------------------

def _stats(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test p-value (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(a: Sequence[float], b: Sequence[float], eps: float = 1e-9) -> dict[str, Any]:
    """`a` against `b`, seed by seed: wins, losses, ties and the sign test's p-value."""
    wins = sum(x > y + eps for x, y in zip(a, b))
    losses = sum(x < y - eps for x, y in zip(a, b))
    return {"wins": wins, "losses": losses, "ties": len(a) - wins - losses, "sign_p": sign_test(wins, losses)}


def _run(method: str, land: Landscape, budget: int, seed: int, default: str, normalise: str) -> RunResult:
    if method == "tpe":
        return run_tpe(land, budget, seed)
    if method.startswith("optuna"):
        sampler = method.partition("-")[2] or "tpe"
        return run_archive(default, land, budget, seed, normalise=normalise, sampler=sampler)
    return run_archive(method, land, budget, seed, normalise=normalise)


def run_bench(seeds: int, budget: int, landscapes: Sequence[str] = LANDSCAPES,
              methods: Sequence[str] = (*SELECTION_METHODS, "optuna", "tpe"), normalise: str = "bounds",
              default: str = DEFAULT_METHOD, staging: bool = True, eta: float = ETA,
              cheap_model: str = "subset", progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"seeds": seeds, "budget": budget, "k_children": K_CHILDREN, "default": default,
                           "normalise": normalise, "eta": eta, "cheap_model": cheap_model, "target_fraction": TARGET_FRACTION,
                           "search": {}, "staging": {}}
    methods = [default] + [m for m in methods if m != default]
    for name in landscapes:
        lands = [load_landscape(name, s) if ":" in name else make_landscape(name, s) for s in range(seeds)]
        label = lands[0].name if ":" in name else name
        optimum = lands[0].optimum
        target = None if optimum is None else TARGET_FRACTION * optimum
        out["search"][label] = {}
        bests: dict[str, list[float]] = {}
        default_runs: list[RunResult] = []
        for method in methods:
            started = time.monotonic()
            runs = [_run(method, lands[s], budget, s, default, normalise) for s in range(seeds)]
            if method == default:
                default_runs = runs
            bests[method] = [r.best for r in runs]
            reach = [r.compute_to(target) for r in runs] if target is not None else []
            reached = [c for c in reach if c is not None]
            mean, sd = _stats(bests[method])
            out["search"][label][method] = {
                "best_mean": mean, "best_stdev": sd,
                "reach95_fraction": (len(reached) / len(runs)) if target is not None else None,
                "evals_to_95_mean": statistics.fmean(reached) if reached else None,
                "parents_mean": statistics.fmean(r.parents for r in runs) if method != "tpe" else None,
                "duplicates_mean": statistics.fmean(r.duplicates for r in runs) if method != "tpe" else None,
                "default_vs": None if method == default else paired(bests[default], bests[method]),
            }
            if progress:
                progress(f"{label} {method}: {mean:.3f} ({time.monotonic() - started:.0f} s)")
        if not staging:
            continue
        goals = [u.best for u in default_runs]
        plain = [u.compute_to(g) for u, g in zip(default_runs, goals)]
        plain_mean = statistics.fmean(p for p in plain if p is not None)
        entry: dict[str, Any] = {"best_unstaged_mean": statistics.fmean(goals), "compute_unstaged_mean": plain_mean}
        for rule in ("rank", "threshold"):
            started = time.monotonic()
            staged = [run_archive(default, lands[s], 2 * budget, s, staging=rule, normalise=normalise, eta=eta,
                                  cheap_model=cheap_model) for s in range(seeds)]
            reach_c = [st.compute_to(g) for st, g in zip(staged, goals)]
            pairs = [(p, q) for p, q in zip(plain, reach_c) if p is not None and q is not None]
            all_seeds = statistics.fmean(2 * budget if q is None else q for q in reach_c)
            entry[rule] = {
                "best_at_equal_compute_mean": statistics.fmean(st.best_at(budget) for st in staged),
                "best_at_twice_compute_mean": statistics.fmean(st.best for st in staged),
                "reached_fraction": len(pairs) / seeds,
                "compute_mean_all_seeds": all_seeds,
                "compute_saved_all_seeds": 1 - all_seeds / plain_mean,
                "compute_saved_reached": (1 - statistics.fmean(q for _, q in pairs) / statistics.fmean(p for p, _ in pairs))
                if pairs else None,
                "equal_compute_vs_unstaged": paired([st.best_at(budget) for st in staged], goals),
            }
            if progress:
                progress(f"{label} staging {rule}: saved {entry[rule]['compute_saved_all_seeds']:.0%} "
                         f"({time.monotonic() - started:.0f} s)")
        out["staging"][label] = entry
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _p(vs: Mapping[str, Any] | None) -> str:
    if vs is None:
        return "(default)"
    star = " *" if vs["sign_p"] < 0.05 else ""
    return f"{vs['wins']}/{vs['losses']}/{vs['ties']}, p={vs['sign_p']:.2g}{star}"


def format_table(res: Mapping[str, Any]) -> str:
    """Markdown tables of a run_bench result."""
    d = res["default"]
    lines = [f"Search benchmark: {res['seeds']} seeds, budget {res['budget']} evaluations, k={res['k_children']} "
             f"children per generation, default selection `{d}`, normalisation {res['normalise']}.", "",
             f"| landscape | method | best (mean ± sd) | reach 95% | evals to 95% | parents | `{d}` vs it (W/L/T, sign p) |",
             "|---|---|---|---|---|---|---|"]
    for name, methods in res["search"].items():
        for method, r in methods.items():
            evals = "-" if r["evals_to_95_mean"] is None else f"{r['evals_to_95_mean']:.0f}"
            parents = "-" if r["parents_mean"] is None else f"{r['parents_mean']:.0f}"
            lines.append(f"| {name} | {method} | {r['best_mean']:.3f} ± {r['best_stdev']:.3f} | "
                         f"{_pct(r['reach95_fraction'])} | {evals} | {parents} | {_p(r['default_vs'])} |")
    if res["staging"]:
        lines += ["", f"Staged evaluation (`{d}`, eta {res['eta']:g}; compute in full evaluations, target = the "
                  "unstaged run's final best on the same seed, staged runs capped at 2 x budget):", "",
                  "| landscape | rule | compute unstaged | compute staged (all seeds) | saved (all seeds) | "
                  "reached | saved (reached only) | best at equal compute (unstaged) |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in res["staging"].items():
            for rule in ("rank", "threshold"):
                s = r[rule]
                lines.append(f"| {name} | {rule} | {r['compute_unstaged_mean']:.1f} | {s['compute_mean_all_seeds']:.1f} | "
                             f"{_pct(s['compute_saved_all_seeds'])} | {s['reached_fraction']:.0%} | "
                             f"{_pct(s['compute_saved_reached'])} | {s['best_at_equal_compute_mean']:.3f} "
                             f"({r['best_unstaged_mean']:.3f}) |")
    lines += ["", "W/L/T: seeds where the default's final true quality was above / below / equal to the method's "
              "(same landscape instance); * marks a two-sided sign test p < 0.05."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dgm bench", description="benchmarks of the engine")
    sub = parser.add_subparsers(dest="bench", required=True)
    search = sub.add_parser("search", help="parent selection, proposers and staged evaluation on landscapes")
    search.add_argument("--seeds", type=int, default=30)
    search.add_argument("--budget", type=int, default=200, help="evaluations per run (default 200)")
    search.add_argument("--landscapes", default=",".join(LANDSCAPES))
    search.add_argument("--landscape", action="append", default=[], metavar="MODULE:CALLABLE",
                        help="add a user landscape: CALLABLE(seed) -> dgm_dev.bench.search.Landscape")
    search.add_argument("--methods", default=",".join((*SELECTION_METHODS, "optuna", "tpe")),
                        help="selection methods, optuna[-tpe|-cmaes|-random] (the parameters proposer under "
                             "the default selection) and tpe (Optuna alone)")
    search.add_argument("--default", default=DEFAULT_METHOD, choices=SELECTION_METHODS,
                        help=f"the method the others are compared with (default: the API's, {DEFAULT_METHOD})")
    search.add_argument("--normalise", choices=("bounds", "minmax"), default="bounds")
    search.add_argument("--eta", type=float, default=ETA, help="rank-based staging: top 1/eta promoted")
    search.add_argument("--cheap-model", choices=("subset", "independent"), default="subset",
                        help="cheap stage of the synthetic landscapes: a fixed task subset (a smooth error field, "
                             "shared by parent and child) or independent N(0, 0.05) noise per observation")
    search.add_argument("--no-staging", action="store_true", help="skip the staged-evaluation runs")
    search.add_argument("--json", action="store_true", help="print machine-readable results")
    search.add_argument("--progress", action="store_true", help="log progress to stderr")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.seeds < 1 or args.budget < 2 or not args.eta > 1:
        parser.error("--seeds must be >= 1, --budget >= 2 and --eta > 1")
    landscapes = [s for s in args.landscapes.split(",") if s] + list(args.landscape)
    for name in landscapes:
        if ":" in name:
            try:
                load_landscape(name, 0)
            except Exception as exc:  # noqa: BLE001 - a user's module: say what went wrong
                parser.error(f"--landscape {name}: {type(exc).__name__}: {exc}")
        elif name not in LANDSCAPES:
            parser.error(f"unknown landscape {name!r} (known: {', '.join(LANDSCAPES)})")
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in SELECTION_METHODS and m != "tpe" and m not in ("optuna", "optuna-tpe", "optuna-cmaes",
                                                                     "optuna-random"):
            parser.error(f"unknown method {m!r}")
    started = time.monotonic()
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.progress else None
    res = run_bench(args.seeds, args.budget, landscapes, methods, args.normalise, args.default,
                    not args.no_staging, args.eta, args.cheap_model, log)
    res["seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(format_table(res))
        print(f"\n({res['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
