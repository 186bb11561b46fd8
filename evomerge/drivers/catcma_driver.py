"""Mixed categorical–continuous CMA-ES (``cmaes.CatCMAwM``): categorical genes as categories,
the others as a Gaussian.

A space may declare categorical genes (``space.categories``, :mod:`evomerge.space.base`): the
data-flow space's path genes (on/off indicators, or per-depth choices). Plain CMA-ES searches
them as reals and thresholds them, so most of its steps change nothing and the step size learns
from a staircase. This driver hands them to CatCMA (Hamano et al., 2024; with margin, 2025): each
categorical gene ``i`` with ``K_i`` categories is drawn from its own categorical distribution
``q_i``, updated by the natural gradient of the same ranking that updates the Gaussian
``N(m, σ² C)`` of the continuous genes (the data-flow scales). A candidate's genome holds the
continuous genes as sampled (clipped into the box) and, for each categorical gene, the centre
of the drawn category (:func:`evomerge.space.base.category_value`), so the space decodes exactly
the sampled categories.

* **Start** (the paper's initialisation): the Gaussian's mean is the continuous part of
  ``space.x0`` (or ``x0``), σ0 = ``space.sigma0``, C = I; each categorical gene puts probability
  ``1 − flip_prob`` on the category of ``x0`` and spreads ``flip_prob`` evenly over the others
  (default ``flip_prob = 1/n_categorical``: about one gene changes per sample). With
  ``include_x0`` (default) the first candidate of the first generation *is* ``x0`` — for a
  data-flow space model A's own path — so the search never reports less than its start.
* **Population** λ = 4 + ⌊3 ln n⌋ over all genes (``population_size``); a generation is told
  whole, as in :mod:`.cmaes_driver`; failed candidates rank last (min f − 1).
* **Resume**: ``state_dict`` is plain data — dicts, lists, numbers, bools, None and numpy
  arrays, nothing pickled: the optimizer's attributes (:func:`catcma_data`; restored onto a fresh
  optimizer built with the same arguments, checked name by name, :func:`catcma_restore`) and the
  generation in progress; its RNG is reseeded with ``derive_seed(seed, generation)`` at the start of each
  generation and the whole generation is sampled at once, so a resumed run draws exactly what an
  uninterrupted one draws.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from evomerge.drivers.base import DriverOptions, derive_seed
from evomerge.drivers.generational import GenerationalDriver
from evomerge.errors import ConfigError
from evomerge.space.base import category_of, category_value, gene_categories
from evomerge.state import Reader


def _catcma():
    import cmaes  # imports SciPy (~2 s): on first use only

    return cmaes.CatCMAwM


class CatCMAOptions(DriverOptions):
    population_size: int | None = Field(default=None, ge=4)  # λ. None: 4 + ⌊3 ln n⌋
    sigma0: float | None = Field(default=None, gt=0, allow_inf_nan=False)  # None: the space's sigma0
    x0: list[float] | None = None  # None: the space's x0
    flip_prob: float | None = Field(default=None, gt=0, lt=1)  # None: 1 / (number of categorical genes)
    include_x0: bool = True  # the first candidate is x0 itself


class CatCMADriver(GenerationalDriver):
    """Generational CatCMA; see the module docstring."""

    name = "catcma"
    label = "CatCMA"
    Options = CatCMAOptions

    def __init__(
        self, space: Any, options: CatCMAOptions | dict | None = None, *, n_objectives: int = 1, seed: int = 0
    ):
        super().__init__(space, options, n_objectives=n_objectives, seed=seed)
        self._require_finite_box()
        opts = self.options
        self.categories = gene_categories(space)
        if np.any((self.categories == 1) | (self.categories < 0)):
            raise ConfigError("drivers.catcma: the space declares a gene with fewer than 2 categories")
        self.cat_idx = np.flatnonzero(self.categories >= 2)
        self.cont_idx = np.flatnonzero(self.categories == 0)
        if np.any(self.lower[self.cat_idx] != 0.0) or np.any(self.upper[self.cat_idx] != 1.0):
            raise ConfigError("drivers.catcma: categorical genes must live in [0, 1] (the space's box says otherwise)")
        x0 = np.array(space.x0 if opts.x0 is None else opts.x0, dtype=float).reshape(-1)
        if x0.shape != (self.dim,):
            raise ConfigError(f"drivers.catcma: x0 must have {self.dim} values, got {x0.shape[0]}")
        if np.any(x0 < self.lower) or np.any(x0 > self.upper):
            raise ConfigError("drivers.catcma: x0 lies outside the space's bounds")
        self.x0 = x0
        self.sigma0 = float(opts.sigma0 if opts.sigma0 is not None else space.sigma0)
        if not (self.sigma0 > 0 and math.isfinite(self.sigma0)):
            raise ConfigError(f"drivers.catcma: the space's sigma0 must be a positive number, got {self.sigma0}")
        n_cat = len(self.cat_idx)
        self.flip_prob = float(opts.flip_prob) if opts.flip_prob is not None else (1.0 / n_cat if n_cat else 0.0)
        self.population_size = (
            opts.population_size if opts.population_size is not None else 4 + int(math.floor(3 * math.log(self.dim)))
        )
        self.include_x0 = bool(opts.include_x0)
        self._x0_cats = np.array([category_of(x0[i], int(self.categories[i])) for i in self.cat_idx], dtype=int)
        self._optimizer = self._make_optimizer()
        self._init_generation()
        self._samples: list[tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]] = []  # (x, c, v_raw)

    # -- cmaes ---------------------------------------------------------------------------------
    def _make_optimizer(self):
        kwargs: dict[str, Any] = {"population_size": self.population_size, "seed": derive_seed(self.seed)}
        if len(self.cont_idx):
            kwargs.update(
                x_space=np.stack([self.lower[self.cont_idx], self.upper[self.cont_idx]], axis=1),
                mean=self.x0[self.cont_idx].copy(),
                sigma=self.sigma0,
                cov=np.eye(len(self.cont_idx)),  # σ is the step in gene units, as in plain CMA-ES
            )
        if len(self.cat_idx):
            ks = self.categories[self.cat_idx]
            q = np.zeros((len(ks), int(ks.max())))
            for row, (k, c) in enumerate(zip(ks, self._x0_cats)):
                q[row, :k] = self.flip_prob / (k - 1)
                q[row, c] = 1.0 - self.flip_prob
            kwargs.update(c_space=[int(k) for k in ks], cat_param=q)
        return _catcma()(**kwargs)

    def _genome(self, x: np.ndarray | None, c: np.ndarray | None) -> np.ndarray:
        g = np.empty(self.dim)
        if len(self.cont_idx):
            g[self.cont_idx] = np.clip(x, self.lower[self.cont_idx], self.upper[self.cont_idx])
        if len(self.cat_idx):
            chosen = np.argmax(c, axis=1)
            ks = self.categories[self.cat_idx]
            g[self.cat_idx] = [category_value(int(k_), int(k)) for k_, k in zip(chosen, ks)]
        return g

    def _x0_member(self) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        x = self.x0[self.cont_idx].copy() if len(self.cont_idx) else None
        c = None
        if len(self.cat_idx):
            c = np.zeros((len(self.cat_idx), int(self.categories[self.cat_idx].max())), dtype=bool)
            c[np.arange(len(self.cat_idx)), self._x0_cats] = True
        return x, c, (None if x is None else x.copy())

    def _sample_generation(self) -> list[np.ndarray]:
        self._optimizer.reseed_rng(derive_seed(self.seed, self._generation))
        samples = []
        for _ in range(self._optimizer.population_size):
            sol = self._optimizer.ask()
            samples.append((sol.x, sol.c, sol._v_raw))
        if self._generation == 0 and self.include_x0:
            samples[0] = self._x0_member()
        self._samples = samples
        return [self._genome(x, c) for x, c, _ in samples]

    def _told_generation(self, f: list[float]) -> None:
        Solution = _catcma().Solution
        self._optimizer.tell([(Solution(x, None, c, v), -fk) for (x, c, v), fk in zip(self._samples, f)])
        self._samples = []

    def category_probabilities(self) -> np.ndarray:
        """``q[i, k]``: the current probability of category ``k`` of the ``i``-th categorical gene."""
        return np.array(self._optimizer._q, copy=True) if len(self.cat_idx) else np.zeros((0, 0))

    def state_dict(self) -> dict[str, Any]:
        """Plain data only (dicts with str keys, lists, numbers, bools, None, numpy arrays): no pickle."""
        state = self._base_state()
        state.update(
            optimizer=catcma_data(self._optimizer),
            samples=[{"x": _copy(x), "c": _copy(c), "v_raw": _copy(v)} for x, c, v in self._samples],
            **self._generation_state(),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        r = self._load_base_state(state)
        opt = self._make_optimizer()  # the same constructor arguments; then the stored attributes
        catcma_restore(opt, r.get("optimizer"))
        opt.reseed_rng(derive_seed(self.seed, r.int("generation", low=0)))
        self._load_generation_state(r)
        samples = []
        for i, item in enumerate(r.list("samples")):
            s = Reader(item, f"driver.samples[{i}]")
            samples.append((_array(s.get("x"), float), _array(s.get("c"), bool), _array(s.get("v_raw"), float)))
        self._optimizer, self._samples = opt, samples


# -- the optimizer as data -----------------------------------------------------------------------
def _copy(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.array(a, copy=True)


def _array(a: Any, dtype: type) -> np.ndarray | None:
    return None if a is None else np.array(a, dtype=dtype, copy=True)


def catcma_data(optimizer: Any) -> dict[str, Any]:
    """A ``cmaes.CatCMAwM``'s attributes as plain data: arrays copied, numpy scalars as Python
    numbers (their names in ``numpy_scalars``, so they come back as numpy scalars), lists of numbers
    as lists; the RNG is left out (each generation reseeds it)."""
    attrs: dict[str, Any] = {}
    numpy_scalars: list[str] = []
    for key, value in vars(optimizer).items():
        if key == "_rng":
            continue
        if isinstance(value, np.ndarray):
            attrs[key] = value.copy()
        elif isinstance(value, np.generic):
            attrs[key] = value.item()
            numpy_scalars.append(key)
        elif isinstance(value, list):  # the termination history: numpy floats
            attrs[key] = [float(v) for v in value]
        elif value is None or isinstance(value, (bool, int, float)):
            attrs[key] = value
        else:
            raise TypeError(f"drivers.catcma: cannot keep the optimizer's {key} ({type(value).__name__}) as data")
    return {"attrs": attrs, "numpy_scalars": numpy_scalars}


def catcma_restore(optimizer: Any, data: dict[str, Any]) -> None:
    """Set ``optimizer``'s attributes (a fresh ``CatCMAwM`` built with the same arguments) from
    :func:`catcma_data`: exactly the attributes it has, arrays of its dtypes and shapes."""
    attrs, scalars = data["attrs"], set(data["numpy_scalars"])
    mine = {k: v for k, v in vars(optimizer).items() if k != "_rng"}
    if set(attrs) != set(mine):
        odd = ", ".join(sorted(set(attrs) ^ set(mine)))
        raise ConfigError(f"drivers.catcma: the checkpoint's optimizer differs from this one in {odd}")
    for key, value in attrs.items():
        now = mine[key]
        if isinstance(value, np.ndarray):
            if isinstance(now, np.ndarray) and (now.shape != value.shape or now.dtype != value.dtype):
                raise ConfigError(
                    f"drivers.catcma: checkpoint optimizer {key} is {value.dtype}{list(value.shape)}, "
                    f"this optimizer's is {now.dtype}{list(now.shape)}"
                )
            value = value.copy()
        elif isinstance(value, list):
            value = [np.float64(v) for v in value]
        elif key in scalars:
            value = np.float64(value) if isinstance(value, float) else np.int64(value)
        setattr(optimizer, key, value)
