"""An Optuna study and its sampler as data, and rebuilt from data (no pickle in a checkpoint).

* **Trials**: every ``FrozenTrial`` as its number, state, values, times, params, distributions
  (Optuna's own JSON form), user and system attributes and intermediate values; rebuilt with
  ``optuna.trial.create_trial`` + ``Study.add_trial`` in the same order, so numbers and ids are the
  uninterrupted run's. The study's system and user attributes (NSGA-II/III keep their parent
  populations there) are data already.
* **CmaEsSampler** keeps its optimiser in trial system attributes as a pickle (hex, in chunks),
  which Optuna unpickles on the next ask. Those attributes are never stored: the optimiser is
  written as data (:mod:`evomerge.drivers.cma_state`) and re-encoded on load from the rebuilt
  optimiser, so what Optuna unpickles is what this process wrote.
* **Samplers**: a fresh sampler is built with the same options; then every random state reachable
  from it (``LazyRandomState`` / ``RandomState`` attributes of the sampler and of the Optuna objects
  it holds — its random sampler, NSGA's strategies, …, by attribute path) is restored, and for
  ``GPSampler`` the kernel parameters it warm-starts the next fit from. Everything else a sampler
  holds is its options or a cache recomputed from the trials.
"""

from __future__ import annotations

import datetime as _dt
import pickle
import re
from typing import Any

import numpy as np

from evomerge.drivers.cma_state import cma_data, cma_from_data
from evomerge.state import Reader, StateError, as_float, random_state_data, set_random_state

#: Trial system attributes that hold a pickled ``cmaes`` optimiser (prefix, chunk index).
_OPTIMIZER_KEY = re.compile(r"^(cma|sepcma|cmawm):optimizer:(\d+)$")
_CHUNK = 2045  # Optuna's limit on one system attribute (RDB storage)
_GP_CACHES = ("_gprs_cache_list", "_constraints_gprs_cache_list")


# -- trials -----------------------------------------------------------------------------------
def trials_data(trials) -> list[dict[str, Any]]:
    from optuna.distributions import distribution_to_json

    out = []
    for t in trials:
        system, optimizer = _split_optimizer(t.system_attrs)
        out.append(
            {
                "number": int(t.number),
                "state": t.state.name,
                "values": None if t.values is None else [float(v) for v in t.values],
                "datetime_start": None if t.datetime_start is None else t.datetime_start.isoformat(),
                "datetime_complete": None if t.datetime_complete is None else t.datetime_complete.isoformat(),
                "params": {k: float(v) for k, v in t.params.items()},
                "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
                "user_attrs": dict(t.user_attrs),
                "system_attrs": system,
                "cma_optimizer": optimizer,
                "intermediate_values": {int(k): float(v) for k, v in t.intermediate_values.items()},
            }
        )
    return out


