"""Scores as data: per task per example, aggregated per objective, JSON round trip.

A candidate stopped early (see :mod:`evomerge.fitness.early_stop`) carries only the examples it was
scored on: ``example_ids`` / ``scores`` cover the evaluated prefix, ``n_evaluated < n_total``,
``stopped_early`` is true and ``stop_reason`` says where and why. Its aggregates are computed on
that prefix — an honest estimate, not a value for the unseen examples.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from evomerge.objectives import Objectives, direction_sign


@dataclass
class TaskScores:
    task: str
    split: str
    example_ids: list[str]
    scores: list[float]
    n_total: int
    weights: list[float] | None = None
    stopped_early: bool = False
    stop_reason: str | None = None
    wall_seconds: float = 0.0
    tokens: int = 0
    lower_is_better: bool = False
    outputs: list[str] | None = None

    def __post_init__(self):
        if len(self.example_ids) != len(self.scores):
            raise ValueError(f"task {self.task!r}: {len(self.example_ids)} ids but {len(self.scores)} scores")

    @property
    def n_evaluated(self) -> int:
        return len(self.scores)

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else float("nan")

    def metric(self, name: str) -> float:
        if name == "mean":
            return self.mean
        if name == "perplexity":
            w = self.weights or [1.0] * len(self.scores)
            return math.exp(sum(wi * s for wi, s in zip(w, self.scores)) / sum(w))
        raise ValueError(f"unknown metric {name!r}")

    def by_id(self) -> dict[str, float]:
        return dict(zip(self.example_ids, self.scores))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["n_evaluated"] = self.n_evaluated
        d["mean"] = _finite_or_none(self.mean)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskScores:
        d = {k: v for k, v in d.items() if k not in ("n_evaluated", "mean")}
        return cls(**d)


@dataclass
class ObjectiveValue:
    task: str
    metric: str
    direction: str  # maximize | minimize
    weight: float
    value: float

    @property
    def signed(self) -> float:
        """The value as a maximiser sees it (minimised metrics negated)."""
        return direction_sign(self.direction) * self.value


@dataclass
class FitnessResult:
    split: str
    tasks: dict[str, TaskScores]
    objectives: list[ObjectiveValue]
    wall_seconds: float = 0.0
    tokens: int = 0
    stopped_early: bool = False
    stop_reason: str | None = None
    must_beat: float | None = None
    upper_bound: float | None = None  # the bound on `scalar` that stopped the race, if it stopped
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def values(self) -> list[float]:
        """Raw objective values, in config order (e.g. accuracy, perplexity)."""
        return [o.value for o in self.objectives]

    def named_values(self) -> tuple[Objectives, dict[str, float]]:
        """The run's :class:`~evomerge.objectives.Objectives` of this result and ``{name: value}``."""
        objectives = Objectives.from_fitness(self)
        return objectives, dict(zip(objectives.names, self.values))

    @property
    def maximize_values(self) -> list[float]:
        """Objective values with minimised ones negated: what a maximising driver is told."""
        objectives, values = self.named_values()
        return objectives.signed(values).tolist()

    @property
    def scalar(self) -> float:
        """``Σ_k w_k · s_k · v_k`` with s_k = +1 (maximise) or −1 (minimise): single-objective fitness."""
        objectives, values = self.named_values()
        return objectives.scalar(values)

    @property
    def n_evaluated(self) -> int:
        return sum(t.n_evaluated for t in self.tasks.values())

    def per_example(self) -> dict[str, dict[str, float]]:
        return {name: t.by_id() for name, t in self.tasks.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "scalar": _finite_or_none(self.scalar),
            "objectives": [{**asdict(o), "value": _finite_or_none(o.value)} for o in self.objectives],
            "tasks": {k: v.to_dict() for k, v in self.tasks.items()},
            "wall_seconds": self.wall_seconds,
            "tokens": self.tokens,
            "n_evaluated": self.n_evaluated,
            "stopped_early": self.stopped_early,
            "stop_reason": self.stop_reason,
            "must_beat": self.must_beat,
            "upper_bound": self.upper_bound,
            "meta": self.meta,
        }

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitnessResult:
        return cls(
            split=d["split"],
            tasks={k: TaskScores.from_dict(v) for k, v in d["tasks"].items()},
            objectives=[ObjectiveValue(**{**o, "value": _nan_if_none(o["value"])}) for o in d["objectives"]],
            wall_seconds=d.get("wall_seconds", 0.0),
            tokens=d.get("tokens", 0),
            stopped_early=d.get("stopped_early", False),
            stop_reason=d.get("stop_reason"),
            must_beat=d.get("must_beat"),
            upper_bound=d.get("upper_bound"),
            meta=d.get("meta", {}),
        )

    @classmethod
    def from_json(cls, text: str) -> FitnessResult:
        return cls.from_dict(json.loads(text))


def _finite_or_none(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def _nan_if_none(x):
    return float("nan") if x is None else x
