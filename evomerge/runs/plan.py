"""The composition root: a run config becomes a validated :class:`Plan` before anything is written.

:func:`build_plan` performs every check that needs no evaluation and that the config's own
validation cannot make — the problem's models, tasks and space (:meth:`MergeProblem.build`,
:meth:`DigitsProblem.build`), ``budget.target`` against the objectives, the driver built once —
so a user error never leaves a run directory behind.
The plan then hands out what the run needs: the problem, the stopping target, a fresh driver and a
fresh evaluator backend.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evomerge.config import RunConfig
from evomerge.objectives import Target
from evomerge.runs.digits import DigitsProblem
from evomerge.runs.merge import MergeProblem
from evomerge.runs.problem import Problem


@dataclass
class Plan:
    """Everything a run needs, built and checked before the run directory is touched."""

    cfg: RunConfig
    problem: Problem
    target: Target
    make_driver: Callable[[], Any]  # a fresh driver (the same arguments every time)
    make_backend: Callable[[], Any]  # a fresh evaluator backend over the problem's worker


def build_problem(cfg: RunConfig, *, source: str, config_dir: str | Path | None, log) -> Problem:
    builders: dict[str, Callable[[], Problem]] = {
        "merge": lambda: MergeProblem.build(cfg, source=source, config_dir=config_dir, log=log),
        "digits": lambda: DigitsProblem.build(cfg, source=source),
    }
    return builders[cfg.problem]()


def build_plan(cfg: RunConfig, *, source: str = "config", config_dir: str | Path | None = None, log=None) -> Plan:
    """Validate ``cfg`` against the world (models, tasks, names) and build what the run needs."""
    from evomerge.drivers import build_driver
    from evomerge.evaluator import build_backend

    log = log or (lambda m: print(m, file=sys.stderr))
    problem = build_problem(cfg, source=source, config_dir=config_dir, log=log)
    objectives = problem.objectives
    target = objectives.target(cfg.budget.target, where=f"{source}: budget.target")
    section = cfg.driver.model_copy(update={"options": problem.driver_options(cfg.driver.options)})

    def make_driver():
        # a natively multi-objective driver is told every objective, any other the scalarisation
        return build_driver(section, problem.space, n_objectives=len(objectives), seed=cfg.run.seed)

    make_driver()  # bad values the config cannot see: now, not after the run directory exists
    return Plan(cfg, problem, target, make_driver, lambda: build_backend(cfg.evaluator, problem.worker_spec))


__all__ = ["Plan", "build_plan", "build_problem"]
