"""What the scheduler reports to the run, and the state it hands over at a checkpoint.

The run consumes :meth:`Scheduler.events() <evomerge.scheduler.scheduler.Scheduler.events>`, an
iterator of :data:`Event`: :class:`Evaluated` for every new result, yielded *before* the driver is
told (the run appends its record to the log when it receives the event, so a crash never loses a
result the driver has seen), and :class:`Told` after each tell (the run may checkpoint then,
reading :meth:`~evomerge.scheduler.scheduler.Scheduler.in_flight`). Nothing is called back and the
scheduler holds no reference to the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evomerge.drivers.base import Candidate, Outcome
from evomerge.evaluator.base import EvalResult
from evomerge.objectives import Target
from evomerge.scheduler.replay import Replay


@dataclass(frozen=True)
class Scored:
    """A new result and what the scheduler adds to it; the worker's :class:`EvalResult` is never
    changed. ``genome``: the candidate's (float64, flat); ``proposed``: candidates the driver had
    handed out when the result arrived (a record's ``asked``); ``outcome``: what the driver is
    told; ``recipe``: the request's recipe."""

    result: EvalResult
    genome: np.ndarray
    proposed: int
    outcome: Outcome
    recipe: dict[str, Any]


@dataclass(frozen=True)
class Evaluated:
    """A new result, before the driver is told of it."""

    candidate: Candidate
    scored: Scored


@dataclass(frozen=True)
class Told:
    """The driver was told ``candidate_ids``; ``told_total`` results since the run began."""

    candidate_ids: tuple[int, ...]
    told_total: int


Event = Evaluated | Told


@dataclass
class InFlight:
    """A candidate the driver handed out and has not been told about yet.

    ``submitted``: a request went to the backend, with ``must_beat`` as its early-stopping bar (a
    resubmission after resume sends the same bar, so an early-stopped score is reproduced).
    """

    candidate: Candidate
    must_beat: float | None = None
    submitted: bool = False

    def to_state(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        c = self.candidate
        return {
            "id": int(c.id),
            "genome": np.asarray(c.genome, dtype=np.float64).reshape(-1).tolist(),
            "meta": dict(c.meta or {}),
            "must_beat": self.must_beat,
            "submitted": self.submitted,
        }

    @classmethod
    def from_state(cls, state: InFlight | Candidate | Mapping[str, Any]) -> InFlight:
        if isinstance(state, InFlight):
            return state
        if isinstance(state, Candidate):
            return cls(state)
        genome = np.asarray(state["genome"], dtype=np.float64)
        cand = Candidate(int(state["id"]), genome, dict(state.get("meta") or {}))
        return cls(cand, state.get("must_beat"), bool(state.get("submitted", False)))


@dataclass
class ResumePoint:
    """Where a resumed scheduler starts: ``told_before`` results told at the checkpoint, its
    ``in_flight`` candidates (:meth:`InFlight.to_state` dicts), the log's results after it
    (``replay``) and ``incumbent``, the best score among the told results (early stopping's
    ``must_beat`` carries on from it)."""

    told_before: int = 0
    in_flight: Sequence[InFlight | Candidate | Mapping[str, Any]] = ()
    replay: Replay = field(default_factory=Replay)
    incumbent: float | None = None


@dataclass
class Budget:
    """When to stop asking. ``max_evals``: candidates charged since the run began (see "Counters"
    in :mod:`evomerge.scheduler.scheduler`); ``time_limit``: seconds from the start of
    :meth:`~evomerge.scheduler.scheduler.Scheduler.events`; ``target``: built by
    :meth:`evomerge.objectives.Objectives.target`."""

    max_evals: int | None = None
    time_limit: float | None = None
    target: Target | None = None


@dataclass
class SchedulerSummary:
    """This scheduler's own work (not the run's totals, which span resumes)."""

    stop_reason: str  # max_evals | time_limit | target | stopped | interrupted | driver_exhausted
    evaluated: int  # new results (an Evaluated event each)
    reused: int  # told from the resume replay
    failed: int  # new results with status "failed"
    told: int  # candidates told to the driver by this scheduler
    wall_seconds: float
    busy_seconds: float  # Σ worker time over new results
    num_workers: int
    dropped: list[int] = field(default_factory=list)  # asked, never evaluated (stop / time limit)
    untold: list[int] = field(default_factory=list)  # evaluated, but their generation never completed
    unreplayed: list[int] = field(default_factory=list)  # known results the driver never re-proposed

    @property
    def utilization(self) -> float:
        """Σ busy time / (workers × wall time)."""
        denom = self.num_workers * self.wall_seconds
        return self.busy_seconds / denom if denom > 0 else 0.0


__all__ = [
    "Budget",
    "Evaluated",
    "Event",
    "InFlight",
    "ResumePoint",
    "SchedulerSummary",
    "Scored",
    "Told",
]
