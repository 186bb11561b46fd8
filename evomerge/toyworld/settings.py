"""Settings of a toy world: model shape, data partition, and the training of each model.

A :class:`WorldSettings` is plain data; its JSON form (plus a format version) is hashed into the
cache key, so any change of a setting builds a new world instead of reusing a stale one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from evomerge.errors import ConfigError

# Bump when the data, the training code or the on-disk layout changes what a setting produces.
FORMAT_VERSION = 1

DEFAULT_TASKS = ("math", "lang", "target")


@dataclass(frozen=True)
class Stage:
    """One training run: a mixture of components (see ``tasks.component_examples``) and its schedule."""

    mixture: dict
    steps: int
    lr: float
    warmup: int = 50
    batch: int = 128
    # Parameter groups that train (None: all): "embed", "layers.<i>", "head" (final norm and
    # lm_head). The rest stay frozen at the starting model's values, so that a skill can be
    # put into chosen layers only.
    trainable: tuple[str, ...] | None = None


@dataclass(frozen=True)
class WorldSettings:
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    intermediate: int = 512
    heldout_pairs: int = 1200
    heldout_numbers: int = 300
    data_seed: int = 0
    base: Stage = None
    experts: dict = field(default_factory=dict)  # name -> Stage
    expert_skills: dict = field(default_factory=dict)  # name -> task name
    target_task: str = "target"
    # One thread: these tiny steps gain little from a second one, and on a busy machine OpenMP's
    # spin-waiting made 2-thread steps 45x slower (3.3 s vs 72 ms measured here).
    threads: int = 1
    seed: int = 0
    calibration: int = 200
    validation: int = 1000
    # The fitness tasks the world ships (names of ``tasks.TASKS``).
    tasks: tuple[str, ...] = DEFAULT_TASKS

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> WorldSettings:
        data = dict(data)
        data["base"] = _stage(data["base"])
        data["experts"] = {k: _stage(v) for k, v in data["experts"].items()}
        if "tasks" in data:
            data["tasks"] = tuple(data["tasks"])
        return cls(**data)

    def key(self) -> str:
        """Hash of every setting that changes the models or tasks (``threads`` is excluded:
        it changes speed, and float rounding at most). Settings added after the first format
        are hashed only when they differ from their defaults, so older worlds keep their keys."""
        payload = self.to_dict()
        payload.pop("threads")
        if tuple(payload["tasks"]) == DEFAULT_TASKS:
            payload.pop("tasks")
        for stage in [payload["base"], *payload["experts"].values()]:
            if stage.get("trainable") is None:
                stage.pop("trainable", None)
        payload["format_version"] = FORMAT_VERSION
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **changes) -> WorldSettings:
        return dataclasses.replace(self, **changes)

    def check(self) -> None:
        """Raise ConfigError naming the first setting that names an unknown task or group."""
        from evomerge.toyworld.tasks import TASKS

        for name in self.tasks:
            if name not in TASKS:
                raise ConfigError(f"toy-world setting tasks: unknown task {name!r}; known: {', '.join(TASKS)}")
        if self.target_task not in self.tasks:
            raise ConfigError(
                f"toy-world setting target_task {self.target_task!r} is not one of tasks {list(self.tasks)}"
            )
        for expert, task in self.expert_skills.items():
            if task not in self.tasks:
                raise ConfigError(
                    f"toy-world setting expert_skills.{expert}: task {task!r} is not one of tasks {list(self.tasks)}"
                )
        groups = {"embed", "head", *(f"layers.{i}" for i in range(self.layers))}
        for role, stage in [("base", self.base), *((f"experts.{k}", v) for k, v in self.experts.items())]:
            for g in stage.trainable or ():
                if g not in groups:
                    raise ConfigError(
                        f"toy-world setting {role}.trainable: unknown group {g!r}; expected embed, head or layers.0..{self.layers - 1}"
                    )


def _stage(data: dict) -> Stage:
    data = dict(data)
    if data.get("trainable") is not None:
        data["trainable"] = tuple(data["trainable"])
    return Stage(**data)


LANG_MIX = {"L2.copy": 1.0, "L2.reverse": 1.0, "L2.successor": 1.0, "X.*": 0.5, "Y.*": 0.5}
BASE_MIX = {
    "L1.copy": 1.0,
    "L1.reverse": 1.0,
    "L1.successor": 1.0,
    "L2.copy": 1.0,
    "L2.reverse": 1.0,
    "L2.successor": 1.0,
    "X.*": 1.0,
    "Y.*": 1.0,
    # Addition in both languages: the target's operator word must have met arithmetic in the
    # base, or the math expert's skill cannot carry over to it; with less of it (0.2 / 0.3) the
    # merge that combines both experts exists for some seeds only (docs/toyworld.md).
    "L1.addition": 0.4,
    "L2.addition": 0.6,
}

# The `carry` world: every source fails the target. The base meets addition in both languages,
# but only sums below 100 (it carries from the units, never from the tens); the math expert
# learns every L1 sum and with them L1's answer form; the language expert practises L2, sums
# below 100 included, so its task vector holds L2's answer form for sums. Target: L2 sums of
# 100 or more ("hard math in the other language"). Designs tried on the way: docs/toyworld.md.
CARRY_BASE_MIX = {k: v for k, v in BASE_MIX.items() if not k.endswith(".addition")}
CARRY_BASE_MIX.update({"L1.addition@below100": 0.4, "L2.addition@below100": 0.6})
CARRY_LANG_MIX = {**LANG_MIX, "L2.addition@below100": 2.0}

PRESETS = {
    "demo": WorldSettings(
        intermediate=256,
        base=Stage(mixture=BASE_MIX, steps=1200, lr=1e-3, batch=64),
        experts={
            "math": Stage(mixture={"L1.addition": 1.0}, steps=800, lr=1e-3, batch=64),
            "lang": Stage(mixture=LANG_MIX, steps=500, lr=5e-4, batch=64),
        },
        expert_skills={"math": "math", "lang": "lang"},
    ),
    "carry": WorldSettings(
        intermediate=256,
        heldout_pairs=2000,  # about 1,200 of them sum to 100 or more: 200 calibration + 1,000 validation
        base=Stage(mixture=CARRY_BASE_MIX, steps=1200, lr=1e-3, batch=64),
        experts={
            "math": Stage(mixture={"L1.addition": 1.0}, steps=800, lr=1e-3, batch=64),
            "lang": Stage(mixture=CARRY_LANG_MIX, steps=800, lr=5e-4, batch=64),
        },
        expert_skills={"math": "math", "lang": "lang"},
        target_task="target_hard",
        tasks=("math", "lang", "target", "target_hard"),
    ),
    # Small and fast for tests: same data and tasks, a 2-layer 32-wide model, few steps.
    "test": WorldSettings(
        hidden=32,
        layers=2,
        heads=2,
        intermediate=64,
        base=Stage(mixture=BASE_MIX, steps=120, lr=3e-3, warmup=10, batch=64),
        experts={
            "math": Stage(mixture={"L1.addition": 1.0}, steps=40, lr=3e-3, warmup=5, batch=64),
            "lang": Stage(mixture=LANG_MIX, steps=40, lr=2e-3, warmup=5, batch=64),
        },
        expert_skills={"math": "math", "lang": "lang"},
        calibration=64,
        validation=256,
        threads=1,
    ),
}


def preset(name: str, **overrides) -> WorldSettings:
    if name not in PRESETS:
        raise ConfigError(f"unknown toy-world preset {name!r}; expected one of: {', '.join(PRESETS)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(WorldSettings)}
    if unknown:
        raise ConfigError(f"unknown toy-world setting {sorted(unknown)[0]!r}")
    return PRESETS[name].replace(**overrides)
