"""What a run searches: the :class:`Problem` protocol.

A problem bundles everything about the search that is not the driver or the run directory: the
search space, the objectives, the worker that scores a candidate, how a genome becomes a request
recipe, what the run writes as the best candidate and how the best is scored on held-out data.
The run (:mod:`evomerge.runs.session`) never asks which problem it has.

Implementations: :class:`evomerge.runs.merge.MergeProblem` (merge recipes over checkpoints) and
:class:`evomerge.runs.digits.DigitsProblem` (M2N2's model-free MNIST-MLP problem). A new problem
is one module implementing this protocol plus one branch in :func:`evomerge.runs.plan.build_problem`.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from evomerge.evaluator.base import EvaluatorBackend, WorkerSpec
from evomerge.objectives import Objectives
from evomerge.runs.store import to_jsonable
from evomerge.scheduler.outcome import PerExampleLayout


class Problem(Protocol):
    name: str  # meta.json's "problem"
    space: Any  # a search space: dim, lower, upper, x0, to_recipe, describe
    objectives: Objectives
    worker_spec: WorkerSpec  # what each backend worker builds once
    early_stopping: bool  # requests carry must_beat
    meta: dict[str, Any]  # meta.json

    def per_example_layout(self) -> PerExampleLayout:
        """Task order and sizes of the per-example vector M2N2 is told (a fresh layout per run)."""
        ...

    def driver_options(self, options: Any) -> Any:
        """The driver's ``Options`` with the problem's symbolic values resolved (digits: ``initial:
        experts`` becomes the experts' genomes)."""
        ...

    def to_recipe(self, genome: np.ndarray) -> dict[str, Any]:
        """The request recipe of ``genome``: a pure function, called once per evaluation."""
        ...

    def record_recipe(self, recipe: dict[str, Any]) -> dict[str, Any] | None:
        """What a log record keeps of a request recipe (``None``: the genome is the recipe)."""
        ...

    def best_file(self, record: dict[str, Any]) -> str:
        """The text of ``best/recipe.yaml`` for the best record."""
        ...

    def validate(self, record: dict[str, Any], genome: np.ndarray, backend: EvaluatorBackend | None) -> dict[str, Any]:
        """Held-out scores of ``record`` (``validation.json``): ``{id, split, objectives[, error]}``.
        ``backend``: the run's, still open, or ``None`` (the problem builds what it needs)."""
        ...


def describe_space(space) -> dict:
    """``space.describe()`` as JSON for ``meta.json`` (reports only: never fails the run)."""
    try:
        return to_jsonable(space.describe())
    except Exception:  # noqa: BLE001 - description is for reports only
        return {"kind": type(space).__name__}


__all__ = ["Problem", "describe_space"]
