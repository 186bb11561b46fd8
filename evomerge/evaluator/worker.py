"""The worker: builds the evaluate function once, then turns requests into results.

The worker's one promise: **an evaluation never crashes the worker.** Whatever a candidate does —
raise, run out of memory, score NaN, exceed its time limit — comes back as an ``EvalResult`` with
``status == "failed"`` and the error, and the worker is ready for the next request. Only the death
of the process itself (killed, segfault, ``os._exit``) escapes, and the Ray backend handles that by
replacing the actor.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from evomerge.evaluator.base import STATUS_OK, EvalRequest, EvalResult, WorkerSpec


class EvaluationTimeout(Exception):
    """Raised inside a worker when one evaluation exceeds its time limit."""


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`EvaluationTimeout` in this thread after ``seconds``.

    Uses ``SIGALRM``, which only the main thread of a process can receive; elsewhere (and on
    platforms without it) the limit is not enforced here — the Ray backend then enforces it from
    outside by replacing the actor.
    """
    usable = (
        seconds is not None
        and seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise EvaluationTimeout(f"evaluation exceeded its time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _release_accelerator_memory() -> None:
    """After an out-of-memory error the caching allocator still holds the failed batch."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Builds the evaluate function from ``spec`` once, then evaluates requests one at a time.

    ``timeout`` (seconds, optional) bounds one evaluation; exceeding it fails that candidate.
    After any failure the worker calls the evaluate function's ``reset()`` when it has one, so a
    model evaluator can restore a consistent live model (an in-place merge interrupted half-way
    leaves tensors of two recipes).
    """

    def __init__(self, spec: WorkerSpec, worker_id: str | None = None, timeout: float | None = None):
        self.worker_id = worker_id or default_worker_id()
        self.timeout = timeout
        self._spec = spec
        self._evaluate = spec.build()

    def evaluate(self, request: EvalRequest) -> EvalResult:
        start = time.perf_counter()
        try:
            with _time_limit(self.timeout):
                evaluation = self._evaluate(request)
            bad = [name for name, value in evaluation.objectives.items() if not math.isfinite(value)]
            if bad:
                raise FloatingPointError(
                    "objective " + ", ".join(f"{n}={evaluation.objectives[n]}" for n in bad) + " is not finite"
                )
        except Exception as exc:  # every failure of a candidate is a result, never a crash
            elapsed = time.perf_counter() - start
            error = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
            reset = getattr(self._evaluate, "reset", None)
            if reset is not None:
                try:
                    reset()
                except Exception as reset_exc:  # noqa: BLE001 - reported, worker keeps going
                    error += f" (and resetting the worker failed: {reset_exc})"
            if _is_out_of_memory(exc):
                _release_accelerator_memory()
            return EvalResult.failure(
                request,
                error + "\n" + traceback.format_exc(),
                worker=self.worker_id,
                eval_seconds=elapsed,
            )
        total = time.perf_counter() - start
        merge_seconds = min(max(evaluation.merge_seconds, 0.0), total)
        return EvalResult(
            candidate_id=request.candidate_id,
            status=STATUS_OK,
            objectives=dict(evaluation.objectives),
            per_example=evaluation.per_example,
            fitness=evaluation.fitness,
            merge_seconds=merge_seconds,
            eval_seconds=total - merge_seconds,
            worker=self.worker_id,
            attempt=request.attempt,
        )


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()
