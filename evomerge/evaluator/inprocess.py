"""The in-process backend: one worker in this process, strict FIFO — the deterministic default.

Evaluation happens inside :meth:`InProcessBackend.wait` (each call evaluates the oldest queued
request and returns its result), so a seeded run produces the same log line for line every time,
and a ``timeout`` given to ``wait`` cannot interrupt an evaluation already running (the worker's
own ``timeout`` can: see :class:`~evomerge.evaluator.base.Worker`).
"""

from __future__ import annotations

from collections import deque

from evomerge.evaluator.base import EvalRequest, EvalResult, Worker, WorkerSpec


class InProcessBackend:
    """``num_workers == 1``; the worker is built (models loaded) when the backend is created."""

    num_workers = 1

    def __init__(self, spec: WorkerSpec, *, worker_id: str = "inprocess", timeout: float | None = None):
        self.worker = Worker(spec, worker_id=worker_id, timeout=timeout)
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

    def __enter__(self) -> "InProcessBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
