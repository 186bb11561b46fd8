"""The one protocol every search driver implements.

A driver proposes genomes (``ask``) and learns from their outcomes (``tell``). Genomes are float
vectors in the search space's normalised box (see :class:`evomerge.space.base.SearchSpace`).
Drivers **maximise**: the run converts each objective with its direction (and weight, for
scalarising drivers) before telling. Everything a driver needs to continue exactly where it was is
in ``state_dict()`` (plain Python / numpy, picklable): a driver saved after any ``tell`` and loaded
into a fresh instance built with the same constructor arguments proposes exactly what the
uninterrupted one would have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


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
