"""Evaluators: merge a candidate's recipe into a live model, score it, report back.

``EvalRequest`` → backend → :class:`Worker` → ``EvalResult``. Backends: :class:`InProcessBackend`
(one worker here, deterministic) and :class:`~evomerge.evaluator.ray_pool.RayPoolBackend` (an
actor pool; Ray itself is imported only when a pool starts).

:data:`BACKENDS` names every backend class; each has ``Options`` (a pydantic model: the run
config's ``evaluator`` keys besides ``backend`` and the worker's ``device``, ``dtype``,
``batch_size``) and is built as ``cls(spec, options)``. Adding a backend is its module plus one
``BACKENDS.register`` line here. :func:`build_backend` builds the backend of a config's
``evaluator`` section, :func:`make_backend` one from Python keywords.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from evomerge.evaluator.base import (
    STATUS_FAILED,
    STATUS_OK,
    EvalRequest,
    EvalResult,
    Evaluation,
    EvaluatorBackend,
    WorkerSpec,
)
from evomerge.evaluator.function import FunctionWorkerSpec
from evomerge.evaluator.inprocess import InProcessBackend
from evomerge.evaluator.worker import EvaluationTimeout, Worker
from evomerge.registry import Registry

BACKENDS = Registry("backend")
BACKENDS.register("inprocess", "evomerge.evaluator.inprocess:InProcessBackend")
BACKENDS.register("ray", "evomerge.evaluator.ray_pool:RayPoolBackend")

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
    "build_backend",
    "make_backend",
]


def make_backend(kind: str, spec: WorkerSpec, **options: Any) -> EvaluatorBackend:
    """The backend ``kind`` (a :data:`BACKENDS` name) with its ``Options`` given as keywords
    (``make_backend("ray", spec, address="auto", num_cpus=0.5)``); unknown names and bad options
    raise a one-line ConfigError."""
    return BACKENDS.get(kind)(spec, options)


def build_backend(section: BaseModel, spec: WorkerSpec) -> EvaluatorBackend:
    """The backend of a config ``evaluator`` section: ``section.backend`` with the section's
    values of that backend's ``Options`` fields (the worker's own keys are in ``spec``)."""
    cls = BACKENDS.get(section.backend)
    return cls(spec, cls.Options.model_validate(section.model_dump(include=set(cls.Options.model_fields))))
