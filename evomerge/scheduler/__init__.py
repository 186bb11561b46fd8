"""The scheduler: drives ask → evaluate → tell over an evaluator backend (see :mod:`.scheduler`)."""

from evomerge.scheduler.scheduler import (
    Budget,
    InFlight,
    Scheduler,
    SchedulerSummary,
    recipe_dict,
)

__all__ = [
    "Budget",
    "InFlight",
    "Scheduler",
    "SchedulerSummary",
    "recipe_dict",
]