def _split_optimizer(system_attrs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    chunks: dict[str, dict[int, str]] = {}
    plain = {}
    for key, value in system_attrs.items():
        m = _OPTIMIZER_KEY.match(key)
        if m:
            chunks.setdefault(m.group(1), {})[int(m.group(2))] = value
        else:
            plain[key] = value
    if not chunks:
        return plain, None
    (prefix, parts), *more = chunks.items()
    if more:
        raise TypeError("a trial holds optimisers of two CmaEsSampler kinds")
    # Optuna wrote this pickle in this process (or load_trials re-encoded it from data): trusted.
    optimizer = pickle.loads(bytes.fromhex("".join(parts[i] for i in range(len(parts)))))
    return plain, {"prefix": prefix, "optimizer": cma_data(optimizer)}


def add_trials(study, data: Any) -> None:
    """Rebuild the trials :func:`trials_data` wrote into the empty ``study``, in order."""
    import optuna
    from optuna.distributions import json_to_distribution

    if not isinstance(data, list):
        raise StateError(f"driver.trials: expected a list, got {type(data).__name__}")
    states = optuna.trial.TrialState
    for i, item in enumerate(data):
        where = f"driver.trials[{i}]"
        r = Reader(item, where)
        if r.int("number") != i:
            raise StateError(f"{where}.number: expected {i}, got {r.get('number')}")
        name = r.str("state")
        if name not in states.__members__:
            raise StateError(f"{where}.state: unknown trial state {name!r}")
        values = r.get("values")
        values = None if values is None else [as_float(v, f"{where}.values") for v in _list(values, where)]
        dists = r.sub("distributions").data
        try:
            distributions = {str(k): json_to_distribution(v) for k, v in dists.items()}
        except (TypeError, ValueError, KeyError) as exc:
            raise StateError(f"{where}.distributions: {exc}") from None
        params = {str(k): as_float(v, f"{where}.params.{k}") for k, v in r.sub("params").data.items()}
        system = dict(r.sub("system_attrs").data)
        pickled = [k for k in system if _OPTIMIZER_KEY.match(str(k))]
        if pickled:  # Optuna would unpickle these on the next ask: only cma_optimizer (data) may hold one
            raise StateError(f"{where}.system_attrs.{pickled[0]}: a pickled optimiser, which is never loaded")
        if r.get("cma_optimizer") is not None:
            opt = r.sub("cma_optimizer")
            prefix = opt.str("prefix")
            if prefix not in ("cma", "sepcma"):
                raise StateError(f"{where}.cma_optimizer.prefix: expected cma or sepcma, got {prefix!r}")
            text = pickle.dumps(cma_from_data(opt.get("optimizer"), f"{where}.cma_optimizer.optimizer")).hex()
            for k in range(0, len(text), _CHUNK):
                system[f"{prefix}:optimizer:{k // _CHUNK}"] = text[k : k + _CHUNK]
        try:
            trial = optuna.trial.create_trial(
                state=states[name],
                values=values,
                params=params,
                distributions=distributions,
                user_attrs=dict(r.sub("user_attrs").data),
                system_attrs=system,
                intermediate_values=r.int_map("intermediate_values", as_float),
            )
            trial.datetime_start = _time(r.str("datetime_start", optional=True), f"{where}.datetime_start")
            trial.datetime_complete = _time(r.str("datetime_complete", optional=True), f"{where}.datetime_complete")
            study.add_trial(trial)
        except ValueError as exc:  # Optuna's own checks of a trial
            raise StateError(f"{where}: {exc}") from None


def _list(v: Any, where: str) -> list:
    if not isinstance(v, (list, tuple)):
        raise StateError(f"{where}.values: expected a list, got {type(v).__name__}")
    return list(v)


def _time(text: str | None, where: str):
    if text is None:
        return None
    try:
        return _dt.datetime.fromisoformat(text)
    except ValueError:
        raise StateError(f"{where}: not a time: {text!r}") from None


# -- samplers ---------------------------------------------------------------------------------
def _random_states(obj: Any, path: str = "", seen: set[int] | None = None):
    """(attribute path, LazyRandomState or RandomState) reachable from ``obj`` through Optuna objects."""
    seen = set() if seen is None else seen
    seen.add(id(obj))
    for name, value in sorted(vars(obj).items()):
        where = f"{path}.{name}" if path else name
        if isinstance(value, np.random.RandomState) or type(value).__name__ == "LazyRandomState":
            yield where, value
        elif (
            type(value).__module__.startswith("optuna.")
            and hasattr(value, "__dict__")
            and not isinstance(value, type)
            and id(value) not in seen
        ):
            yield from _random_states(value, where, seen)


def _rng_of(holder: Any) -> np.random.RandomState:
    return holder if isinstance(holder, np.random.RandomState) else holder.rng


def sampler_data(sampler: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "class": type(sampler).__name__,
        "rngs": {path: random_state_data(_rng_of(h)) for path, h in _random_states(sampler)},
    }
    if _is_gp(sampler):
        out["gp"] = {name: _gp_cache_data(getattr(sampler, name, None)) for name in _GP_CACHES}
    return out


def load_sampler_data(sampler: Any, data: Any) -> None:
    """Restore into the fresh ``sampler`` (built with the same options) what :func:`sampler_data` kept."""
    r = Reader(data, "driver.sampler")
    if r.str("class") != type(sampler).__name__:
        raise StateError(f"driver.sampler.class: expected {type(sampler).__name__}, got {r.get('class')!r}")
    rngs = r.sub("rngs")
    holders = dict(_random_states(sampler))
    if set(rngs.data) != set(holders):
        odd = ", ".join(sorted(set(rngs.data) ^ set(holders)))
        raise StateError(f"driver.sampler.rngs: random states {odd} do not belong to a {type(sampler).__name__}")
    for path, holder in holders.items():
        set_random_state(_rng_of(holder), rngs.get(path), f"driver.sampler.rngs.{path}")
    if _is_gp(sampler):
        gp = r.sub("gp")
        for name in _GP_CACHES:
            setattr(sampler, name, _gp_cache_from(gp.get(name), f"driver.sampler.gp.{name}"))


def _is_gp(sampler: Any) -> bool:
    return type(sampler).__name__ == "GPSampler"


def _gp_cache_data(cache: Any) -> list[dict[str, Any]] | None:
    if cache is None:
        return None
    return [
        {
            "inverse_squared_lengthscales": g.inverse_squared_lengthscales.detach().cpu().numpy().astype(np.float64),
            "kernel_scale": float(g.kernel_scale),
            "noise_var": float(g.noise_var),
        }
        for g in cache
    ]


def _gp_cache_from(data: Any, where: str) -> list | None:
    """GP regressors that carry only the kernel parameters a fit warm-starts from."""
    if data is None:
        return None
    if not isinstance(data, list):
        raise StateError(f"{where}: expected a list, got {type(data).__name__}")
    import torch
    from optuna._gp.gp import GPRegressor

    out = []
    for i, item in enumerate(data):
        r = Reader(item, f"{where}[{i}]")
        lengthscales = r.array("inverse_squared_lengthscales", (None,))
        d = lengthscales.shape[0]
        out.append(
            GPRegressor(
                is_categorical=torch.zeros(d, dtype=torch.bool),
                X_train=torch.zeros((0, d), dtype=torch.float64),
                y_train=torch.zeros(0, dtype=torch.float64),
                inverse_squared_lengthscales=torch.from_numpy(lengthscales),
                kernel_scale=torch.tensor(r.float("kernel_scale"), dtype=torch.float64),
                noise_var=torch.tensor(r.float("noise_var"), dtype=torch.float64),
            )
        )
    return out


__all__ = ["add_trials", "load_sampler_data", "sampler_data", "trials_data"]
