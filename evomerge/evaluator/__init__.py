"""Evaluators: merge a candidate's recipe into a live model, score it, report back.

``EvalRequest`` → backend → :class:`Worker` → ``EvalResult``. Backends: :class:`InProcessBackend`
(one worker here, deterministic) and :class:`~evomerge.evaluator.ray_pool.RayPoolBackend` (an
actor pool; imported lazily so that ``import evomerge.evaluator`` never imports Ray).
"""

from __future__ import annotations

from typing import Any

from evomerge.evaluator.base import (
    STATUS_FAILED,
    STATUS_OK,
    EvalRequest,
    EvalResult,
    Evaluation,
    EvaluationTimeout,
    EvaluatorBackend,
    FunctionWorkerSpec,
    Worker,
    WorkerSpec,
)
from evomerge.evaluator.inprocess import InProcessBackend

BACKENDS = ("inprocess", "ray")

__all__ = [
    "BACKENDS",
    "STATUS_FAILED",
    "STATUS_OK",
    "EvalRequest",
    "EvalResult",
    "Evaluation",
    "EvaluationTimeout",
    "EvaluatorBackend",
    "FunctionWorkerSpec",
    "InProcessBackend",
    "Worker",
    "WorkerSpec",
    "make_backend",
]


def make_backend(kind: str, spec: WorkerSpec, *, address: str | None = None, **options: Any) -> EvaluatorBackend:
    """``kind`` ∈ :data:`BACKENDS`. For ``"ray"``, ``address`` is passed to
    :func:`~evomerge.evaluator.ray_connect.connect_ray` and ``options`` to ``RayPoolBackend``
    (``num_workers``, ``num_gpus``, ``num_cpus``, ``max_attempts``, ``timeout``, …); for
    ``"inprocess"`` only ``timeout`` and ``num_workers`` (deterministic slots) are accepted."""
    from evomerge.errors import ConfigError

    if kind == "inprocess":
        unknown = set(options) - {"timeout", "num_workers"}
        if unknown or address is not None:
            bad = sorted(unknown) or ["address"]
            raise ConfigError(f"backend 'inprocess' does not take {', '.join(bad)} (Ray options need --backend ray)")
        return InProcessBackend(spec, **options)
    if kind == "ray":
        from evomerge.evaluator.ray_connect import connect_ray
        from evomerge.evaluator.ray_pool import RayPoolBackend

        connect_ray(address)
        return RayPoolBackend(spec, **options)
    raise ConfigError(f"unknown backend {kind!r}: expected one of {', '.join(BACKENDS)}")
