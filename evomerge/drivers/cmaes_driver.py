"""CMA-ES on the ``cmaes`` package: full (``CMA``) or separable (``SepCMA``), optional IPOP restarts.

Generation ``g`` samples λ genomes x_1..x_λ ~ m + σ N(0, C) inside the space's box (``cmaes``
resamples, then clips, infeasible draws). The driver hands them out as candidates and, once all
λ outcomes are in, tells ``cmaes`` the pairs (x_k, −f(x_k)) — ``cmaes`` minimises, drivers
maximise. Defaults follow Akiba et al.: m_0 = ``space.x0``, σ_0 = ``space.sigma0``,
λ = 4 + ⌊3 ln n⌋.

* **Single-objective**: told one value f, the run's scalarisation of its objectives; a Pareto
  archive over the raw values is the run's business (:mod:`evomerge.pareto`).
* **Failed** candidates (flagged, or non-finite values) are told as the worst value of their
  generation: f = min_k f_k − 1 over the finite members (0 when every member failed), so they rank
  last without a huge number distorting ``cmaes``'s stopping test on the spread of f.
* **Separable** CMA (diagonal C, O(n) per sample) is used when ``separable=True``, or with
  ``separable="auto"`` when n > ``sep_threshold`` (1000): full C costs O(n²) memory and an
  O(n³) eigendecomposition.
* **IPOP** (``restarts="ipop"``): when ``cmaes`` reports ``should_stop()`` (or the best f of the
  current restart has not improved for ``patience`` generations), start again from a uniform
  random mean in the box with λ multiplied by ``inc_popsize`` (2), at most ``max_restarts`` times.
* **x0 first** (``include_x0``): the first candidate of the first generation is x0 itself instead
  of a draw (told to ``cmaes`` like any member), so the search never reports less than its start
  — for a data-flow space, the paper's initialisation at model A's own path.
* **Determinism / resume**: the driver reseeds the optimizer at the start of *every* generation
  with ``derive_seed(seed, generation)`` and samples the whole generation at once;
  ``state_dict`` holds the optimizer as data (:mod:`evomerge.drivers.cma_state`: m, C, σ, the
  paths, counters and RNG state) and the generation's members, so a run restored from it draws
  identical genomes.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from evomerge.drivers.base import DriverOptions, derive_seed
from evomerge.drivers.cma_state import cma_data, cma_from_data
from evomerge.drivers.generational import GenerationalDriver
from evomerge.errors import ConfigError
from evomerge.state import StateError

_RESTART_SALT = 0x1905  # keeps restart means independent of generation seeds


def _cmaes():
    # Imported on first use: ``cmaes`` imports SciPy (~2 s), and the run config imports this
    # module for its Options.
    import cmaes

    return cmaes


class CMAESOptions(DriverOptions):
    population_size: int | None = Field(default=None, ge=4)  # λ; cmaes needs 2 parents. None: 4 + ⌊3 ln n⌋
    sigma0: float | None = Field(default=None, gt=0, allow_inf_nan=False)  # None: the space's sigma0
    x0: list[float] | None = None  # None: the space's x0
    separable: Literal["auto"] | bool = "auto"
    sep_threshold: int = Field(default=1000, ge=0)  # "auto": separable when n > sep_threshold
    restarts: Literal["ipop", "none"] | None = None
    max_restarts: int = Field(default=9, ge=0)
    inc_popsize: int = Field(default=2, ge=1)
    patience: int | None = Field(default=None, ge=1)  # generations without improvement before a restart
    include_x0: bool = False  # the first candidate is x0 itself (a data-flow space: model A's own path)


class CMAESDriver(GenerationalDriver):
    """Generational CMA-ES; see the module docstring for the maths and the conventions."""

    name = "cmaes"
    label = "CMA-ES"
    Options = CMAESOptions

    def __init__(self, space: Any, options: CMAESOptions | dict | None = None, *, n_objectives: int = 1, seed: int = 0):
        super().__init__(space, options, n_objectives=n_objectives, seed=seed)
        opts = self.options
        separable = opts.separable
        self.separable = self.dim > opts.sep_threshold if separable == "auto" else bool(separable)
        if self.separable and self.dim < 2:
            raise ConfigError("drivers.cmaes: separable CMA-ES needs a genome of dimension >= 2, got 1")
        self.restarts = "ipop" if opts.restarts == "ipop" else None
        self.max_restarts = opts.max_restarts
        self.inc_popsize = opts.inc_popsize
        self.patience = opts.patience
        default_pop = 4 + int(math.floor(3 * math.log(self.dim)))
        self.population_size = opts.population_size if opts.population_size is not None else default_pop
        self.sigma0 = float(opts.sigma0 if opts.sigma0 is not None else space.sigma0)
        if not (self.sigma0 > 0 and math.isfinite(self.sigma0)):
            raise ConfigError(f"drivers.cmaes: the space's sigma0 must be a positive number, got {self.sigma0}")
        mean = np.array(space.x0 if opts.x0 is None else opts.x0, dtype=float).reshape(-1)  # cmaes updates it in place
        if mean.shape != (self.dim,):
            raise ConfigError(f"drivers.cmaes: x0 must have {self.dim} values, got {mean.shape[0]}")
        if np.any(mean < self.lower) or np.any(mean > self.upper):
            raise ConfigError("drivers.cmaes: x0 lies outside the space's bounds")
        self._x0 = mean.copy()
        self._optimizer = self._make_optimizer(mean, self.population_size, derive_seed(self.seed))
        self._init_generation()
        self._restart = 0
        self._restart_best = -math.inf
        self._stale = 0

    # -- cmaes ---------------------------------------------------------------------------------
    def _make_optimizer(self, mean: np.ndarray, popsize: int, seed: int):
        bounds = np.stack([self.lower, self.upper], axis=1)
        if not np.all(np.isfinite(bounds)):
            bounds = None if not np.any(np.isfinite(bounds)) else bounds
        cmaes = _cmaes()
        cls = cmaes.SepCMA if self.separable else cmaes.CMA
        return cls(mean=mean, sigma=self.sigma0, bounds=bounds, seed=seed, population_size=popsize)

    def _sample_generation(self) -> list[np.ndarray]:
        self._optimizer.reseed_rng(derive_seed(self.seed, self._generation))
        pop = self._optimizer.population_size
        members = [np.asarray(self._optimizer.ask(), dtype=float) for _ in range(pop)]
        if self.options.include_x0 and self._generation == 0:
            members[0] = self._x0.copy()
        return members

    def _candidate_meta(self) -> dict[str, Any]:
        return {"generation": self._generation, "restart": self._restart}

    def _told_generation(self, f: list[float]) -> None:
        self._optimizer.tell([(m, -v) for m, v in zip(self._members, f)])
        best = max(f)
        if best > self._restart_best:
            self._restart_best, self._stale = best, 0
        else:
            self._stale += 1
        if self.restarts == "ipop" and self._restart < self.max_restarts:
            stalled = self.patience is not None and self._stale >= self.patience
            if stalled or self._optimizer.should_stop():
                self._restart += 1
                rng = np.random.default_rng(derive_seed(self.seed, _RESTART_SALT, self._restart))
                lo = np.where(np.isfinite(self.lower), self.lower, -1.0)
                hi = np.where(np.isfinite(self.upper), self.upper, 1.0)
                mean = rng.uniform(lo, hi)
                popsize = self._optimizer.population_size * self.inc_popsize
                self._optimizer = self._make_optimizer(mean, popsize, derive_seed(self.seed, self._restart))
                self._restart_best, self._stale = -math.inf, 0

    # -- protocol ------------------------------------------------------------------------------
    @property
    def restart(self) -> int:
        return self._restart

    @property
    def mean(self) -> np.ndarray:
        """The current search distribution's mean m (a genome)."""
        return np.asarray(self._optimizer.mean, dtype=float).copy()

    def state_dict(self) -> dict[str, Any]:
        state = self._base_state()
        state.update(
            optimizer=cma_data(self._optimizer),  # every attribute and its RNG: rebuilt, never unpickled
            restart=self._restart,
            restart_best=self._restart_best,
            stale=self._stale,
            **self._generation_state(),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        r = self._load_base_state(state)
        optimizer = cma_from_data(r.get("optimizer"), "driver.optimizer")
        if optimizer.dim != self.dim:
            raise StateError(f"driver.optimizer: dimension {optimizer.dim}, the genome has {self.dim}")
        self._load_generation_state(r)
        self._optimizer = optimizer
        self._restart = r.int("restart", low=0)
        self._restart_best = r.float("restart_best")
        self._stale = r.int("stale", low=0)
