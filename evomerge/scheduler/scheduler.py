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

Order of side effects for every *new* result: ``on_result(candidate, result)`` (the run store
appends it to ``evaluations.jsonl``) → ``driver.tell`` → ``on_tell(n_told)`` (the run decides
whether to checkpoint). A crash therefore never loses a result the driver has seen. With the
in-process backend the whole sequence is deterministic.

**Resume.** A run resumes from a checkpoint (the driver's state after ``evals_done`` tells) and
its log. Two things carry the state across:

* ``in_flight`` — what :meth:`Scheduler.in_flight` returned when the checkpoint was written: every
  candidate the driver had handed out and not yet been told (running, queued, dropped by a stop,
  cut from a generation by the budget, or waiting for the rest of its generation), with the
  ``must_beat`` it was submitted with. The restored driver still holds these as pending and will
  never propose them again, so the scheduler takes them back first, before it asks for anything
  new (a generational driver's in-flight candidates are its current generation).
* ``known_results`` — the log's records after the checkpoint, **in log order** (the order their
  results arrived and, for a steady-state driver, were told). A candidate with a known result is
  never evaluated again (``on_result`` is not called: the line is in the log already); its logged
  genome must equal the re-proposed one, else :class:`RunDirError`.

Known results are told in log order, and every new result arrived after all of them, so none is
told before the known ones. The asks are interleaved with those tells as they were: each new
result records ``asked`` (candidates handed out so far when it arrived, see
:attr:`EvalResult.asked`), and before the known result ``k`` is told the scheduler asks until
``asked`` reaches ``k.asked`` and no further. A steady-state driver whose proposals depend on what
it was told (M2N2) therefore re-proposes exactly the logged candidates on any backend — also on a
Ray pool, whose completion order no rerun reproduces — and with the in-process backend and a seed
the finished log equals an uninterrupted run's. (This assumes, as all our drivers guarantee, that
``ask(a + b)`` proposes what ``ask(a)`` then ``ask(b)`` would.) Should the log and the driver
disagree anyway (a log written without ``asked``, a driver that is not deterministic), the
scheduler falls back to telling known results as their candidates come back, and reports the
ones that never did in :attr:`SchedulerSummary.unreplayed`.

**Budget** (:class:`Budget`): ``max_evals`` counts candidates taken from the driver or from
``in_flight`` (evaluated or answered from ``known_results``) plus ``evals_done`` from before this
scheduler; ``time_limit``
(seconds from :meth:`Scheduler.run`) and ``target`` stop asking. What happens to work in progress
when the loop stops:

* ``max_evals`` reached — every candidate already asked is evaluated (it is within budget);
* ``time_limit``, ``target``, :meth:`Scheduler.stop` (first Ctrl-C) — requests not yet started are
  dropped; evaluations already running are **waited for** and recorded and told as usual;
* :meth:`Scheduler.stop` with ``drop=True`` (second Ctrl-C) — the loop returns at once; running
  evaluations are abandoned (the caller closes the backend). ``KeyboardInterrupt`` is re-raised.

A generation larger than the budget left is evaluated as far as the budget goes and never told.
Dropped candidates and a generation cut short stay in :meth:`Scheduler.in_flight`; a checkpoint
written now and resumed with a larger budget takes them back (the logged ones from
``known_results``, never evaluated twice).

**Outcomes.** A driver with ``n_objectives == len(objectives)`` is told the signed values, a
single-objective driver over several objectives the scalarisation
(:meth:`evomerge.objectives.Objectives.driver_values`). ``per_example`` (M2N2) is the
concatenation of the result's per-task score vectors in ``per_example_tasks`` order (default: task
names sorted), each right-padded with zeros to its task's size — the examples an early-stopped
candidate never reached count as not solved. Give ``per_example_sizes`` (the calibration split's
size per task) when early stopping is on; otherwise the largest vector seen defines the size. M2N2
configs should disable early stopping so no padding happens.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evomerge.drivers.base import Candidate, Driver, Outcome
from evomerge.errors import ConfigError, RunDirError
from evomerge.evaluator.base import EvalRequest, EvalResult, EvaluatorBackend
from evomerge.objectives import Objectives, Target
from evomerge.scheduler.replay import Replay

log = logging.getLogger(__name__)

