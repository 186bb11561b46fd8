"""The in-process backend: one worker in this process, strict FIFO — the deterministic default.

Evaluation happens inside :meth:`InProcessBackend.wait` (each call evaluates the oldest queued
request — :meth:`InProcessBackend.next_local` — and returns its result), so a seeded run produces
the same log line for line every time, and a ``timeout`` given to ``wait`` cannot interrupt an
evaluation already running (the worker's own ``timeout`` can: see
:class:`~evomerge.evaluator.worker.Worker`).

**Stuck evaluations.** The worker's ``timeout`` interrupts Python code, not native code that never
returns to the interpreter. A watchdog thread therefore waits ``timeout + hard_timeout_grace``
seconds per evaluation; if the evaluation is still running then, nothing in this process can stop
it: the watchdog prints one line and ends the process (exit status :data:`EXIT_STUCK`). A run
stays resumable (its log and checkpoints are always consistent) and counts that candidate's
attempt (``run.max_attempts``).

``num_workers > 1`` makes it a deterministic stand-in for a pool of that many workers: the
scheduler keeps that many requests outstanding (a steady-state driver is asked for a new
candidate while others are still "running", as on a Ray pool) and results come back in submission
order. Evaluations still run one at a time here; what changes is the interleaving of asks and
tells, reproducibly — the search follows the trajectory a pool of that size would.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from evomerge.evaluator.base import EvalRequest, EvalResult, WorkerSpec
from evomerge.evaluator.worker import Worker
from evomerge.validation import parse_options


class InProcessOptions(BaseModel):
    """The ``evaluator`` options of ``backend: inprocess``."""

    model_config = ConfigDict(extra="forbid")

    num_workers: int = Field(default=1, ge=1)  # deterministic slots (see the module docstring)
    timeout: float | None = Field(default=None, gt=0)  # seconds per evaluation (the worker's limit)
    hard_timeout_grace: float = Field(default=30.0, ge=0)  # then the watchdog ends the process


#: Exit status of a process ended by the watchdog (an evaluation stuck in native code).
EXIT_STUCK = 3


class InProcessBackend:
    """One worker, built (models loaded) when the backend is created; ``num_workers`` slots (see
    the module docstring). Options: :class:`InProcessOptions`, as a model or as keywords."""

    Options = InProcessOptions

    def __init__(
        self,
        spec: WorkerSpec,
        options: InProcessOptions | Mapping[str, Any] | None = None,
        *,
        worker_id: str = "inprocess",
        **option_values: Any,
    ):
        self.options = parse_options(self.Options, {**dict(options or {}), **option_values}, prefix="evaluator.")
        self.num_workers = self.options.num_workers
        self.worker = Worker(spec, worker_id=worker_id, timeout=self.options.timeout)
        self._queue: deque[EvalRequest] = deque()
        self._closed = False

    def submit(self, request: EvalRequest) -> None:
        if self._closed:
            raise RuntimeError("submit() on a closed InProcessBackend")
        self._queue.append(request)

    def next_local(self) -> EvalRequest | None:
        """The request the next :meth:`wait` evaluates, in this process (``None``: none queued)."""
        return self._queue[0] if self._queue else None

    def wait(self, timeout: float | None = None) -> list[EvalResult]:
        if not self._queue:
            return []
        request = self._queue.popleft()
        limit = self.options.timeout
        if limit is None:
            return [self.worker.evaluate(request)]
        done = threading.Event()
        watchdog = threading.Thread(
            target=_watch, args=(done, request.candidate_id, limit, self.options.hard_timeout_grace), daemon=True
        )
        watchdog.start()
        try:
            return [self.worker.evaluate(request)]
        finally:
            done.set()

    def pending(self) -> int:
        return len(self._queue)

    def cancel_queued(self) -> list[EvalRequest]:
        dropped = list(self._queue)
        self._queue.clear()
        return dropped

    def close(self) -> None:
        self._queue.clear()
        self._closed = True

    def __enter__(self) -> InProcessBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _watch(done: threading.Event, candidate_id: int, limit: float, grace: float) -> None:
    start = time.monotonic()
    if done.wait(limit + grace):
        return
    sys.stderr.write(
        f"error: candidate {candidate_id} has run {time.monotonic() - start:.0f} s, past evaluator.timeout={limit:g} s, "
        "in code that cannot be interrupted; the process stops here and the run can be resumed "
        "(the candidate counts one attempt; after run.max_attempts it is recorded as failed)\n"
    )
    sys.stderr.flush()
    os._exit(EXIT_STUCK)
