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

**Resume.** ``known_results`` maps candidate ids to results already in the log. Deterministic
drivers restored from a checkpoint re-propose the same candidates with the same ids; for those the
logged result is told instead of evaluating again (``on_result`` is not called: the line is in the
log already). The logged genome must equal the re-proposed one, else :class:`RunDirError`.

**Budget** (:class:`Budget`): ``max_evals`` counts candidates taken from the driver (evaluated or
answered from ``known_results``) plus ``evals_done`` from before this scheduler; ``time_limit``
(seconds from :meth:`Scheduler.run`) and ``target`` stop asking. What happens to work in progress
when the loop stops:

* ``max_evals`` reached — every candidate already asked is evaluated (it is within budget);
* ``time_limit``, ``target``, :meth:`Scheduler.stop` (first Ctrl-C) — requests not yet started are
  dropped; evaluations already running are **waited for** and recorded and told as usual;
* :meth:`Scheduler.stop` with ``drop=True`` (second Ctrl-C) — the loop returns at once; running
  evaluations are abandoned (the caller closes the backend). ``KeyboardInterrupt`` is re-raised.

A generation larger than the budget left is evaluated as far as the budget goes and never told.
Dropped candidates were never told to the driver, and a generation cut short is never told either:
a resumed deterministic driver proposes them again, and any that were logged are taken from
``known_results`` (never evaluated twice).

**Outcomes.** ``objective_spec`` is a list of ``(name, direction, weight)``. A driver with
``n_objectives == len(objective_spec)`` is told ``values[i] = s_i · v_i`` with ``s_i = +1`` for
``maximize`` and ``-1`` for ``minimize`` (weights unused); a single-objective driver over several
objectives is told the scalarisation ``Σ_i w_i · s_i · v_i``. ``per_example`` (M2N2) is the
concatenation of the result's per-task score vectors in ``per_example_tasks`` order (default: task
names sorted), each right-padded with zeros to its task's size — the examples an early-stopped
candidate never reached count as not solved. Give ``per_example_sizes`` (the calibration split's
size per task) when early stopping is on; otherwise the largest vector seen defines the size. M2N2
configs should disable early stopping so no padding happens.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from evomerge.drivers.base import Candidate, Driver, Outcome
from evomerge.errors import ConfigError, RunDirError
from evomerge.evaluator.base import EvalRequest, EvalResult, EvaluatorBackend

log = logging.getLogger(__name__)

DIRECTIONS = {"maximize": 1.0, "minimize": -1.0}

#: ``n`` for a generational driver's ``ask``: "give me all you have" (it returns its generation).
GENERATION_ASK = 1 << 16


@dataclass(frozen=True)
class ObjectiveSpec:
    name: str
    direction: str = "maximize"
    weight: float = 1.0

    @property
    def sign(self) -> float:
        return DIRECTIONS[self.direction]


