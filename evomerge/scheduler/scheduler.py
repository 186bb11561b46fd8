"""The ask → evaluate → tell loop that keeps every worker busy.

**Steady-state drivers** (``driver.generational is False``: M2N2, random, Optuna): whenever ``k``
workers are free the scheduler calls ``ask(k)`` (``ask(1)`` each time one worker frees) and tells
each result the moment it arrives, so a worker is idle only for the round trip of one ask.

**Generational drivers** (CMA-ES): the scheduler asks for everything the driver will give
(``ask(GENERATION_ASK)``; the driver returns the rest of its current generation), submits it all
at once — the backend's queue hands it out as workers free — and tells the whole generation, in the
order it was asked, when its last result arrives. The driver returns ``[]`` while a generation is
outstanding, so the only idle time is the tail of each generation, which the algorithm itself
requires.

**The seam.** :meth:`Scheduler.events` yields, for every new result, :class:`Evaluated` (the run
appends it to ``evaluations.jsonl``) → the driver is told → :class:`Told` (the run may checkpoint,
reading :meth:`Scheduler.in_flight`); see :mod:`evomerge.scheduler.events`. A crash therefore
never loses a result the driver has seen. With the in-process backend the whole sequence is
deterministic. The request's recipe comes from ``to_recipe(candidate)``, a pure function; the
scheduler never calls into the run.

**Counters** (each spans the whole run, across resumes; :class:`SchedulerSummary` counts this
scheduler's own work):

* :attr:`Scheduler.proposed_total` — candidates the driver has handed out; a log record's
  ``asked`` is its value when that result arrived;
* :attr:`Scheduler.told_total` — results the driver has been told (a checkpoint's ``n_told``);
* :attr:`Scheduler.budget_spent` — candidates charged to ``budget.max_evals``: the results told
  before this scheduler plus every candidate it started (evaluated, or told from the replay).

**Early stopping.** With ``early_stopping`` each request carries ``must_beat``, the best score
(:meth:`~evomerge.objectives.Objectives.scalar`) among the results the driver has been told — a
prefix of the log — seeded at resume with :attr:`ResumePoint.incumbent`, so it is the same at the
same point of a resumed run.

**Resume** (:class:`ResumePoint`): from a checkpoint (the driver's state after ``told_before``
tells) and the log. ``in_flight`` — :meth:`Scheduler.in_flight` at the checkpoint: every candidate
handed out and not told (running, queued, dropped by a stop, cut from a generation by the budget,
or waiting for the rest of its generation), with the ``must_beat`` it was sent with. The restored
driver holds these as pending and never proposes them again, so the scheduler takes them back
first. ``replay`` — the log's results after the checkpoint (:mod:`evomerge.scheduler.replay`):
never evaluated again (no :class:`Evaluated` event), told in log order with the asks interleaved
as they were. With the in-process backend and a seed the finished log equals an uninterrupted run's.

**Budget** (:class:`Budget`): ``max_evals`` bounds :attr:`budget_spent`; ``time_limit`` (seconds
from the start of :meth:`events`) and ``target`` stop asking. What happens to work in progress
when the loop stops:

* ``max_evals`` reached — every candidate already asked is evaluated (it is within budget);
* ``time_limit``, ``target``, :meth:`Scheduler.stop` (first Ctrl-C) — requests not yet started are
  dropped; evaluations already running are **waited for** and recorded and told as usual;
* :meth:`Scheduler.stop` with ``drop=True`` (second Ctrl-C) — the loop returns at once; running
  evaluations are abandoned (the caller closes the backend). ``KeyboardInterrupt`` is re-raised.

A generation larger than the budget left is evaluated as far as the budget goes and never told.
Dropped candidates and a generation cut short stay in :meth:`Scheduler.in_flight`; a checkpoint
written now and resumed with a larger budget takes them back (the logged ones from the replay,
never evaluated twice).

What a driver is told: :mod:`evomerge.scheduler.outcome`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from evomerge.drivers.base import Candidate, Driver, Outcome
from evomerge.errors import ConfigError, RunDirError
from evomerge.evaluator.base import EvalRequest, EvalResult, EvaluatorBackend
from evomerge.objectives import Objectives, Target
from evomerge.scheduler.events import Budget, Evaluated, Event, InFlight, ResumePoint, SchedulerSummary, Scored, Told
from evomerge.scheduler.interrupt import two_stage_sigint
from evomerge.scheduler.outcome import PerExampleLayout, to_outcome

log = logging.getLogger(__name__)

#: ``n`` for a generational driver's ``ask``: "give me all you have" (it returns its generation).
GENERATION_ASK = 1 << 16


def genome_recipe(candidate: Candidate) -> dict[str, Any]:
    """The default request recipe: ``{"genome": [...]}``."""
    return {"genome": np.asarray(candidate.genome, dtype=np.float64).tolist()}


class Scheduler:
    """Runs ``driver`` on ``backend`` until the budget is spent (see the module docstring)."""

    def __init__(
        self,
        driver: Driver,
        backend: EvaluatorBackend,
        objectives: Objectives,
        *,
        budget: Budget | None = None,
        to_recipe: Callable[[Candidate], dict[str, Any]] | None = None,
        per_example: PerExampleLayout | None = None,
        early_stopping: bool = False,
        resume: ResumePoint | None = None,
        split: str = "calibration",
        poll_interval: float = 0.25,
    ):
        self.driver, self.backend, self.objectives = driver, backend, objectives
        self.budget = budget or Budget()
        self.to_recipe = to_recipe or genome_recipe
        self.per_example = per_example or PerExampleLayout()
        self.early_stopping, self.split, self.poll_interval = early_stopping, split, poll_interval
        self.generational = bool(getattr(driver, "generational", False))
        self._n_driver = int(driver.n_objectives)
        if self._n_driver not in (1, len(objectives)):
            raise ConfigError(
                f"driver optimises {self._n_driver} objectives but {len(objectives)} are configured "
                f"({', '.join(objectives.names)})"
            )
        if self.budget.max_evals is not None and self.budget.max_evals < 0:
            raise ConfigError(f"max_evals must be >= 0, got {self.budget.max_evals}")
        self._target = self.budget.target or Target()

        resume = resume or ResumePoint()
        self._replay = resume.replay
        self._incumbent = resume.incumbent
        self._resubmit = [InFlight.from_state(f) for f in resume.in_flight]
        # asked and not yet told, in asking order (what a checkpoint must carry over)
        self._untold: dict[int, InFlight] = {int(f.candidate.id): f for f in self._resubmit}
        if len(self._untold) != len(self._resubmit):
            raise RunDirError("in-flight candidates of the checkpoint repeat an id")
        self._proposed_total = int(resume.told_before) + len(self._resubmit)  # told or in flight
        self._told_total = int(resume.told_before)
        self._budget_spent = int(resume.told_before)

        self._outstanding: dict[int, tuple[Candidate, dict[str, Any]]] = {}  # submitted: (candidate, recipe)
        self._batch: list[Candidate] = []  # generational: the generation being evaluated
        self._batch_outcomes: dict[int, Outcome] = {}
        self._pending_scores: dict[int, float] = {}  # scores of results not told yet (incumbent)
        self._truncated = False  # the current generation was cut by max_evals
        self._asking, self._drop, self._hard_interrupt, self._exhausted = True, False, False, False
        self._stop_reason: str | None = None
        self._stats = dict(evaluated=0, reused=0, failed=0, told=0, busy=0.0)
        self._dropped: list[int] = []
        self._t0 = time.monotonic()

    # -- public ----------------------------------------------------------------------------------

    @property
    def proposed_total(self) -> int:
        return self._proposed_total

    @property
    def told_total(self) -> int:
        return self._told_total

    @property
    def budget_spent(self) -> int:
        return self._budget_spent

    def in_flight(self) -> list[InFlight]:
        """Every candidate asked and not yet told, in asking order — what a checkpoint written now
        must hand to the resumed scheduler (``ResumePoint(in_flight=[f.to_state() for f in ...])``)."""
        return list(self._untold.values())

    def stop(self, drop: bool = False, reason: str = "stopped") -> None:
        """Ask nothing more; with ``drop`` also abandon running evaluations. Thread- and
        signal-safe (it only sets flags; the loop acts on them)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._asking = False
        if drop:
            self._drop = True

    def events(self, handle_sigint: bool = True) -> Iterator[Event]:
        """Run to the end of the budget, yielding :class:`Evaluated` and :class:`Told` events.
        ``handle_sigint``: the first Ctrl-C calls ``stop()``, the second ``stop(drop=True)`` and
        raises ``KeyboardInterrupt`` (main thread only). Close the iterator when leaving it early
        (``contextlib.closing``): queued requests are then dropped."""
        self._t0 = time.monotonic()
        with two_stage_sigint(lambda: self.stop(reason="interrupted"), self._abandon, handle_sigint):
            try:
                yield from self._loop()
            except BaseException:
                self._cancel_queued()
                raise

    def run(self, handle_sigint: bool = True) -> SchedulerSummary:
        """Drain :meth:`events` (for callers that do not record anything) and return the summary."""
        for _ in self.events(handle_sigint):
            pass
        return self.summary()

    def summary(self) -> SchedulerSummary:
        s = self._stats
        untold = [int(c.id) for c in self._batch if int(c.id) in self._batch_outcomes]
        unreplayed = self._replay.unreplayed
        if unreplayed and self._stop_reason == "driver_exhausted":
            log.warning(
                "resume: %d logged result(s) were never proposed again by the driver (ids %s); they stay in the "
                "log but the driver did not learn them",
                len(unreplayed),
                ", ".join(map(str, unreplayed[:10])),
            )
        return SchedulerSummary(
            stop_reason=self._stop_reason or "driver_exhausted",
            evaluated=s["evaluated"],
            reused=s["reused"],
            failed=s["failed"],
            told=s["told"],
            wall_seconds=time.monotonic() - self._t0,
            busy_seconds=s["busy"],
            num_workers=self.backend.num_workers,
            dropped=list(self._dropped) + [cid for cid in self._outstanding if self._drop],
            untold=untold,
            unreplayed=unreplayed,
        )

    # -- loop ------------------------------------------------------------------------------------

    def _abandon(self) -> None:
        self._hard_interrupt = True
        self.stop(drop=True, reason="interrupted")

    def _loop(self) -> Iterator[Event]:
        while True:
            if self._drop:
                self._cancel_queued()
                if self._hard_interrupt:
                    raise KeyboardInterrupt
                return
            self._check_clock()
            if self._asking:
                self._fill()
            taken = self._replay.next()
            if taken is not None:  # a re-proposed known result: told in log order
                self._stats["reused"] += 1
                yield from self._record(taken[0], taken[1].result)
                continue
            if self.backend.pending() == 0:
                if not self._asking or self._exhausted:
                    return
                if self.generational and self._batch:  # cannot happen: a batch in flight is pending
                    raise RuntimeError("generation incomplete but nothing is pending in the backend")
                continue  # the driver was told something: ask again
            for result in self.backend.wait(timeout=self._wait_step()):
                yield from self._on_new_result(result)

    def _wait_step(self) -> float:
        step = self.poll_interval
        if self._asking and self.budget.time_limit is not None:
            step = min(step, max(0.0, self.budget.time_limit - (time.monotonic() - self._t0)))
        return step

    def _check_clock(self) -> None:
        if self._asking and self.budget.time_limit is not None:
            if time.monotonic() - self._t0 >= self.budget.time_limit:
                self._halt("time_limit")
        if not self._asking and self._stop_reason not in ("max_evals", "driver_exhausted"):
            self._cancel_queued()

    def _halt(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
        self._asking = False

    def _cancel_queued(self) -> None:
        for request in self.backend.cancel_queued():
            self._outstanding.pop(request.candidate_id, None)
            self._dropped.append(request.candidate_id)

    def _budget_left(self) -> int | None:
        if self.budget.max_evals is None:
            return None
        return max(0, self.budget.max_evals - self._budget_spent)

    def _in_flight_count(self) -> int:
        return self.backend.pending() + self._replay.waiting

    def _ask_size(self, left: int | None) -> int:
        """How many candidates to ask for now (0: none)."""
        if self.generational:
            # ask for everything: the driver answers with (the rest of) its generation, and fewer
            # than asked tells us the generation is whole even when the budget is not
            return 0 if self._batch else GENERATION_ASK
        busy = self._in_flight_count()
        n = self._replay.ask_limit(self._proposed_total, self.backend.num_workers - busy, nothing_in_flight=busy == 0)
        return n if left is None else min(n, left)

    def _fill(self) -> None:
        """Take back the in-flight candidates of a resumed run, then ask the driver for as much
        work as the workers (steady-state), the driver (generational) or the log's order of asks
        (replaying known results) allow."""
        while self._asking:
            left = self._budget_left()
            if left == 0:
                self._halt("max_evals")
                return
            if self._resubmit:
                candidates = [f.candidate for f in self._resubmit]
                self._resubmit = []
            else:
                candidates = self._ask(left)
                if candidates is None:
                    return
            if left is not None and len(candidates) > left:
                # the generation does not fit the budget: evaluate what does, never tell it
                self._dropped.extend(int(c.id) for c in candidates[left:])
                candidates = candidates[:left]
                self._truncated = True
            self._budget_spent += len(candidates)
            if self.generational:
                self._batch = candidates
                self._batch_outcomes = {}
            for candidate in candidates:
                self._start(candidate)

    def _ask(self, left: int | None) -> list[Candidate] | None:
        """New candidates from the driver, registered as in flight; ``None``: nothing to start."""
        n = self._ask_size(left)
        if n <= 0:
            return None
        candidates = list(self.driver.ask(n))
        if not candidates:
            if self._in_flight_count() == 0 and not self._batch:
                self._exhausted = True
                self._halt("driver_exhausted")
            return None
        if len(candidates) > n:
            raise RuntimeError(f"driver.ask({n}) returned {len(candidates)} candidates")
        for candidate in candidates:
            cid = int(candidate.id)
            if cid in self._untold:
                raise RuntimeError(f"driver proposed candidate id {cid} twice")
            self._untold[cid] = InFlight(candidate)
        self._proposed_total += len(candidates)
        return candidates

    def _start(self, candidate: Candidate) -> None:
        cid = int(candidate.id)
        if cid in self._outstanding:
            raise RuntimeError(f"driver proposed candidate id {cid} twice")
        if self._replay.take(candidate):
            return  # told in log order from the replay
        flight = self._untold.setdefault(cid, InFlight(candidate))
        if not flight.submitted:
            flight.must_beat = self._incumbent if self.early_stopping else None
            flight.submitted = True
        recipe = self.to_recipe(candidate)
        self._outstanding[cid] = (candidate, recipe)
        self.backend.submit(EvalRequest(cid, recipe, self.split, flight.must_beat))

    def _on_new_result(self, result: EvalResult) -> Iterator[Event]:
        entry = self._outstanding.pop(result.candidate_id, None)
        if entry is None:
            raise RuntimeError(f"backend returned candidate {result.candidate_id}, which is not outstanding")
        candidate, recipe = entry
        self._stats["evaluated"] += 1
        self._stats["busy"] += result.busy_seconds
        if not result.ok:
            self._stats["failed"] += 1
            log.warning("candidate %d failed: %s", result.candidate_id, result.error_line)
        outcome = to_outcome(result, self.objectives, self._n_driver, self.per_example)
        genome = np.asarray(candidate.genome, dtype=np.float64).reshape(-1)
        yield Evaluated(candidate, Scored(result, genome, self._proposed_total, outcome, recipe))
        yield from self._record(candidate, result, outcome)

    def _record(self, candidate: Candidate, result: EvalResult, outcome: Outcome | None = None) -> Iterator[Event]:
        """Tell (steady-state) or collect (generational) one result, new or known."""
        if outcome is None:
            outcome = to_outcome(result, self.objectives, self._n_driver, self.per_example)
        if not outcome.failed and self._target.reached(result.objectives):
            self._halt("target")
        self._note_score(result)
        if not self.generational:
            yield from self._tell([candidate], [outcome])
            return
        self._batch_outcomes[int(candidate.id)] = outcome
        if self._batch and not self._truncated and len(self._batch_outcomes) == len(self._batch):
            batch, outcomes = self._batch, [self._batch_outcomes[int(c.id)] for c in self._batch]
            self._batch, self._batch_outcomes = [], {}
            yield from self._tell(batch, outcomes)

    def _note_score(self, result: EvalResult) -> None:
        # the score a told result contributes to the incumbent (noted now, used once it is told)
        if result.ok and not self.objectives.missing(result.objectives):
            self._pending_scores[int(result.candidate_id)] = self.objectives.scalar(result.objectives)

    def _tell(self, candidates: list[Candidate], outcomes: list[Outcome]) -> Iterator[Event]:
        self.driver.tell(candidates, outcomes)
        for candidate in candidates:
            cid = int(candidate.id)
            self._untold.pop(cid, None)
            score = self._pending_scores.pop(cid, None)
            if score is not None and (self._incumbent is None or score > self._incumbent):
                self._incumbent = score
        self._stats["told"] += len(candidates)
        self._told_total += len(candidates)
        yield Told(tuple(int(c.id) for c in candidates), self._told_total)


__all__ = [
    "GENERATION_ASK",
    "Budget",
    "InFlight",
    "ResumePoint",
    "Scheduler",
    "SchedulerSummary",
    "genome_recipe",
]
