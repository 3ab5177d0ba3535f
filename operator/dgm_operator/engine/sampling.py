"""Optuna-backed parameter proposals: ask-and-tell over a study rebuilt from the archive.

The ``parameters`` proposer does not keep an Optuna study of its own: every evaluated
candidate in the archive (the baseline included) *is* a trial, its parameter values read
from its merged file set and its value its fitness. Each proposal builds an in-memory study
from those trials (``add_trials``), asks the sampler for one new point and returns it. So
there is no second store to keep in sync with the candidates, an operator restart loses
nothing, and a candidate created by hand counts like any other.

Samplers (``spec.proposer.sampler``):

* ``tpe`` (default): Optuna's TPESampler, multivariate, seeded; random for the first 10 trials.
* ``cmaes``: Optuna's CmaEsSampler warm-started (WS-CMA-ES, ``source_trials``) from the
  archive's trials. Since the archive is the only store, the CMA-ES state is not carried
  between proposals: each one samples from the distribution fitted to the archive's best
  trials (random until the archive holds 10). Choice and bool parameters are sampled by Optuna's independent (random) sampler,
  as CMA-ES has no categorical dimensions. Needs the ``cmaes`` package.
* ``random``: Optuna's RandomSampler (a baseline).

A suggestion that equals an archived candidate's values is told back with that candidate's
known value and the sampler is asked again (at most ``MAX_ASKS`` times), so the proposer does
not waste an evaluation on a duplicate when a new point exists. Deterministic under a seed.
Optuna is imported lazily, only when a proposal is made.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

from .types import ParameterSampler, ParamType, SearchParam

MAX_ASKS = 20
STARTUP = 10

Trial = tuple[Mapping[str, Any], float]  # (parameter name -> value, fitness)


class SamplingError(ValueError):
    pass


def param_name(param: SearchParam) -> str:
    """The trial parameter name of `param`: ``file:key``."""
    return f"{param.file}:{param.key}"


def distributions(space: Sequence[SearchParam]) -> dict[str, Any]:
    """Optuna distributions of the search space (bools as the categorical [False, True])."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for p in space:
        name = param_name(p)
        if p.type is ParamType.BOOL:
            out[name] = CategoricalDistribution([False, True])
        elif p.type is ParamType.CHOICE:
            out[name] = CategoricalDistribution(list(p.choices))
        elif p.type is ParamType.INT:
            lo, hi = int(math.ceil(float(p.min))), int(math.floor(float(p.max)))  # type: ignore[arg-type]
            step = int(p.step) if p.step and float(p.step).is_integer() and p.step >= 1 else 1
            hi = lo + (hi - lo) // step * step
            out[name] = IntDistribution(lo, max(lo, hi), step=step)
        else:
            lo_f, hi_f = float(p.min), float(p.max)  # type: ignore[arg-type]
            if p.step:
                hi_f = lo_f + math.floor((hi_f - lo_f) / p.step + 1e-9) * p.step
                out[name] = FloatDistribution(lo_f, max(lo_f, hi_f), step=float(p.step))
            else:
                out[name] = FloatDistribution(lo_f, hi_f)
    return out


def _make_sampler(kind: ParameterSampler, seed: int, trials: list[Any], dists: Mapping[str, Any]) -> Any:
    import optuna

    if kind is ParameterSampler.TPE:
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=STARTUP)
    if kind is ParameterSampler.RANDOM:
        return optuna.samplers.RandomSampler(seed=seed)
    if kind is ParameterSampler.CMAES:
        try:
            import cmaes  # noqa: F401
        except ImportError as exc:  # pragma: no cover - cmaes is a dependency
            raise SamplingError("proposer.sampler cmaes needs the 'cmaes' package") from exc
        from optuna.distributions import CategoricalDistribution

        numeric = {n: d for n, d in dists.items() if not isinstance(d, CategoricalDistribution)}
        source = [optuna.trial.create_trial(params={n: t.params[n] for n in numeric}, distributions=numeric,
                                            value=t.value) for t in trials] if numeric else []
        if len(source) < STARTUP:  # WS-CMA-ES fits its prior on the best tenth of >= 10 trials
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.CmaEsSampler(
            seed=seed, source_trials=source, n_startup_trials=1, warn_independent_sampling=False,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed))
    raise SamplingError(f"proposer.sampler {kind.value!r} is not an Optuna sampler")


def _key(params: Mapping[str, Any], names: Sequence[str]) -> tuple[Any, ...]:
    return tuple(round(v, 12) if isinstance(v, float) else v for v in (params.get(n) for n in names))


def suggest(space: Sequence[SearchParam], trials: Sequence[Trial], seed: int,
            sampler: ParameterSampler | str = ParameterSampler.TPE) -> dict[str, Any]:
    """One new point (parameter name -> value) from `sampler`, given the archive's `trials`.

    Trials with a parameter outside the space or a non-finite value are left out (the space
    may have changed since they were evaluated); so are the missing values of a parameter
    added later (the trial is dropped). Raises SamplingError for an empty space.
    """
    import optuna

    kind = ParameterSampler(sampler)
    if not space:
        raise SamplingError("proposer.searchSpace is empty: nothing to sample")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's notice that it trimmed a range to its step
        dists = distributions(space)
    names = list(dists)
    frozen: list[Any] = []
    known: dict[tuple[Any, ...], float] = {}
    for params, value in trials:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            continue
        picked = {}
        for name, dist in dists.items():
            if name not in params:
                break
            v = params[name]
            try:
                if not dist._contains(dist.to_internal_repr(v)):
                    break
            except (ValueError, TypeError):
                break
            picked[name] = v
        else:
            frozen.append(optuna.trial.create_trial(params=picked, distributions=dists, value=float(value)))
            known.setdefault(_key(picked, names), float(value))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(direction="maximize", sampler=_make_sampler(kind, seed, frozen, dists))
        study.add_trials(frozen)
        point: dict[str, Any] = {}
        for _ in range(MAX_ASKS):
            trial = study.ask(dists)
            point = dict(trial.params)
            seen = known.get(_key(point, names))
            if seen is None:
                break
            study.tell(trial, seen)  # a duplicate of an archived candidate: its value is known
    return point