def parse_objective_spec(spec: Sequence[Any]) -> list[ObjectiveSpec]:
    """``ObjectiveSpec`` objects, ``(name, direction, weight)`` tuples or dicts with those keys."""
    out = []
    for item in spec:
        if isinstance(item, ObjectiveSpec):
            obj = item
        elif isinstance(item, Mapping):
            obj = ObjectiveSpec(str(item["name"]), str(item.get("direction", "maximize")), float(item.get("weight", 1.0)))
        else:
            obj = ObjectiveSpec(*item)
        if obj.direction not in DIRECTIONS:
            raise ConfigError(f"objective {obj.name!r}: direction must be maximize or minimize, got {obj.direction!r}")
        out.append(obj)
    if not out:
        raise ConfigError("objectives: at least one objective is required")
    names = [o.name for o in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives: names must be unique, got {names}")
    return out


@dataclass
class Budget:
    """When to stop asking. ``target``: ``{objective: threshold}`` (a bare number means the first
    objective) — reached by a result whose every named objective is at or beyond its threshold in
    its own direction."""

    max_evals: int | None = None
    time_limit: float | None = None
    target: dict[str, float] | float | None = None


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

    @property
    def utilization(self) -> float:
        """Σ busy time / (workers × wall time)."""
        denom = self.num_workers * self.wall_seconds
        return self.busy_seconds / denom if denom > 0 else 0.0


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
    """

    def __init__(
        self,
        driver: Driver,
        backend: EvaluatorBackend,
        budget: Budget | None,
        on_result: Callable[[Candidate, EvalResult], None] | None,
        on_tell: Callable[[int], None] | None = None,
        known_results: Mapping[int, EvalResult] | None = None,
        *,
        objective_spec: Sequence[Any],
        to_recipe: Callable[[Candidate], dict[str, Any]] | None = None,
        split: str = "calibration",
        must_beat: Callable[[], float | None] | None = None,
        per_example_tasks: Sequence[str] | None = None,
        per_example_sizes: Mapping[str, int] | None = None,
        evals_done: int = 0,
        poll_interval: float = 0.25,
    ):
        self.driver = driver
        self.backend = backend
        self.budget = budget or Budget()
        self.on_result = on_result
        self.on_tell = on_tell
        self.known_results = dict(known_results or {})
        self.objectives = parse_objective_spec(objective_spec)
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
        self._scalarise = n_obj == 1 and len(self.objectives) > 1
        self._target = self._parse_target(self.budget.target)
        if self.budget.max_evals is not None and self.budget.max_evals < 0:
            raise ConfigError(f"max_evals must be >= 0, got {self.budget.max_evals}")

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

    def _fill(self) -> None:
        """Ask the driver for as much work as the workers (steady-state) or the driver
        (generational) allow; known results are told on the spot, so loop until neither gives."""
        while self._asking:
            left = self._budget_left()
            if left == 0:
                self._halt("max_evals")
                return
            if self.generational:
                if self._batch:
                    return
                # ask for everything: the driver answers with (the rest of) its generation, and
                # fewer than asked tells us the generation is whole even when the budget is not
                n = GENERATION_ASK
            else:
                free = self.backend.num_workers - self.backend.pending()
                if free <= 0:
                    return
                n = free if left is None else min(free, left)
            candidates = list(self.driver.ask(n))
            if not candidates:
                if self.backend.pending() == 0 and not self._batch:
                    self._exhausted = True
                    self._halt("driver_exhausted")
                return
            if len(candidates) > n:
                raise RuntimeError(f"driver.ask({n}) returned {len(candidates)} candidates")
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
            if self.generational:
                self._maybe_tell_batch()

    def _start(self, candidate: Candidate) -> None:
        cid = int(candidate.id)
        if cid in self._outstanding:
            raise RuntimeError(f"driver proposed candidate id {cid} twice")
        known = self.known_results.pop(cid, None)
        if known is not None:
            self._check_known(candidate, known)
            self._stats["reused"] += 1
            self._record(candidate, known)
            return
        self._outstanding[cid] = candidate
        must_beat = self.must_beat() if self.must_beat is not None else None
        self.backend.submit(EvalRequest(cid, self.to_recipe(candidate), self.split, must_beat))

    def _check_known(self, candidate: Candidate, known: EvalResult) -> None:
        if known.genome is None:
            return
        ours = np.asarray(candidate.genome, dtype=np.float64).reshape(-1)
        logged = np.asarray(known.genome, dtype=np.float64).reshape(-1)
        if ours.shape != logged.shape or not np.allclose(ours, logged, rtol=0.0, atol=1e-12):
            diff = "shape " + str(logged.shape) + " vs " + str(ours.shape) if ours.shape != logged.shape else (
                f"max |difference| {float(np.max(np.abs(ours - logged))):.3g}"
            )
            raise RunDirError(
                f"candidate {candidate.id}: the resumed driver proposed a different genome than "
                f"evaluations.jsonl holds ({diff}); the checkpoint and the log do not belong together"
            )

    def _on_new_result(self, result: EvalResult) -> None:
        candidate = self._outstanding.pop(result.candidate_id, None)
        if candidate is None:
            raise RuntimeError(f"backend returned candidate {result.candidate_id}, which is not outstanding")
        result.genome = np.asarray(candidate.genome, dtype=np.float64).reshape(-1).tolist()
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
        self._stats["told"] += len(candidates)
        if self.on_tell is not None:
            self.on_tell(self._stats["told"])

    # -- conversions -----------------------------------------------------------------------------

    def outcome(self, result: EvalResult) -> Outcome:
        """The driver's view of ``result``: maximised values, aligned per-example vector."""
        n = int(self.driver.n_objectives)
        if not result.ok:
            return Outcome(result.candidate_id, np.full(n, -np.inf), None, failed=True, error=result.error_line)
        missing = [o.name for o in self.objectives if o.name not in result.objectives]
        if missing:
            error = f"result has no objective {', '.join(missing)} (got {', '.join(sorted(result.objectives)) or 'none'})"
            return Outcome(result.candidate_id, np.full(n, -np.inf), None, failed=True, error=error)
        signed = np.array([o.sign * float(result.objectives[o.name]) for o in self.objectives])
        if self._scalarise:
            values = np.array([float(sum(o.weight * s for o, s in zip(self.objectives, signed)))])
        else:
            values = signed
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

    def _parse_target(self, target: Any) -> dict[str, float]:
        if target is None:
            return {}
        if not isinstance(target, Mapping):
            return {self.objectives[0].name: float(target)}
        names = {o.name for o in self.objectives}
        unknown = sorted(set(target) - names)
        if unknown:
            raise ConfigError(f"target names unknown objective {unknown[0]!r}: expected one of {sorted(names)}")
        return {str(k): float(v) for k, v in target.items()}

    def _reached_target(self, result: EvalResult) -> bool:
        if not self._target:
            return False
        by_name = {o.name: o for o in self.objectives}
        for name, threshold in self._target.items():
            value = float(result.objectives.get(name, math.nan))
            if not (by_name[name].sign * (value - threshold) >= 0):
                return False
        return True

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
        )