#: ``n`` for a generational driver's ``ask``: "give me all you have" (it returns its generation).
GENERATION_ASK = 1 << 16


@dataclass
class Budget:
    """When to stop asking. ``target``: built by :meth:`Objectives.target` (reached by a result
    whose every named objective is at or beyond its threshold in its own direction)."""

    max_evals: int | None = None
    time_limit: float | None = None
    target: Target | None = None


@dataclass
class SchedulerSummary:
    stop_reason: str  # max_evals | time_limit | target | stopped | interrupted | driver_exhausted
    evaluated: int  # new results (on_result called)
    reused: int  # answered from known_results
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


def recipe_dict(recipe: Any) -> dict[str, Any]:
    """A recipe object (pydantic model) or dict → a JSON-able dict for an :class:`EvalRequest`."""
    if isinstance(recipe, Mapping):
        return dict(recipe)
    dump = getattr(recipe, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    raise TypeError(f"cannot turn a {type(recipe).__name__} into a recipe dict")


def _genome_recipe(candidate: Candidate) -> dict[str, Any]:
    return {"genome": np.asarray(candidate.genome, dtype=np.float64).tolist()}


class Scheduler:
    """Runs ``driver`` on ``backend`` until the budget is spent (see the module docstring).

    ``to_recipe(candidate) -> dict`` builds the request's recipe (default ``{"genome": [...]}``;
    a run passes ``lambda c: recipe_dict(space.to_recipe(c.genome))``). ``must_beat()`` (optional)
    is called at each submit and its value sent with the request for early stopping.
    ``known_results`` (log order), ``in_flight`` and ``evals_done`` (tells before this scheduler)
    resume a run: see the module docstring.
    """

    def __init__(
        self,
        driver: Driver,
        backend: EvaluatorBackend,
        budget: Budget | None,
        on_result: Callable[[Candidate, EvalResult], None] | None,
        on_tell: Callable[[int], None] | None = None,
        replay: Replay | None = None,
        *,
        objectives: Objectives,
        to_recipe: Callable[[Candidate], dict[str, Any]] | None = None,
        split: str = "calibration",
        must_beat: Callable[[], float | None] | None = None,
        per_example_tasks: Sequence[str] | None = None,
        per_example_sizes: Mapping[str, int] | None = None,
        evals_done: int = 0,
        in_flight: Sequence[InFlight | Candidate | Mapping[str, Any]] | None = None,
        poll_interval: float = 0.25,
    ):
        self.driver = driver
        self.backend = backend
        self.budget = budget or Budget()
        self.on_result = on_result
        self.on_tell = on_tell
        self.objectives = objectives
        self.to_recipe = to_recipe or _genome_recipe
        self.split = split
        self.must_beat = must_beat
        self.per_example_tasks = list(per_example_tasks) if per_example_tasks is not None else None
        self._sizes: dict[str, int] = dict(per_example_sizes or {})
        self.poll_interval = poll_interval
        self.generational = bool(getattr(driver, "generational", False))

        n_obj = int(driver.n_objectives)
        if n_obj not in (1, len(self.objectives)):
            raise ConfigError(
                f"driver optimises {n_obj} objectives but {len(self.objectives)} are configured "
                f"({', '.join(o.name for o in self.objectives)})"
            )
        self._multi = n_obj > 1
        self._target = self.budget.target or Target()
        if self.budget.max_evals is not None and self.budget.max_evals < 0:
            raise ConfigError(f"max_evals must be >= 0, got {self.budget.max_evals}")

        self._replay = replay or Replay()  # the log's results after the checkpoint (resume)
        self._resubmit = [InFlight.from_state(f) for f in (in_flight or [])]
        # asked and not yet told, in asking order (what a checkpoint must carry over)
        self._untold: dict[int, InFlight] = {int(f.candidate.id): f for f in self._resubmit}
        if len(self._untold) != len(self._resubmit):
            raise RunDirError("in-flight candidates of the checkpoint repeat an id")
        self._asked = int(evals_done) + len(self._resubmit)  # every asked candidate is told or in flight

        self._taken = int(evals_done)  # candidates counted against max_evals
        self._outstanding: dict[int, Candidate] = {}  # submitted, result not yet received
        self._batch: list[Candidate] = []  # generational: the generation being evaluated
        self._batch_outcomes: dict[int, Outcome] = {}
        self._asking = True
        self._drop = False
        self._hard_interrupt = False
        self._truncated = False  # the current generation was cut by max_evals
        self._stop_reason: str | None = None
        self._exhausted = False
        self._stats = dict(evaluated=0, reused=0, failed=0, told=0, busy=0.0)
        self._dropped: list[int] = []

    # -- public ----------------------------------------------------------------------------------

    @property
    def asked(self) -> int:
        """Candidates the driver has handed out so far, across resumes."""
        return self._asked

    def in_flight(self) -> list[InFlight]:
        """Every candidate asked and not yet told, in asking order — what a checkpoint written now
        must hand to the resumed scheduler (``in_flight=[f.to_state() for f in ...]``)."""
        return list(self._untold.values())

    def stop(self, drop: bool = False, reason: str = "stopped") -> None:
        """Ask nothing more; with ``drop`` also abandon running evaluations. Thread- and
        signal-safe (it only sets flags; the loop acts on them)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._asking = False
        if drop:
            self._drop = True

    def run(self, handle_sigint: bool = True) -> SchedulerSummary:
        """Run to the end of the budget. ``handle_sigint``: the first Ctrl-C calls ``stop()``,
        the second ``stop(drop=True)`` and raises ``KeyboardInterrupt`` (main thread only)."""
        self._t0 = time.monotonic()
        with self._sigint(handle_sigint):
            try:
                self._loop()
            except BaseException:
                self._cancel_queued()
                raise
        return self._summary()

    # -- loop ------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            if self._drop:
                self._cancel_queued()
                if self._hard_interrupt:
                    raise KeyboardInterrupt
                return
            self._check_clock()
            if self._asking:
                self._fill()
            if self._deliver_known():
                continue
            if self.backend.pending() == 0:
                if not self._asking or self._exhausted:
                    return
                if self.generational and self._batch:  # cannot happen: a batch in flight is pending
                    raise RuntimeError("generation incomplete but nothing is pending in the backend")
                continue  # the driver was told something: ask again
            for result in self.backend.wait(timeout=self._wait_step()):
                self._on_new_result(result)

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
        return max(0, self.budget.max_evals - self._taken)

    def _in_flight_count(self) -> int:
        return self.backend.pending() + self._replay.waiting

    def _ask_size(self, left: int | None) -> int:
        """How many candidates to ask for now (0: none)."""
        if self.generational:
            # ask for everything: the driver answers with (the rest of) its generation, and fewer
            # than asked tells us the generation is whole even when the budget is not
            return 0 if self._batch else GENERATION_ASK
        n = self.backend.num_workers - self._in_flight_count()
        n = self._replay.ask_limit(self._asked, n, nothing_in_flight=self._in_flight_count() == 0)
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
                n = self._ask_size(left)
                if n <= 0:
                    return
                candidates = list(self.driver.ask(n))
                if not candidates:
                    if self._in_flight_count() == 0 and not self._batch:
                        self._exhausted = True
                        self._halt("driver_exhausted")
                    return
                if len(candidates) > n:
                    raise RuntimeError(f"driver.ask({n}) returned {len(candidates)} candidates")
                for candidate in candidates:
                    cid = int(candidate.id)
                    if cid in self._untold:
                        raise RuntimeError(f"driver proposed candidate id {cid} twice")
                    self._untold[cid] = InFlight(candidate)
                self._asked += len(candidates)
            if left is not None and len(candidates) > left:
                # the generation does not fit the budget: evaluate what does, never tell it
                self._dropped.extend(int(c.id) for c in candidates[left:])
                candidates = candidates[:left]
                self._truncated = True
            self._taken += len(candidates)
            if self.generational:
                self._batch = candidates
                self._batch_outcomes = {}
            for candidate in candidates:
                self._start(candidate)

    def _start(self, candidate: Candidate) -> None:
        cid = int(candidate.id)
        if cid in self._outstanding:
            raise RuntimeError(f"driver proposed candidate id {cid} twice")
        if self._replay.take(candidate):
            return  # told in log order by _deliver_known
        flight = self._untold.setdefault(cid, InFlight(candidate))
        if not flight.submitted:
            flight.must_beat = self.must_beat() if self.must_beat is not None else None
            flight.submitted = True
        self._outstanding[cid] = candidate
        self.backend.submit(EvalRequest(cid, self.to_recipe(candidate), self.split, flight.must_beat))

    def _deliver_known(self) -> bool:
        """Tell one re-proposed known result (see :meth:`Replay.next`)."""
        taken = self._replay.next()
        if taken is None:
            return False
        candidate, known = taken
        self._stats["reused"] += 1
        self._record(candidate, known.result)
        return True

    def _on_new_result(self, result: EvalResult) -> None:
        candidate = self._outstanding.pop(result.candidate_id, None)
        if candidate is None:
            raise RuntimeError(f"backend returned candidate {result.candidate_id}, which is not outstanding")
        result.genome = np.asarray(candidate.genome, dtype=np.float64).reshape(-1).tolist()
        result.asked = self._asked
        self._stats["evaluated"] += 1
        self._stats["busy"] += result.busy_seconds
        if not result.ok:
            self._stats["failed"] += 1
            log.warning("candidate %d failed: %s", result.candidate_id, result.error_line)
        if self.on_result is not None:
            self.on_result(candidate, result)
        self._record(candidate, result)

    def _record(self, candidate: Candidate, result: EvalResult) -> None:
        """Tell (steady-state) or collect (generational) one result, new or known."""
        outcome = self.outcome(result)
        if not outcome.failed and self._reached_target(result):
            self._halt("target")
        if not self.generational:
            self._tell([candidate], [outcome])
            return
        self._batch_outcomes[int(candidate.id)] = outcome
        self._maybe_tell_batch()

    def _maybe_tell_batch(self) -> None:
        if self._batch and not self._truncated and len(self._batch_outcomes) == len(self._batch):
            batch, outcomes = self._batch, [self._batch_outcomes[int(c.id)] for c in self._batch]
            self._batch, self._batch_outcomes = [], {}
            self._tell(batch, outcomes)

    def _tell(self, candidates: list[Candidate], outcomes: list[Outcome]) -> None:
        self.driver.tell(candidates, outcomes)
        for candidate in candidates:
            self._untold.pop(int(candidate.id), None)
        self._stats["told"] += len(candidates)
        if self.on_tell is not None:
            self.on_tell(self._stats["told"])

    # -- conversions -----------------------------------------------------------------------------

    def outcome(self, result: EvalResult) -> Outcome:
        """The driver's view of ``result``: maximised values, aligned per-example vector."""
        n = int(self.driver.n_objectives)
        if not result.ok:
            return Outcome(result.candidate_id, np.full(n, -np.inf), None, failed=True, error=result.error_line)
        missing = self.objectives.missing(result.objectives)
        if missing:
            error = (
                f"result has no objective {', '.join(missing)} (got {', '.join(sorted(result.objectives)) or 'none'})"
            )
            return Outcome(result.candidate_id, np.full(n, -np.inf), None, failed=True, error=error)
        values = self.objectives.driver_values(result.objectives, self._multi)
        if not np.all(np.isfinite(values)):
            return Outcome(result.candidate_id, np.full(n, -np.inf), None, failed=True, error="objective is not finite")
        return Outcome(result.candidate_id, values, self._per_example(result))

    def _per_example(self, result: EvalResult) -> np.ndarray | None:
        if not result.per_example:
            return None
        tasks = self.per_example_tasks or sorted(result.per_example)
        parts = []
        for task in tasks:
            scores = np.asarray(result.per_example.get(task, []), dtype=np.float64).reshape(-1)
            size = max(self._sizes.get(task, 0), scores.size)
            self._sizes[task] = size
            parts.append(np.pad(scores, (0, size - scores.size)))
        return np.concatenate(parts) if parts else None

    def _reached_target(self, result: EvalResult) -> bool:
        return self._target.reached(result.objectives)

    # -- plumbing --------------------------------------------------------------------------------

    @contextmanager
    def _sigint(self, enabled: bool) -> Iterator[None]:
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return

        presses = [0]

        def on_sigint(signum, frame):
            presses[0] += 1
            if presses[0] == 1:
                log.warning("interrupted: finishing running evaluations, then stopping (Ctrl-C again to abandon them)")
                self.stop(reason="interrupted")
                return
            log.warning("interrupted again: abandoning running evaluations")
            self._hard_interrupt = True
            self.stop(drop=True, reason="interrupted")
            signal.signal(signal.SIGINT, previous)

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _summary(self) -> SchedulerSummary:
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
