"""Fitness: tasks with per-example scores, objectives, early stopping (racing).

Typical use::

    from evomerge.fitness import Fitness
    fit = Fitness.from_yaml("fitness.yaml")        # tasks loaded, splits drawn, configs checked
    result = fit.evaluate(model, tokenizer, "calibration", must_beat=incumbent)
    result.scalar, result.maximize_values, result.tasks["target"].scores
"""

from evomerge.fitness import generators
from evomerge.fitness.config import (
    EarlyStoppingConfig,
    FitnessConfig,
    ObjectiveConfig,
    SourceConfig,
    SplitConfig,
    TaskConfig,
    load_fitness_config,
    parse_fitness_config,
)
from evomerge.fitness.objectives import Fitness, Objective, build_objectives, evaluate_objectives
from evomerge.fitness.result import FitnessResult, ObjectiveValue, TaskScores
from evomerge.fitness.scorers import ScorerConfig, parse_scorer
from evomerge.fitness.scorers.base import Example
from evomerge.fitness.task import Task, load_task

__all__ = [
    "EarlyStoppingConfig",
    "Example",
    "Fitness",
    "FitnessConfig",
    "FitnessResult",
    "Objective",
    "ObjectiveConfig",
    "ObjectiveValue",
    "ScorerConfig",
    "SourceConfig",
    "SplitConfig",
    "Task",
    "TaskConfig",
    "TaskScores",
    "build_objectives",
    "evaluate_objectives",
    "generators",
    "load_fitness_config",
    "load_task",
    "parse_fitness_config",
    "parse_scorer",
]
