"""The scheduler: drives ask → evaluate → tell over an evaluator backend (see :mod:`.loop`)."""

from evomerge.scheduler.loop import (
    Budget,
    InFlight,
    ObjectiveSpec,
    Scheduler,
    SchedulerSummary,
    parse_objective_spec,
    recipe_dict,
)

__all__ = [
    "Budget",
    "InFlight",
    "ObjectiveSpec",
    "Scheduler",
    "SchedulerSummary",
    "parse_objective_spec",
    "recipe_dict",
]
