"""The scheduler: drives ask → evaluate → tell over an evaluator backend and reports each step to
the run as an event (see :mod:`.scheduler`, :mod:`.events`); the resume replay is :mod:`.replay`."""

from evomerge.scheduler.events import (
    Budget,
    Evaluated,
    Event,
    InFlight,
    ResumePoint,
    SchedulerSummary,
    Scored,
    Told,
)
from evomerge.scheduler.outcome import PerExampleLayout
from evomerge.scheduler.replay import KnownResult, Replay
from evomerge.scheduler.scheduler import Scheduler

__all__ = [
    "Budget",
    "Evaluated",
    "Event",
    "InFlight",
    "KnownResult",
    "PerExampleLayout",
    "Replay",
    "ResumePoint",
    "Scheduler",
    "SchedulerSummary",
    "Scored",
    "Told",
]
