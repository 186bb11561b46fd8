"""Search drivers: CMA-ES, mixed categorical CMA-ES (CatCMA), M2N2, Optuna samplers and random
search behind one protocol.

:data:`DRIVERS` names every driver class; each has ``Options`` (a pydantic model: the run
config's ``driver.options``) and ``multi_objective(options)``. Adding a driver is its module plus
one ``DRIVERS.register`` line here; the config's ``driver`` section picks its options up from the
registry. Protocol: :mod:`.base`.

* :func:`build_driver` builds the driver of a run config's ``driver`` section for a run with
  ``n_objectives`` objectives: a natively multi-objective driver sees all of them, any other one
  (``n_objectives=1``) the run's scalarisation.
* :func:`make_driver` builds one from Python: ``make_driver("cmaes", space, seed=0,
  population_size=8)``; options are validated as in the config (one-line ConfigError).
"""

from __future__ import annotations

from typing import Any

from evomerge.drivers.base import Candidate, Driver, Outcome
from evomerge.registry import Registry
from evomerge.validation import parse_options

# Lazy references keep `import evomerge.drivers` cheap.
DRIVERS = Registry("driver")
DRIVERS.register("cmaes", "evomerge.drivers.cmaes_driver:CMAESDriver")
DRIVERS.register("catcma", "evomerge.drivers.catcma_driver:CatCMADriver")
DRIVERS.register("m2n2", "evomerge.drivers.m2n2:M2N2Driver")
DRIVERS.register("optuna", "evomerge.drivers.optuna_driver:OptunaDriver")
DRIVERS.register("random", "evomerge.drivers.random_search:RandomDriver")


def driver_names() -> list[str]:
    return DRIVERS.names()


def driver_class(name: str) -> type:
    """The driver class registered as ``name``; an unknown name raises a one-line ConfigError."""
    return DRIVERS.get(name)


def driver_options(name: str) -> list[str]:
    """The option names of driver ``name`` (its ``Options`` fields)."""
    return list(driver_class(name).Options.model_fields)


def make_driver(name: str, space: Any, *, n_objectives: int = 1, seed: int = 0, **options: Any) -> Driver:
    """Build the driver ``name`` over ``space``; unknown names or options raise a one-line ConfigError."""
    cls = driver_class(name)
    return cls(
        space, parse_options(cls.Options, options, prefix="driver.options."), n_objectives=n_objectives, seed=seed
    )


def build_driver(section: Any, space: Any, *, n_objectives: int, seed: int) -> Driver:
    """The driver of a config ``driver`` section (``.name``, ``.options``) for a run with
    ``n_objectives`` objectives (told all of them only when it is natively multi-objective)."""
    cls = driver_class(section.name)
    n = int(n_objectives) if cls.multi_objective(section.options) else 1
    return cls(space, section.options, n_objectives=n, seed=seed)


__all__ = [
    "DRIVERS",
    "Candidate",
    "Driver",
    "Outcome",
    "build_driver",
    "driver_class",
    "driver_names",
    "driver_options",
    "make_driver",
]
