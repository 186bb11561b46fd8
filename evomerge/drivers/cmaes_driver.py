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

from evomerge.drivers.base import Candidate, DriverBase, DriverOptions, Outcome, derive_seed, outcome_failed
from evomerge.drivers.cma_state import cma_data, cma_from_data
from evomerge.errors import ConfigError
from evomerge.state import StateError, as_float, as_int

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


class CMAESDriver(DriverBase):
    """Generational CMA-ES; see the module docstring for the maths and the conventions."""

    name = "cmaes"
    generational = True
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
        self._optimizer = self._make_optimizer(mean, self.population_size, derive_seed(self.seed))
        self._generation = 0  # counts generations over all restarts
        self._restart = 0
        self._restart_best = -math.inf
        self._stale = 0
        self._buffer: list[np.ndarray] = []  # genomes of this generation not asked yet
        self._members: list[np.ndarray] = []  # the whole current generation, sampling order
        self._id_to_slot: dict[int, int] = {}
        self._values: dict[int, float | None] = {}  # slot -> scalarised value (None = failed)

    # -- cmaes ---------------------------------------------------------------------------------
    def _make_optimizer(self, mean: np.ndarray, popsize: int, seed: int):
        bounds = np.stack([self.lower, self.upper], axis=1)
        if not np.all(np.isfinite(bounds)):
            bounds = None if not np.any(np.isfinite(bounds)) else bounds
        cmaes = _cmaes()
        cls = cmaes.SepCMA if self.separable else cmaes.CMA
        return cls(mean=mean, sigma=self.sigma0, bounds=bounds, seed=seed, population_size=popsize)

    def _start_generation(self) -> None:
        self._optimizer.reseed_rng(derive_seed(self.seed, self._generation))
        pop = self._optimizer.population_size
        self._members = [np.asarray(self._optimizer.ask(), dtype=float) for _ in range(pop)]
        self._buffer = list(range(pop))
        self._id_to_slot = {}
        self._values = {}

    def _finish_generation(self) -> None:
        pop = len(self._members)
        finite = [v for v in self._values.values() if v is not None]
        worst = (min(finite) - 1.0) if finite else 0.0
        f = [self._values[k] if self._values[k] is not None else worst for k in range(pop)]
        self._optimizer.tell([(self._members[k], -f[k]) for k in range(pop)])
        self._generation += 1
        best = max(f)
        if best > self._restart_best:
            self._restart_best, self._stale = best, 0
        else:
            self._stale += 1
        self._members, self._buffer, self._id_to_slot, self._values = [], [], {}, {}
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
    def generation(self) -> int:
        return self._generation

    @property
    def restart(self) -> int:
        return self._restart

    @property
    def mean(self) -> np.ndarray:
        """The current search distribution's mean m (a genome)."""
        return np.asarray(self._optimizer.mean, dtype=float).copy()

    def ask(self, n: int) -> list[Candidate]:
        if not self._members:
            self._start_generation()
        out = []
        while self._buffer and len(out) < n:
            slot = self._buffer.pop(0)
            cand = self._new_candidate(
                self._members[slot], generation=self._generation, restart=self._restart, index=slot
            )
            self._id_to_slot[cand.id] = slot
            out.append(cand)
        return out

    def tell(self, candidates: list[Candidate], outcomes: list[Outcome]) -> None:
        for cand in candidates:
            if cand.id not in self._id_to_slot:
                raise ValueError(f"tell: candidate {cand.id} is not in the current CMA-ES generation")
        self._take_pending(candidates, outcomes)
        for cand, out in zip(candidates, outcomes):
            slot = self._id_to_slot[cand.id]
            if outcome_failed(out, self.n_objectives):
                self._values[slot] = None
            else:
                self._values[slot] = float(np.asarray(out.values, dtype=float).reshape(-1)[0])
        if self._members and len(self._values) == len(self._members):
            self._finish_generation()

    def state_dict(self) -> dict[str, Any]:
        state = self._base_state()
        state.update(
            optimizer=cma_data(self._optimizer),  # every attribute and its RNG: rebuilt, never unpickled
            generation=self._generation,
            restart=self._restart,
            restart_best=self._restart_best,
            stale=self._stale,
            members=[m.copy() for m in self._members],
            buffer=list(self._buffer),
            id_to_slot=dict(self._id_to_slot),
            values=dict(self._values),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        r = self._load_base_state(state)
        optimizer = cma_from_data(r.get("optimizer"), "driver.optimizer")
        if optimizer.dim != self.dim:
            raise StateError(f"driver.optimizer: dimension {optimizer.dim}, the genome has {self.dim}")
        members = r.arrays("members", (self.dim,))
        slots = range(len(members))

        def slot(v: Any, where: str) -> int:
            k = as_int(v, where)
            if k not in slots:
                raise StateError(f"{where}: slot {k} is not in a generation of {len(members)}")
            return k

        buffer = [slot(v, f"driver.buffer[{i}]") for i, v in enumerate(r.list("buffer"))]
        id_to_slot = r.int_map("id_to_slot", slot)
        values = r.int_map("values", lambda v, where: None if v is None else as_float(v, where))
        if any(k not in slots for k in values):
            raise StateError(f"driver.values: slots {sorted(values)} are not in a generation of {len(members)}")
        self._optimizer = optimizer
        self._generation = r.int("generation", low=0)
        self._restart = r.int("restart", low=0)
        self._restart_best = r.float("restart_best")
        self._stale = r.int("stale", low=0)
        self._members, self._buffer, self._id_to_slot, self._values = members, buffer, id_to_slot, values
