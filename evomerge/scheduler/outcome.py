"""A result as the driver sees it: signed or scalarised values and the per-example vector.

Values: :meth:`evomerge.objectives.Objectives.driver_values`. ``per_example`` (M2N2) is the
concatenation of the result's per-task score vectors in the layout's task order (default: task
names sorted), each right-padded with zeros to its task's size — the examples an early-stopped
candidate never reached count as not solved. Give the sizes (the calibration split's size per
task) when early stopping is on; otherwise the largest vector seen defines the size. M2N2 configs
should disable early stopping so no padding happens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from evomerge.drivers.base import Outcome
from evomerge.evaluator.base import EvalResult
from evomerge.objectives import Objectives


class PerExampleLayout:
    """Task order and size of the per-example vector (a problem's calibration split)."""

    def __init__(self, tasks: Sequence[str] | None = None, sizes: Mapping[str, int] | None = None):
        self.tasks = list(tasks) if tasks is not None else None
        self.sizes: dict[str, int] = dict(sizes or {})

    def vector(self, per_example: Mapping[str, Sequence[float]] | None) -> np.ndarray | None:
        if not per_example:
            return None
        parts = []
        for task in self.tasks or sorted(per_example):
            scores = np.asarray(per_example.get(task, []), dtype=np.float64).reshape(-1)
            size = max(self.sizes.get(task, 0), scores.size)
            self.sizes[task] = size
            parts.append(np.pad(scores, (0, size - scores.size)))
        return np.concatenate(parts) if parts else None


def to_outcome(result: EvalResult, objectives: Objectives, n_driver: int, layout: PerExampleLayout) -> Outcome:
    """``n_driver``: the driver's ``n_objectives`` (1, or ``len(objectives)``)."""
    cid = result.candidate_id
    if not result.ok:
        return Outcome(cid, np.full(n_driver, -np.inf), None, failed=True, error=result.error_line)
    missing = objectives.missing(result.objectives)
    if missing:
        got = ", ".join(sorted(result.objectives)) or "none"
        error = f"result has no objective {', '.join(missing)} (got {got})"
        return Outcome(cid, np.full(n_driver, -np.inf), None, failed=True, error=error)
    values = objectives.driver_values(result.objectives, multi=n_driver > 1)
    if not np.all(np.isfinite(values)):
        return Outcome(cid, np.full(n_driver, -np.inf), None, failed=True, error="objective is not finite")
    return Outcome(cid, values, layout.vector(result.per_example))


__all__ = ["PerExampleLayout", "to_outcome"]
