"""One process's stint on a run directory: the search loop's consumer.

:meth:`Session.search` starts the backend and the scheduler and reads its events
(:mod:`evomerge.scheduler.events`). Per new result, in the scheduler's order: :class:`Evaluated` →
append its record to ``evaluations.jsonl`` (fsync) → update ``best/`` and ``pareto.json`` → (the
driver is told) → :class:`Told` → checkpoint, every generation or every ``run.checkpoint_every``
tells. A kill at any instant therefore loses nothing the driver has seen.

A checkpoint (:mod:`evomerge.runs.checkpoint`) holds exactly what a resume reads back:

* ``driver`` — the driver's ``state_dict()``;
* ``n_told`` — results the driver has been told (the scheduler's ``told_total``); the first
  ``n_told`` log records are those results;
* ``in_flight`` — candidates handed out and not told (``InFlight.to_state()`` dicts);
* ``rng`` — Python's, NumPy's and torch's global random states;
* ``elapsed`` — search seconds so far (``budget.time_limit`` spans resumes).

A run in stages (:mod:`evomerge.runs.stages`) runs one session per stage over the same log, each
given its :class:`Segment`: ``n_told`` then counts the earlier stages' records too (the log's
first ``n_told`` records are told or closed), the scheduler's counters are the stage's own, and
the checkpoint carries the segment's ``stage`` entry.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evomerge.pareto import ParetoArchive
from evomerge.runs.plan import Plan
from evomerge.runs.records import best_score, make_record, record_genome
from evomerge.runs.store import RunStore, as_float
from evomerge.runs.summary import best_record
from evomerge.scheduler import Budget, Evaluated, Replay, ResumePoint, Scheduler, SchedulerSummary, Told


def rng_state() -> dict[str, Any]:
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any] | None) -> None:
    if not state:
        return
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


@dataclass(frozen=True)
class Segment:
    """The part of the run a session searches: the whole run, or one stage of a staged run.

    ``log_start``: records of the earlier stages (this stage's records follow them in the log);
    ``stage``: the checkpoint's ``stage`` entry, read when each checkpoint is written (``None``:
    no entry); ``progress``: extra keys of ``progress.json``; ``last``: the run's last stage (its
    end scores the best on held-out data and writes ``finished``); ``label``: the progress bar's.
    """

    log_start: int = 0
    stage: Callable[[], dict[str, Any]] | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    last: bool = True
    label: str = "search"


class Session:
    """The records, best, Pareto front, checkpoints and progress of one stint on ``store``.

    ``records``: the log read back (``[]`` for a fresh run); ``told_total``: results the restored
    driver has been told (the checkpoint's ``n_told``), plus the earlier stages' records in a
    staged run (``segment``); ``elapsed``: search seconds before now.
    """

    def __init__(
        self,
        plan: Plan,
        store: RunStore,
        records: list[dict],
        told_total: int,
        elapsed: float,
        segment: Segment | None = None,
    ):
        self.plan = plan
        self.segment = segment or Segment()
        self.problem = plan.problem
        self.store = store
        self.records = records
        self.by_id = {r["id"]: r for r in records}
        self.told_total = told_total
        self.elapsed_before = elapsed
        self.t0 = time.monotonic()
        self.ckpts = store.checkpoints(plan.cfg.run.keep_checkpoints)
        self.archive = ParetoArchive(len(self.problem.objectives))
        self.best = best_record(records)
        for r in records:
            if r.get("values") is not None:
                self.archive.add(r["id"], [as_float(v) for v in r["values"]])
        self._last_ckpt_told = told_total
        self._bar = None

    # -- the search ---------------------------------------------------------------------------
    def search(
        self, driver, replay: Replay, *, in_flight: list | None = None, progress: bool = True
    ) -> SchedulerSummary:
        """Run the search to the end of the budget on a fresh backend, then score the best on
        held-out data. ``replay`` and ``in_flight``: see :class:`~evomerge.scheduler.ResumePoint`."""
        from tqdm.auto import tqdm

        cfg = self.plan.cfg
        backend = self.plan.make_backend()
        try:
            time_left = None
            if cfg.budget.time_limit is not None:
                time_left = max(0.0, cfg.budget.time_limit - self.elapsed_before)
            budget = Budget(max_evals=cfg.budget.max_evals, time_limit=time_left, target=self.plan.target)
            # the incumbent: best score among the told records (a prefix of the segment's log)
            start = self.segment.log_start
            resume = ResumePoint(
                self.told_total - start,
                list(in_flight or []),
                replay,
                best_score(self.records[start : self.told_total]),
            )
            problem = self.problem
            sched = Scheduler(
                driver,
                backend,
                problem.objectives,
                budget=budget,
                to_recipe=lambda c: problem.to_recipe(c.genome),
                per_example=problem.per_example_layout(),
                early_stopping=problem.early_stopping,
                resume=resume,
            )
            self.write_progress("running")
            self._bar = tqdm(
                total=cfg.budget.max_evals,
                initial=len(self.records) - self.segment.log_start,
                desc=self.segment.label,
                unit="eval",
                disable=not progress or None,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            try:
                with closing(sched.events()) as events:
                    for event in events:
                        if isinstance(event, Evaluated):
                            self._log(event)
                        elif isinstance(event, Told):
                            self._told(event, driver, sched)
                summary = sched.summary()
            finally:
                self._bar.close()
                self._bar = None
            if summary.told or not self.ckpts.list():
                self.checkpoint(driver, sched.in_flight())
            if self.segment.last:
                self.validate_on(backend)
        finally:
            backend.close()
        if self.segment.last:
            self.write_progress("finished", stop_reason=summary.stop_reason)
        return summary

    def _log(self, event: Evaluated) -> None:
        recipe = self.problem.record_recipe(event.scored.recipe)
        rec = make_record(self.problem.objectives, self.store, event.candidate, event.scored, recipe=recipe)
        self.store.append(rec)
        self.records.append(rec)
        self.by_id[rec["id"]] = rec
        if rec["score"] is not None and (self.best is None or rec["score"] > as_float(self.best["score"])):
            self.best = rec
            self._write_best()
        if rec["values"] is not None and self.archive.add(rec["id"], rec["values"]):
            self._write_pareto()
        if self._bar is not None:
            self._bar.update(1)
            if self.best is not None:
                self._bar.set_postfix_str(f"best {self.best['score']:.4g} (#{self.best['id']})", refresh=False)

    def _told(self, event: Told, driver, sched: Scheduler) -> None:
        self.told_total = self.segment.log_start + event.told_total
        every = self.plan.cfg.run.checkpoint_every
        if every == "generation" or self.told_total - self._last_ckpt_told >= int(every):
            self.checkpoint(driver, sched.in_flight())

    # -- files --------------------------------------------------------------------------------
    def _write_best(self) -> None:
        self.store.write_best(self.best, self.problem.best_file(self.best))

    def _write_pareto(self) -> None:
        by_id = self.by_id
        self.store.write_pareto(self.problem.objectives.names, [by_id[i] for i in self.archive.ids if i in by_id])

    def refresh_outputs(self) -> None:
        """Rewrite ``best/`` and ``pareto.json`` from the log (a resume: a kill may have cut them)."""
        if self.best is not None:
            self._write_best()
        if len(self.archive):
            self._write_pareto()

    def elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.t0)

    def checkpoint(self, driver, in_flight: list) -> None:
        state = {
            "driver": driver.state_dict(),
            "rng": rng_state(),
            "n_told": self.told_total,
            # asked but not told: the driver holds them as pending and will not propose them again
            "in_flight": [f.to_state() if hasattr(f, "to_state") else dict(f) for f in in_flight],
            "elapsed": self.elapsed(),
        }
        if self.segment.stage is not None:
            state["stage"] = self.segment.stage()  # a staged run's position (evomerge.runs.stages)
        self.ckpts.save(self.told_total, state)
        self._last_ckpt_told = self.told_total
        self.write_progress("running")

    def write_progress(self, state: str, **extra) -> None:
        b = self.plan.cfg.budget
        self.store.write_progress(
            {
                "state": state,
                "max_evals": b.max_evals,
                "time_limit": b.time_limit,
                "elapsed": self.elapsed(),
                "pid": os.getpid(),
                **self.segment.progress,
                **extra,
            },
        )

    def validate_on(self, backend) -> None:
        """Held-out scores of the best candidate (cached in validation.json)."""
        best = self.best
        if best is None:
            return
        cached = self.store.read_json(self.store.validation_path)
        if cached and cached.get("id") == best["id"]:
            return
        self.store.write_validation(validate_record(self.problem, self.store, best, backend))


def validate_record(problem, store: RunStore, record: dict, backend=None) -> dict:
    """``problem.validate`` on ``record`` (its genome read from the run directory)."""
    genome = np.asarray(record_genome(store, record), dtype=np.float64)
    return problem.validate(record, genome, backend)


__all__ = ["Segment", "Session", "rng_state", "set_rng_state", "validate_record"]
