"""Random search: the baseline every comparison includes.

``sampling="uniform"``: x ~ U(lower, upper) independently per candidate.
``sampling="lhs"``: Latin hypercube blocks of ``lhs_size`` points — each gene's range is cut into
``lhs_size`` equal strata, every stratum gets exactly one point per block (random position inside
the stratum, random pairing across genes); blocks are drawn one after another.

Candidates are drawn one at a time from a single seeded generator, so the sequence does not
depend on how ``ask`` calls are batched (``ask(3)`` then ``ask(2)`` equals ``ask(5)``).
Steady-state and natively multi-objective (it learns nothing from outcomes); with one objective,
outcomes update the incumbent (``best_id``, ``best_value``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from evomerge.drivers.base import Candidate, DriverBase, DriverOptions, Outcome, derive_seed, outcome_failed
from evomerge.state import generator_data, generator_from_data


class RandomOptions(DriverOptions):
    sampling: Literal["uniform", "lhs"] = "uniform"
    lhs_size: int = Field(default=16, ge=1)


class RandomDriver(DriverBase):
    name = "random"
    generational = False
    Options = RandomOptions

    @classmethod
    def multi_objective(cls, options: RandomOptions) -> bool:
        return True  # proposals ignore outcomes: every objective goes to the run's Pareto front

    def __init__(
        self, space: Any, options: RandomOptions | dict | None = None, *, n_objectives: int = 1, seed: int = 0
    ):
        super().__init__(space, options, n_objectives=n_objectives, seed=seed)
        self._require_finite_box()
        self.sampling = self.options.sampling
        self.lhs_size = self.options.lhs_size
        self._rng = np.random.default_rng(derive_seed(self.seed))
        self._block: np.ndarray | None = None  # remaining LHS points, shape (k, dim)
        self.best_id: int | None = None
        self.best_value = -np.inf

    def _draw(self) -> np.ndarray:
        if self.sampling == "uniform":
            return self._rng.uniform(self.lower, self.upper)
        if self._block is None or len(self._block) == 0:
            m = self.lhs_size
            u = (
                np.stack([self._rng.permutation(m) for _ in range(self.dim)], axis=1) + self._rng.random((m, self.dim))
            ) / m
            self._block = self.lower + u * (self.upper - self.lower)
        x, self._block = self._block[0], self._block[1:]
        return x

    def ask(self, n: int) -> list[Candidate]:
        return [self._new_candidate(self._draw()) for _ in range(int(n))]

    def tell(self, candidates: list[Candidate], outcomes: list[Outcome]) -> None:
        self._take_pending(candidates, outcomes)
        if self.n_objectives > 1:
            return  # nothing is learned; with several objectives the incumbent is the run's Pareto front
        for cand, out in zip(candidates, outcomes):
            if outcome_failed(out, self.n_objectives):
                continue  # a failure never becomes the incumbent; nothing else is learned
            value = float(np.asarray(out.values, dtype=float).reshape(-1)[0])
            if value > self.best_value:
                self.best_value, self.best_id = value, cand.id

    def state_dict(self) -> dict[str, Any]:
        state = self._base_state()
        state.update(
            rng=generator_data(self._rng),
            block=None if self._block is None else self._block.copy(),
            best_id=self.best_id,
            best_value=self.best_value,
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        r = self._load_base_state(state)
        self._rng = generator_from_data(r.get("rng"), "driver.rng")
        self._block = r.array("block", (None, self.dim), optional=True)
        self.best_id = r.int("best_id", optional=True)
        self.best_value = r.float("best_value")
