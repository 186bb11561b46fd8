"""Search drivers: CMA-ES, M2N2, Optuna samplers and random search behind one protocol.

``make_driver(name, space, *, n_objectives=1, seed=0, **options)`` builds one by name; options
are each driver's keyword arguments (see the class docstrings). Protocol: :mod:`.base`.
"""

from __future__ import annotations

import inspect
from typing import Any

from evomerge.drivers.base import Candidate, Driver, Outcome
from evomerge.errors import ConfigError
from evomerge.registry import Registry

# Imported lazily so that `import evomerge.drivers` stays cheap.
DRIVERS = Registry("driver")
DRIVERS.register("cmaes", "evomerge.drivers.cmaes_driver:CMAESDriver")
DRIVERS.register("m2n2", "evomerge.drivers.m2n2:M2N2Driver")
DRIVERS.register("optuna", "evomerge.drivers.optuna_driver:OptunaDriver")
DRIVERS.register("random", "evomerge.drivers.random_search:RandomDriver")


def driver_names() -> list[str]:
    return DRIVERS.names()


def driver_class(name: str) -> type:
    """The driver class registered as ``name``; an unknown name raises a one-line ConfigError."""
    return DRIVERS.get(name)


def driver_options(name: str) -> list[str]:
    """The option names ``make_driver(name, ...)`` accepts besides n_objectives and seed."""
    params = inspect.signature(driver_class(name).__init__).parameters
    return [p for p in params if p not in ("self", "space", "n_objectives", "seed")]


def make_driver(name: str, space: Any, *, n_objectives: int = 1, seed: int = 0, **options: Any) -> Driver:
    """Build the driver ``name`` over ``space``; unknown names or options raise a one-line ConfigError."""
    cls = driver_class(name)
    known = driver_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"driver {name!r}: unknown option {unknown[0]!r} (known: {', '.join(known)})")
    return cls(space, n_objectives=n_objectives, seed=seed, **options)


__all__ = ["DRIVERS", "Candidate", "Driver", "Outcome", "driver_class", "driver_names", "driver_options", "make_driver"]
