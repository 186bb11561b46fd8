"""Requests, results and the two protocols between them: the backend and the worker spec.

A *backend* (in-process, Ray actor pool) moves :class:`EvalRequest` objects to *workers* and
:class:`EvalResult` objects back. A worker (:class:`evomerge.evaluator.worker.Worker`) lives where
the model lives (this process, or one Ray actor): it is built once from a picklable
:class:`WorkerSpec` (loading models is the expensive part, so it happens once per process, never
per candidate) and then evaluates one request at a time. Worker specs: the merge worker
(:mod:`evomerge.evaluator.merge_worker`) and plain functions
(:mod:`evomerge.evaluator.function`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

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


# --------------------------------------------------------------------------------------------
# What a worker is built from, and what its evaluate function returns
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
