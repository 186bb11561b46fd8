"""The toy world's tasks as named fitness generators: ``toyworld.math``, ``toyworld.lang``,
``toyworld.target``.

Each returns its task's held-out example pool (see :func:`evomerge.toyworld.tasks.task_pool`);
fitness draws disjoint calibration and validation splits from it by a seeded shuffle. Params:
``heldout_pairs`` (1200), ``heldout_numbers`` (300), ``data_seed`` (0) — they must match the
world's settings, which is what the task configs a world ships with say.
"""

from __future__ import annotations

from functools import partial

from evomerge.fitness import generators
from evomerge.toyworld.tasks import TASKS, task_pool


def _pool(task: str, heldout_pairs: int = 1200, heldout_numbers: int = 300, data_seed: int = 0) -> list[dict]:
    return task_pool(task, int(heldout_pairs), int(heldout_numbers), int(data_seed))


def _make(task: str):
    fn = partial(_pool, task)
    # A stable qualified name, so a re-import registers the same generator and not a clash.
    fn.__module__ = __name__
    fn.__qualname__ = f"toyworld_{task}"
    return fn


for _task in TASKS:
    generators.register(f"toyworld.{_task}", _make(_task))
