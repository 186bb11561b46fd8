"""Fitness configuration: tasks, objectives, early stopping (pydantic, YAML).

The YAML a user writes (a run config embeds the same mapping under ``fitness:``)::

    tasks:
      - name: target
        source: {type: generator, name: toyworld.target}        # or {type: jsonl, path: data.jsonl}
        fields: {prompt: question, answer: answer}              # example field -> source column
        template: "{prompt}"
        chat_template: false        # true: the tokenizer's chat template (or a Jinja template string)
        system: null                # a system prompt
        fewshot: 0                  # k few-shot examples from a split disjoint from the others
        scorer: {type: exact_match, max_new_tokens: 8, stop: ["</s>"]}
        splits: {calibration: 200, validation: 1000, seed: 0}
    objectives:
      - {task: target, metric: mean, direction: maximize, weight: 1.0}
    early_stopping: {enabled: false, min_examples: 16, growth: 2.0, confidence: 0.95}
    engine: {type: hf, generation: auto, logits_to_keep: true}   # the inference engine (optional)

``scorer`` is one of the registered scorers' option models, chosen by ``type`` (see
:mod:`evomerge.fitness.scorers`). Every validation problem is reported as one line (:class:`~evomerge.errors.ConfigError`) that
names the task and key, never as pydantic's multi-line report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evomerge.errors import ConfigError
from evomerge.fitness.engines import EngineConfig, HFOptions, engine_section
from evomerge.fitness.scorers import ScorerConfig
from evomerge.fitness.scorers.generation import ExactMatchOptions
from evomerge.validation import format_validation_error, read_yaml

SOURCE_TYPES = ("jsonl", "csv", "parquet", "datasets", "generator", "lmeval")
METRICS = ("mean", "perplexity")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Strict):
    """Where a task's examples come from.

    ``jsonl | csv | parquet``: ``path`` (relative paths resolve against the config file's folder).
    ``datasets``: ``path`` is a ``save_to_disk`` folder, a local dataset folder or a hub name;
    ``name`` the dataset config, ``split`` (default ``train``).
    ``generator``: ``name`` in :mod:`evomerge.fitness.generators`, ``params`` passed as keyword arguments.
    ``lmeval``: ``task`` an lm-evaluation-harness task, ``include_path`` a folder of task YAMLs.
    """

    type: str
    path: str | None = None
    name: str | None = None
    split: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    task: str | None = None
    include_path: str | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in SOURCE_TYPES:
            raise ValueError(f"unknown source type {value!r}; known: {', '.join(SOURCE_TYPES)}")
        return value

    @model_validator(mode="after")
    def _needs(self):
        need = {
            "jsonl": "path",
            "csv": "path",
            "parquet": "path",
            "datasets": "path",
            "generator": "name",
            "lmeval": "task",
        }[self.type]
        if getattr(self, need) in (None, ""):
            raise ValueError(f"source type {self.type!r} needs key {need!r}")
        return self


class SplitConfig(_Strict):
    """Sizes of the splits drawn from one seeded shuffle of the example pool.

    ``validation: null`` takes every example left after calibration (and the few-shot split).
    ``fewshot``: the size of the split few-shot examples come from (default: the task's
    ``fewshot``); it is disjoint from the other two.
    """

    calibration: int = Field(200, ge=0)
    validation: int | None = Field(None, ge=0)
    fewshot: int | None = Field(None, ge=0)
    seed: int = 0


class TaskConfig(_Strict):
    name: str
    source: SourceConfig
    fields: dict[str, str] = Field(default_factory=dict)
    template: str | None = None
    answer_template: str | None = None
    prepend_bos: bool | None = None
    scorer: ScorerConfig = Field(default_factory=ExactMatchOptions)
    splits: SplitConfig = Field(default_factory=SplitConfig)
    chat_template: bool | str = False
    system: str | None = None
    fewshot: int = Field(0, ge=0)
    fewshot_separator: str = "\n\n"

    @field_validator("chat_template")
    @classmethod
    def _template_parses(cls, value: bool | str) -> bool | str:
        if isinstance(value, str):
            import jinja2

            try:
                jinja2.Environment(extensions=["jinja2.ext.loopcontrols"]).parse(value)
            except jinja2.TemplateSyntaxError as exc:
                raise ValueError(f"invalid Jinja template ({exc})") from None
        return value

    @model_validator(mode="after")
    def _prompt_options(self):
        if self.source.type == "lmeval":
            used = [k for k in ("chat_template", "system", "fewshot") if getattr(self, k) not in (False, None, 0)]
            if used:
                raise ValueError(f"lm-eval tasks take their prompts from the harness: remove {', '.join(used)}")
        if self.splits.fewshot is not None and self.splits.fewshot < self.fewshot:
            raise ValueError(
                f"splits.fewshot = {self.splits.fewshot}: fewshot: {self.fewshot} needs a few-shot split of at "
                f"least {self.fewshot} examples"
            )
        return self

    @property
    def fewshot_pool(self) -> int:
        """The size of the few-shot split."""
        return self.fewshot if self.splits.fewshot is None else self.splits.fewshot

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        known = ("id", "prompt", "answer", "choices", "label")
        for key in value:
            if key not in known:
                raise ValueError(f"unknown example field {key!r}; known: {', '.join(known)}")
        return value


class ObjectiveConfig(_Strict):
    task: str
    metric: str = "mean"
    direction: Literal["maximize", "minimize"] | None = None
    weight: float = 1.0

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; known: {', '.join(METRICS)}")
        return value


class EarlyStoppingConfig(_Strict):
    """Racing on a growing prefix of the calibration split (see :mod:`evomerge.fitness.early_stop`)."""

    enabled: bool = False
    min_examples: int = Field(16, ge=1)
    growth: float = Field(2.0, gt=1.0)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    bound: Literal["hoeffding", "bernstein"] = "hoeffding"


class FitnessConfig(_Strict):
    tasks: list[TaskConfig]
    objectives: list[ObjectiveConfig] = Field(default_factory=list)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    engine: EngineConfig = Field(default_factory=HFOptions)

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_type(cls, value: Any) -> Any:
        return engine_section(value)

    @model_validator(mode="after")
    def _cross_checks(self):
        names = [t.name for t in self.tasks]
        if not names:
            raise ValueError("tasks: at least one task is needed")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"tasks: duplicate task name {dup[0]!r}")
        if not self.objectives:  # one objective per task, each in its natural direction
            self.objectives = [ObjectiveConfig(task=n) for n in names]
        for i, obj in enumerate(self.objectives):
            if obj.task not in names:
                raise ValueError(f"objectives[{i}]: unknown task {obj.task!r}; tasks: {', '.join(names)}")
        return self

    # A base folder for relative source paths; set by load_fitness_config, not part of the YAML.
    _base_dir: Path | None = None

    @property
    def base_dir(self) -> Path | None:
        return self._base_dir


def _one_line(exc: ValidationError, where: str, model: type[BaseModel], data: Any = None) -> str:
    # "tasks.2.scorer.type" reads better as "task 'target': scorer.type" when the name is known.
    return format_validation_error(exc, where, model, layout="path", data=data, named_items={"tasks": "task"})


def parse_fitness_config(data: Any, *, where: str = "", base_dir: str | Path | None = None) -> FitnessConfig:
    """Validate a mapping (a bare fitness config, or a run config with a ``fitness:`` key)."""
    if isinstance(data, dict) and "fitness" in data and "tasks" not in data:
        data = data["fitness"]
        where = f"{where} (fitness)" if where else "fitness"
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'fitness config'}: expected a mapping with 'tasks', got {type(data).__name__}")
    try:
        cfg = FitnessConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, where, FitnessConfig, data)) from None
    cfg._base_dir = Path(base_dir) if base_dir is not None else None
    for task in cfg.tasks:  # callable references resolve next to the config file too
        task.scorer._base_dir = cfg._base_dir
    return cfg


def load_fitness_config(path: str | Path) -> FitnessConfig:
    """Read a YAML file; relative source paths resolve against its folder."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, expected a config file (YAML)")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = read_yaml(path, what="config file")
    return parse_fitness_config(data, where=str(path), base_dir=path.parent)


def parse_task_config(data: Any, *, where: str = "") -> TaskConfig:
    try:
        return TaskConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, where, TaskConfig)) from None
