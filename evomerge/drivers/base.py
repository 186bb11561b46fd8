"""The one protocol every search driver implements.

A driver proposes genomes (``ask``) and learns from their outcomes (``tell``). Genomes are float
vectors in the search space's normalised box (see :class:`evomerge.space.base.SearchSpace`).
Drivers **maximise**. A driver class says whether it is natively multi-objective with
``multi_objective(options)``: if so it is told one signed value per objective, otherwise one
value, the run's scalarisation (:mod:`evomerge.objectives`) — drivers never weigh objectives
themselves. Everything a driver needs to continue exactly where it was is in ``state_dict()``, as
data (:mod:`evomerge.state`: dicts, lists, numbers, strings, numpy arrays — never an object that
would have to be pickled): a driver saved after any ``tell`` and loaded into a fresh instance
built with the same options proposes exactly what the uninterrupted one would have.
``load_state_dict`` checks the structure of what it reads and raises
:class:`~evomerge.state.StateError` for a malformed state (a checkpoint that is then skipped).

Options: each driver class declares them as a pydantic model ``Options`` (a
:class:`DriverOptions`: unknown keys refused, bounds as field constraints), which is also the
``driver.options`` section of the run config. Checks that depend on the space (the genome's
dimension, a finite box) stay in the constructor, as one-line ConfigErrors.

Besides the protocol this module holds what the drivers share: :class:`DriverBase` (options,
candidate ids, the pending set, box clipping, seeded generators) and :func:`derive_seed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

from evomerge.errors import ConfigError
from evomerge.state import Reader, as_array
from evomerge.validation import parse_options


@dataclass
class Candidate:
    """One proposal. ``id`` is unique within a run and assigned by the driver, counting from 0."""

    id: int
    genome: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. generation, parents, trial number


@dataclass
class Outcome:
    """What the driver is told about one evaluated candidate.

    ``values``: objective values to maximise, shape (n_objectives,).
    ``per_example``: optional scores per calibration example, higher is better, shape (n_examples,),
    aligned across candidates (same examples, same order) — M2N2 needs it.
    ``failed``: the evaluation raised; ``values`` is then ignored and the driver treats the
    candidate as the worst possible (never silently drops it).
    """

    candidate_id: int
    values: np.ndarray
    per_example: np.ndarray | None = None
    failed: bool = False
    error: str | None = None


@runtime_checkable
class Driver(Protocol):
    #: True: ``tell`` must receive the whole batch an ``ask`` returned (CMA-ES);
    #: False: steady-state, candidates may be told one at a time and in any order (M2N2, random).
    generational: bool
    n_objectives: int

    def ask(self, n: int) -> list[Candidate]:
        """Propose up to ``n`` candidates. A generational driver may return fewer (the rest of its
        current generation) and returns [] while it waits for outstanding results."""
        ...

    def tell(self, candidates: list[Candidate], outcomes: list[Outcome]) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def derive_seed(*parts: int) -> int:
    """A 32-bit seed that depends on every part (run seed, generation, restart, ...).

    Uses :class:`numpy.random.SeedSequence`, so nearby inputs give unrelated seeds.
    """
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def outcome_failed(outcome: Outcome, n_objectives: int) -> bool:
    """True when the outcome must be treated as a failure: flagged, or values not finite/shaped."""
    if outcome.failed:
        return True
    values = np.asarray(outcome.values, dtype=float).reshape(-1)
    return values.shape != (n_objectives,) or not np.all(np.isfinite(values))


class DriverOptions(BaseModel):
    """Base of every driver's ``Options``: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class DriverBase:
    """Shared bookkeeping: options, ids from 0, the pending set, the box.

    ``DriverBase(space, options, *, n_objectives, seed)``: ``options`` is the class's ``Options``
    (or a mapping validated as one; None = the defaults), kept as ``self.options``. Subclasses
    call ``super().__init__``, create candidates with :meth:`_new_candidate` and check told
    candidates with :meth:`_take_pending`.
    """

    name = "driver"
    generational = False
    Options: ClassVar[type[DriverOptions]] = DriverOptions

    @classmethod
    def multi_objective(cls, options: Any) -> bool:
        """True: told one value per objective; False (the default): told the run's scalarisation."""
        return False

    def __init__(
        self,
        space: Any,
        options: DriverOptions | Mapping[str, Any] | None = None,
        *,
        n_objectives: int = 1,
        seed: int = 0,
    ):
        self.options = parse_options(self.Options, options, prefix="driver.options.")
        if int(n_objectives) < 1:
            raise ConfigError(f"drivers.{self.name}: n_objectives must be >= 1, got {n_objectives}")
        if int(n_objectives) > 1 and not self.multi_objective(self.options):
            raise ConfigError(
                f"drivers.{self.name}: {self._single_objective_what()} is single-objective (it is told the run's "
                f"scalarisation), got n_objectives={n_objectives}"
            )
        self.space = space
        self.n_objectives = int(n_objectives)
        self.seed = int(seed)
        self.dim = int(space.dim)
        self.lower = np.array(space.lower, dtype=float).reshape(-1)  # copies: never alias the space
        self.upper = np.array(space.upper, dtype=float).reshape(-1)
        if self.lower.shape != (self.dim,) or self.upper.shape != (self.dim,):
            raise ConfigError(
                f"drivers.{self.name}: space bounds must have shape ({self.dim},), "
                f"got lower {self.lower.shape} and upper {self.upper.shape}"
            )
        if np.any(self.lower > self.upper):
            raise ConfigError(f"drivers.{self.name}: space has lower > upper for some genes")
        self._next_id = 0
        self._pending: dict[int, np.ndarray] = {}

    # -- helpers -------------------------------------------------------------------------------
    def _single_objective_what(self) -> str:
        return self.name

    def _require_finite_box(self) -> None:
        if not (np.all(np.isfinite(self.lower)) and np.all(np.isfinite(self.upper))):
            raise ConfigError(f"drivers.{self.name}: needs a finite box, but the space has infinite bounds")

    def _clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(x, dtype=float), self.lower, self.upper)

    def _new_candidate(self, genome: np.ndarray, **meta: Any) -> Candidate:
        genome = np.array(genome, dtype=float, copy=True).reshape(self.dim)
        cand = Candidate(id=self._next_id, genome=genome, meta=meta)
        self._pending[cand.id] = genome
        self._next_id += 1
        return cand

    def _take_pending(self, candidates: list[Candidate], outcomes: list[Outcome]) -> None:
        """Check that each told candidate is pending and matches its outcome; drop it from pending."""
        if len(candidates) != len(outcomes):
            raise ValueError(f"tell: {len(candidates)} candidates but {len(outcomes)} outcomes")
        for cand, out in zip(candidates, outcomes):
            if out.candidate_id != cand.id:
                raise ValueError(f"tell: outcome for id {out.candidate_id} given for candidate {cand.id}")
            if cand.id not in self._pending:
                raise ValueError(f"tell: candidate {cand.id} is not pending (unknown or told twice)")
        for cand in candidates:
            del self._pending[cand.id]

    def _base_state(self) -> dict[str, Any]:
        return {
            "driver": self.name,
            "dim": self.dim,
            "n_objectives": self.n_objectives,
            "seed": self.seed,
            "next_id": self._next_id,
            "pending": {k: v.copy() for k, v in self._pending.items()},
        }

    def _load_base_state(self, state: dict[str, Any]) -> Reader:
        """Check and load what :meth:`_base_state` wrote; returns a :class:`~evomerge.state.Reader`
        over ``state`` for the subclass's own keys. A state of another driver, dimension or number
        of objectives is a ConfigError (the config changed); a malformed one a StateError."""
        r = Reader(state, "driver")
        for key, mine in (("driver", self.name), ("dim", self.dim), ("n_objectives", self.n_objectives)):
            if state.get(key) != mine:
                raise ConfigError(
                    f"drivers.{self.name}: checkpoint was saved with {key}={state.get(key)!r}, "
                    f"this driver has {key}={mine!r}"
                )
        self._next_id = r.int("next_id", low=0)
        self._pending = r.int_map("pending", lambda v, where: as_array(v, where, (self.dim,)))
        return r

    @property
    def pending_ids(self) -> list[int]:
        """Ids asked but not yet told, in asking order."""
        return sorted(self._pending)
