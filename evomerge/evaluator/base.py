"""Requests, results, the backend protocol, and the worker that turns one into the other.

A *backend* (in-process, Ray actor pool) moves :class:`EvalRequest` objects to *workers* and
:class:`EvalResult` objects back. A :class:`Worker` lives where the model lives (this process, or
one Ray actor): it is built once from a picklable :class:`WorkerSpec` (loading models is the
expensive part, so it happens once per process, never per candidate) and then evaluates one
request at a time.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from evomerge.registry import resolve_callable

STATUS_OK = "ok"
STATUS_FAILED = "failed"


@dataclass
class EvalRequest:
    """One candidate to evaluate.

    ``recipe`` is a plain JSON-able dict (a parameter-space recipe, a data-flow recipe, or whatever
    a :class:`FunctionWorkerSpec` function expects); ``split`` is the fitness split
    (``calibration`` during search, ``validation`` for held-out scoring); ``must_beat`` lets the
    fitness stop early once the candidate provably cannot beat the incumbent; ``attempt`` counts
    re-submissions after a worker died (0 for the first).
    """

    candidate_id: int
    recipe: dict[str, Any]
    split: str = "calibration"
    must_beat: float | None = None
    attempt: int = 0


@dataclass(frozen=True)
class EvalResult:
    """What one evaluation produced.

    ``objectives``: ``{name: value}`` in each objective's own direction (not yet converted to
    "maximise"); ``per_example``: ``{task: [score per example]}`` (higher is better, the order of
    the task's examples); ``fitness``: the full ``FitnessResult.to_json()`` when the worker ran the
    real fitness; ``error``: one line, then optionally the traceback. The worker never sees
    genomes: what the scheduler adds (genome, order of asks, driver outcome) wraps the result in
    :class:`evomerge.scheduler.Scored`, which leaves it unchanged.
    """

    candidate_id: int
    status: str
    objectives: dict[str, float] = field(default_factory=dict)
    per_example: dict[str, list[float]] | None = None
    fitness: dict[str, Any] | None = None
    error: str | None = None
    merge_seconds: float = 0.0
    eval_seconds: float = 0.0
    worker: str = ""
    attempt: int = 0

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def busy_seconds(self) -> float:
        """Time the worker spent on this candidate (merge + evaluation)."""
        return self.merge_seconds + self.eval_seconds

    @property
    def error_line(self) -> str | None:
        return None if self.error is None else self.error.splitlines()[0]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalResult:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def failure(cls, request: EvalRequest, error: str, worker: str = "", **times: float) -> EvalResult:
        return cls(
            candidate_id=request.candidate_id,
            status=STATUS_FAILED,
            error=error,
            worker=worker,
            attempt=request.attempt,
            **times,
        )


@runtime_checkable
class EvaluatorBackend(Protocol):
    """Where evaluations run. Results come back in completion order (FIFO for one worker)."""

    num_workers: int

    def submit(self, request: EvalRequest) -> None:
        """Queue ``request``; it starts as soon as a worker is free."""
        ...

    def wait(self, timeout: float | None = None) -> list[EvalResult]:
        """Block until at least one result is ready (then return every ready one) or ``timeout``
        seconds pass (then return ``[]``). Returns ``[]`` at once when nothing is pending."""
        ...

    def pending(self) -> int:
        """Requests submitted whose result has not been returned by ``wait`` yet."""
        ...

    def cancel_queued(self) -> list[EvalRequest]:
        """Drop the requests that have not started yet and return them (in-flight ones continue)."""
        ...

    def close(self) -> None: ...


class EvaluationTimeout(Exception):
    """Raised inside a worker when one evaluation exceeds its time limit."""


# --------------------------------------------------------------------------------------------
# What a worker is built from
# --------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """What an evaluate function returns to the worker (which adds status, timings, worker id)."""

    objectives: dict[str, float]
    per_example: dict[str, list[float]] | None = None
    fitness: dict[str, Any] | None = None
    merge_seconds: float = 0.0


class WorkerSpec(Protocol):
    """Picklable recipe for a worker: ``build()`` runs once inside the worker's process and
    returns the function that evaluates one request."""

    def build(self) -> Callable[[EvalRequest], Evaluation]: ...


def _as_float_list(values: Any) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def normalize_per_example(per_example: Any) -> dict[str, list[float]] | None:
    """``None``, ``{task: scores}``, or one bare score vector (stored under ``"scores"``)."""
    if per_example is None:
        return None
    if isinstance(per_example, dict):
        return {str(task): _as_float_list(scores) for task, scores in per_example.items()}
    return {"scores": _as_float_list(per_example)}


@dataclass
class FunctionWorkerSpec:
    """A worker around a plain Python function — tests, benchmarks, the digits world.

    ``fn`` is a callable or a ``"module:name"`` string (preferred across processes: a module-level
    function pickles by reference, so the worker imports it). With ``factory=False`` each request
    calls ``fn(recipe, **kwargs)``; with ``factory=True`` the worker calls ``fn(**kwargs)`` once
    (load data, build a model) and then the returned callable ``g(recipe)`` per request. The
    evaluate function returns ``(objectives, per_example)``, or ``objectives`` alone, where
    ``objectives`` is ``{name: value}`` and ``per_example`` is ``{task: scores}``, one score
    vector, or ``None``.
    """

    fn: Callable | str
    kwargs: dict[str, Any] = field(default_factory=dict)
    factory: bool = False

    def build(self) -> Callable[[EvalRequest], Evaluation]:
        fn = resolve_callable(self.fn, what="worker function")
        kwargs = dict(self.kwargs)
        if self.factory:
            inner = fn(**kwargs)

            def call(recipe):
                return inner(recipe)

        else:

            def call(recipe):
                return fn(recipe, **kwargs)

        def evaluate(request: EvalRequest) -> Evaluation:
            out = call(request.recipe)
            if isinstance(out, tuple):
                if len(out) != 2:
                    raise TypeError(
                        f"evaluate function returned a {len(out)}-tuple; expected (objectives, per_example)"
                    )
                objectives, per_example = out
            else:
                objectives, per_example = out, None
            if not isinstance(objectives, dict):
                raise TypeError(
                    f"evaluate function returned objectives of type {type(objectives).__name__}; expected a dict"
                )
            return Evaluation(
                objectives={str(k): float(v) for k, v in objectives.items()},
                per_example=normalize_per_example(per_example),
            )

        return evaluate


# --------------------------------------------------------------------------------------------
# The worker
# --------------------------------------------------------------------------------------------


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
