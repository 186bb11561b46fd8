"""A ``cmaes`` optimiser (``CMA`` or ``SepCMA``) as data, and rebuilt from data.

:func:`cma_data` keeps every attribute of the optimiser — mean m, covariance C (or its diagonal),
step size σ, the evolution paths p_σ and p_c, the generation counter, the cached eigen
decomposition, the termination history, the learning-rate-adaptation state — and the state of its
``RandomState``. :func:`cma_from_data` builds a fresh optimiser of the same class and population
size with the package's own constructor, then sets exactly the attributes that constructor
created, each checked against the fresh value's type (and shape, for arrays): nothing is unpickled,
no other attribute can be set, and an optimiser restored from its data continues bit for bit like
the original (the copy of C is exact, unlike the package's pickle, which keeps one triangle).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evomerge.state import Reader, StateError, as_array, kind, random_state_data, set_random_state

#: Attributes a fresh optimiser holds as ``None`` that become arrays later: their shapes, in n.
_NULLABLE = {"_B": ("n", "n"), "_D": ("n",), "_bounds": ("n", 2)}


def _classes() -> dict[str, type]:
    import cmaes

    return {"CMA": cmaes.CMA, "SepCMA": cmaes.SepCMA}


def cma_data(optimizer: Any) -> dict[str, Any]:
    """``optimizer`` (a ``cmaes.CMA`` / ``cmaes.SepCMA``) as data."""
    name = type(optimizer).__name__
    if name not in _classes():
        raise TypeError(f"cannot store a cmaes.{name} as data (only CMA and SepCMA)")
    attrs = {}
    for key, value in vars(optimizer).items():
        if key == "_rng":
            continue
        attrs[key] = value.copy() if isinstance(value, np.ndarray) else value
    return {"class": name, "attrs": attrs, "rng": random_state_data(optimizer._rng)}


def cma_from_data(data: Any, where: str) -> Any:
    """The optimiser :func:`cma_data` described; :class:`StateError` when the data is not one."""
    r = Reader(data, where)
    name = r.str("class")
    classes = _classes()
    if name not in classes:
        raise StateError(f"{where}.class: expected one of {', '.join(classes)}, got {name!r}")
    attrs = r.sub("attrs")
    n = attrs.int("_n_dim", low=1)
    kwargs = {"population_size": attrs.int("_popsize", low=2), "n_max_resampling": attrs.int("_n_max_resampling")}
    if name == "CMA":
        kwargs["lr_adapt"] = attrs.bool("_lr_adapt")
    try:
        fresh = classes[name](mean=np.zeros(n), sigma=1.0, **kwargs)
    except (AssertionError, ValueError) as exc:
        raise StateError(f"{where}: cannot rebuild a {name} of dimension {n} ({exc})") from None
    mine = vars(fresh)
    stored = set(attrs.data) | {"_rng"}
    if stored != set(mine):
        odd = sorted(stored ^ set(mine))
        raise StateError(f"{where}.attrs: attributes {', '.join(odd)} do not belong to a cmaes.{name}")
    for key, now in list(mine.items()):
        if key == "_rng":
            continue
        setattr(fresh, key, _checked(attrs.get(key), now, f"{where}.attrs.{key}", key, n))
    set_random_state(fresh._rng, r.get("rng"), f"{where}.rng")
    return fresh


def _checked(value: Any, fresh: Any, where: str, key: str, n: int) -> Any:
    """``value`` when it has the type (and shape) of the fresh optimiser's ``fresh``."""
    if isinstance(fresh, np.ndarray):
        return as_array(value, where, fresh.shape, dtype=fresh.dtype)
    if fresh is None:
        if value is None:
            return None
        shape = _NULLABLE.get(key)
        if shape is None:
            raise StateError(f"{where}: expected None, got {kind(value)}")
        return as_array(value, where, tuple(n if s == "n" else s for s in shape))
    if isinstance(fresh, bool):
        if not isinstance(value, bool):
            raise StateError(f"{where}: expected true or false, got {kind(value)}")
        return value
    if isinstance(fresh, (int, np.integer)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise StateError(f"{where}: expected an int, got {kind(value)}")
        return value
    if isinstance(fresh, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise StateError(f"{where}: expected a number, got {kind(value)}")
        return float(value)
    raise StateError(f"{where}: cmaes holds a {type(fresh).__name__} here, which a state cannot restore")


__all__ = ["cma_data", "cma_from_data"]
