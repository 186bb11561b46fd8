"""A worker spec around a plain Python function: tests, benchmarks, the digits problem."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evomerge.evaluator.base import EvalRequest, Evaluation
from evomerge.registry import resolve_callable


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
