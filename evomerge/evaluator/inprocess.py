"""The in-process backend: one worker in this process, strict FIFO — the deterministic default.

Evaluation happens inside :meth:`InProcessBackend.wait` (each call evaluates the oldest queued
request and returns its result), so a seeded run produces the same log line for line every time,
and a ``timeout`` given to ``wait`` cannot interrupt an evaluation already running (the worker's
own ``timeout`` can: see :class:`~evomerge.evaluator.worker.Worker`).

``num_workers > 1`` makes it a deterministic stand-in for a pool of that many workers: the
scheduler keeps that many requests outstanding (a steady-state driver is asked for a new
candidate while others are still "running", as on a Ray pool) and results come back in submission
order. Evaluations still run one at a time here; what changes is the interleaving of asks and
tells, reproducibly — the search follows the trajectory a pool of that size would.
"""

from __future__ import annotations

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

    def wait(self, timeout: float | None = None) -> list[EvalResult]:
        if not self._queue:
            return []
        request = self._queue.popleft()
        return [self.worker.evaluate(request)]

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
