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
from evomerge.state import Reader, StateError


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
class Starting:
    """The backend is about to evaluate ``candidate_id`` in this process (in-process backends
    only); ``attempts``: how often this process died during its evaluation before."""

    candidate_id: int
    attempts: int = 0


@dataclass(frozen=True)
class Told:
    """The driver was told ``candidate_ids``; ``told_total`` results since the run began."""

    candidate_ids: tuple[int, ...]
    told_total: int


Event = Starting | Evaluated | Told


@dataclass
class InFlight:
    """A candidate the driver handed out and has not been told about yet.

    ``submitted``: a request went to the backend, with ``must_beat`` as its early-stopping bar (a
    resubmission after resume sends the same bar, so an early-stopped score is reproduced).
    ``attempts``: how often the run's process died while evaluating it (``run.max_attempts``).
    """

    candidate: Candidate
    must_beat: float | None = None
    submitted: bool = False
    attempts: int = 0

    def to_state(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        c = self.candidate
        return {
            "id": int(c.id),
            "genome": np.asarray(c.genome, dtype=np.float64).reshape(-1).tolist(),
            "meta": dict(c.meta or {}),
            "must_beat": self.must_beat,
            "submitted": self.submitted,
            "attempts": self.attempts,
        }

    @classmethod
    def from_state(cls, state: InFlight | Candidate | Mapping[str, Any], where: str = "in_flight") -> InFlight:
        """From :meth:`to_state`'s dict (checked: :class:`~evomerge.state.StateError` when malformed)."""
        if isinstance(state, InFlight):
            return state
        if isinstance(state, Candidate):
            return cls(state)
        r = Reader(state, where)
        meta = r.get("meta") if r.has("meta") else {}
        if not isinstance(meta, dict):
            raise StateError(f"{where}.meta: expected a mapping, got {type(meta).__name__}")
        cand = Candidate(r.int("id", low=0), r.array("genome", (None,)), dict(meta))
        must_beat = r.float("must_beat", optional=True) if r.has("must_beat") else None
        submitted = r.bool("submitted") if r.has("submitted") else False
        attempts = r.int("attempts", low=0) if r.has("attempts") else 0
        return cls(cand, must_beat, submitted, attempts)


@dataclass
class ResumePoint:
    """Where a resumed scheduler starts, from a checkpoint (the driver's state after
    ``told_before`` tells) and the log: its ``in_flight`` candidates (:meth:`InFlight.to_state`
    dicts: every candidate handed out and not told — running, queued, dropped by a stop, cut from
    a generation by the budget, or waiting for the rest of its generation — with the ``must_beat``
    it was sent with; the restored driver holds these as pending and never proposes them again,
    so the scheduler takes them back first), the log's results after it
    (``replay``), ``incumbent``, the best score among the told results (early stopping's
    ``must_beat`` carries on from it), and ``attempts``: per candidate id, how often the run's
    process died while evaluating it (a candidate at the scheduler's ``max_attempts`` is failed
    without being evaluated again)."""

    told_before: int = 0
    in_flight: Sequence[InFlight | Candidate | Mapping[str, Any]] = ()
    replay: Replay = field(default_factory=Replay)
    incumbent: float | None = None
    attempts: Mapping[int, int] = field(default_factory=dict)


@dataclass
class Budget:
    """When to stop asking. ``max_evals``: candidates charged since the run began (the scheduler's
    ``budget_spent``, see "Counters" in :mod:`evomerge.scheduler.scheduler`); ``time_limit``:
    seconds from the start of :meth:`~evomerge.scheduler.scheduler.Scheduler.events`; ``target``:
    built by :meth:`evomerge.objectives.Objectives.target`. What happens to work in progress when
    the loop stops:

    * ``max_evals`` reached — every candidate already asked is evaluated (it is within budget);
    * ``time_limit``, ``target``, ``Scheduler.stop`` (first Ctrl-C) — requests not yet started are
      dropped; evaluations already running are **waited for** and recorded and told as usual;
    * ``Scheduler.stop(drop=True)`` (second Ctrl-C) — the loop returns at once; running
      evaluations are abandoned (the caller closes the backend). ``KeyboardInterrupt`` is re-raised.

    A generation larger than the budget left is evaluated as far as the budget goes and never told.
    Dropped candidates and a generation cut short stay in ``Scheduler.in_flight()``; a checkpoint
    written now and resumed with a larger budget takes them back (the logged ones from the replay,
    never evaluated twice)."""

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
    "Starting",
    "Told",
]
