"""The run's objectives, as one value built once at plan time: names, directions, weights, the
conversion of a result into driver values and record fields, and the stopping target.

Conventions (the whole project uses these, nowhere else restated):

* an objective's **name** is its task's name for the metric ``mean``, else ``task:metric``; a name
  already taken gets ``#k`` (``k`` = its position) — :func:`objective_name`;
* a result's objectives are ``{name: value}`` in each objective's own direction;
* **signed** values are what a maximiser sees: ``s_i · v_i`` with ``s_i = +1`` to maximise and
  ``-1`` to minimise;
* the **scalarisation** (a run's ``score``, early stopping's ``must_beat``, a single-objective
  driver over several objectives) is ``Σ_i w_i · s_i · v_i``.

Pure Python and numpy: every layer may import it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evomerge.errors import ConfigError, did_you_mean

DIRECTIONS = {"maximize": 1.0, "minimize": -1.0}


def direction_sign(direction: str) -> float:
    """``+1.0`` for ``maximize``, ``-1.0`` for ``minimize``."""
    return DIRECTIONS[direction]


def objective_name(task: str, metric: str, taken: Sequence[str] = ()) -> str:
    """The one naming rule (see the module docstring); ``taken``: the names given before this one."""
    name = task if metric == "mean" else f"{task}:{metric}"
    return f"{name}#{len(taken)}" if name in taken else name


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str = "maximize"
    weight: float = 1.0

    @property
    def sign(self) -> float:
        return DIRECTIONS[self.direction]


@dataclass(frozen=True)
class Target:
    """Stop once a result is at or beyond every threshold, each in its objective's direction."""

    thresholds: tuple[tuple[str, float, float], ...] = ()  # (name, threshold, sign)

    def __bool__(self) -> bool:
        return bool(self.thresholds)

    def reached(self, values: Mapping[str, float]) -> bool:
        if not self.thresholds:
            return False
        for name, threshold, sign in self.thresholds:
            value = float(values.get(name, math.nan))
            if not (sign * (value - threshold) >= 0):
                return False
        return True


class Objectives(Sequence[Objective]):
    """An ordered, non-empty list of uniquely named :class:`Objective`.

    Items may be :class:`Objective` objects, ``(name, direction, weight)`` tuples or mappings with
    those keys; anything else is a one-line :class:`ConfigError`.
    """

    def __init__(self, items: Iterable[Objective | Sequence[Any] | Mapping[str, Any]]):
        out = [_parse(k, item) for k, item in enumerate(items)]
        if not out:
            raise ConfigError("objectives: at least one objective is required")
        names = [o.name for o in out]
        if len(set(names)) != len(names):
            raise ConfigError(f"objectives: names must be unique, got {names}")
        self._items = tuple(out)

    @classmethod
    def from_fitness(cls, fitness: Any) -> Objectives:
        """The objectives of a fitness config, a loaded ``Fitness`` or a ``FitnessResult`` (anything
        with ``.objectives``), or a sequence of such objective entries: each has ``task`` (a name,
        or a task with ``.name`` and ``.lower_is_better``), ``metric``, ``direction`` (``None``:
        the task's natural one) and ``weight``."""
        entries = getattr(fitness, "objectives", fitness)
        items: list[Objective] = []
        for o in entries:
            task = getattr(o.task, "name", o.task)
            direction = o.direction
            if direction is None:
                if not hasattr(o.task, "lower_is_better"):
                    raise TypeError(f"objective on task {task!r} has no direction: pass the loaded Fitness")
                direction = "minimize" if o.task.lower_is_better else "maximize"
            name = objective_name(str(task), o.metric, [i.name for i in items])
            items.append(Objective(name, direction, float(o.weight)))
        return cls(items)

    # -- the sequence ---------------------------------------------------------------------------
    def __getitem__(self, index):  # type: ignore[override]
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Objective]:
        return iter(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Objectives) and self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Objectives({list(self._items)!r})"

    @property
    def names(self) -> list[str]:
        return [o.name for o in self._items]

    def to_json(self) -> list[dict[str, Any]]:
        """``[{name, direction, weight}, ...]`` (a run's ``meta.json``)."""
        return [{"name": o.name, "direction": o.direction, "weight": o.weight} for o in self._items]

    # -- conversions ----------------------------------------------------------------------------
    def missing(self, values: Mapping[str, Any]) -> list[str]:
        """The objectives ``values`` has no entry for."""
        return [o.name for o in self._items if o.name not in values]

    def signed(self, values: Mapping[str, float]) -> np.ndarray:
        """``[s_i · v_i]`` in objective order (the maximise convention)."""
        return np.array([o.sign * float(values[o.name]) for o in self._items])

    def scalar(self, values: Mapping[str, float]) -> float:
        """``Σ_i w_i · s_i · v_i``."""
        return self._weighted(self.signed(values))

    def _weighted(self, signed: Iterable[float]) -> float:
        return float(sum(o.weight * s for o, s in zip(self._items, signed)))

    def driver_values(self, values: Mapping[str, float], multi: bool) -> np.ndarray:
        """What a driver is told: every signed value (``multi``: the driver is natively
        multi-objective, or there is one objective — its weight is then unused), else the
        scalarisation as a 1-vector."""
        signed = self.signed(values)
        if multi or len(self._items) == 1:
            return signed
        return np.array([self._weighted(signed)])

    def record_fields(self, values: Mapping[str, Any], ok: bool) -> dict[str, Any]:
        """A log record's ``values`` (signed, objective order) and ``score`` (the scalarisation);
        both ``None`` unless the evaluation is ``ok`` and has every objective."""
        if not ok or self.missing(values):
            return {"values": None, "score": None}
        signed = [o.sign * float(values[o.name]) for o in self._items]
        return {"values": signed, "score": self._weighted(signed)}

    def target(self, spec: float | Mapping[str, Any] | None, where: str = "budget.target") -> Target:
        """``spec``: ``{objective: threshold}``, a bare number (the first objective) or ``None``.
        An unknown objective or a non-number is a one-line :class:`ConfigError` naming ``where``."""
        if spec is None:
            return Target()
        if not isinstance(spec, Mapping):
            spec = {self._items[0].name: spec}
        by_name = {o.name: o for o in self._items}
        out = []
        for name, value in spec.items():
            if name not in by_name:
                raise ConfigError(
                    f"{where}: unknown objective {name!r}" + did_you_mean(str(name), by_name, always_list=True)
                )
            try:
                threshold = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: objective {name!r}: expected a number, got {value!r}") from None
            out.append((str(name), threshold, by_name[name].sign))
        return Target(tuple(out))


def _parse(k: int, item: Any) -> Objective:
    try:
        if isinstance(item, Objective):
            obj = item
        elif isinstance(item, Mapping):
            obj = Objective(str(item["name"]), str(item.get("direction", "maximize")), float(item.get("weight", 1.0)))
        else:
            obj = Objective(*item)
            obj = Objective(str(obj.name), str(obj.direction), float(obj.weight))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"objectives[{k}]: expected name, direction (maximize|minimize) and weight (a number), got {item!r} ({exc})"
        ) from None
    if obj.direction not in DIRECTIONS:
        raise ConfigError(f"objective {obj.name!r}: direction must be maximize or minimize, got {obj.direction!r}")
    return obj


__all__ = ["DIRECTIONS", "Objective", "Objectives", "Target", "direction_sign", "objective_name"]
