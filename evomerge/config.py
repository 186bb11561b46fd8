"""The run config: one YAML file, validated completely before anything heavy happens.

Every section forbids unknown keys: a typo is reported as one line naming the file, the dotted
key and the closest known key (``runs.yaml: unknown key 'space.layer_group' (did you mean
'space.layer_groups'?)``), because a silently ignored key is a run of days with the wrong setting.

Sections::

    models:    {base: PATH_OR_HUB_ID, experts: {name: PATH_OR_HUB_ID}}   # or, instead:
    toyworld:  {preset: demo|test|carry, seed: 0, objectives: [task, ...]}   # models and tasks from the embedded world
    space:     {kind: parameter|dataflow|psdfs, ...that kind's options}   # psdfs: mode joint|sequential
    driver:    {name: cmaes|m2n2|optuna|random, options: {...that driver's options}}
    fitness:   fitness.FitnessConfig (tasks, objectives, early_stopping)
    budget:    {max_evals, time_limit, target, stages: {ps, dfs}}   # stages: sequential PS+DFS
    evaluator: {backend: inprocess|ray, device, dtype, batch_size, memory, search_cache, ...that backend's options}
    run:       {seed, checkpoint_every, keep_checkpoints, max_attempts, failure_breaker: {first, window, fraction}}
    problem:   merge (default) | digits
    digits:    {seed}   # problem: digits

Plug-in sections are discriminated unions built from the plug-in registries: ``space`` on
``kind`` (:data:`evomerge.space.SPACES`, each kind's ``Options``), ``driver`` on ``name``
(:data:`evomerge.drivers.DRIVERS`, each driver's ``Options`` under ``options``) and ``evaluator``
on ``backend`` (:data:`evomerge.evaluator.BACKENDS`, each backend's ``Options`` beside the worker's
keys). A registered plug-in is therefore configurable, and checked key by key
(``runs.yaml: unknown key 'driver.options.sigma' (did you mean 'driver.options.sigma0'?)``,
``runs.yaml: key 'driver.name': unknown driver 'cmaz' (did you mean 'cmaes'?)``), with no edit
here. A section without its tag gets the default plug-in (parameter, cmaes, inprocess).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from evomerge.drivers import DRIVERS
from evomerge.dtypes import DtypeName
from evomerge.errors import ConfigError, did_you_mean
from evomerge.evaluator import BACKENDS
from evomerge.registry import Registry
from evomerge.space import SPACES
from evomerge.units import parse_duration, parse_size
from evomerge.validation import format_validation_error, read_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelsSection(_Strict):
    base: str | None = None
    experts: dict[str, str]

    @field_validator("experts")
    @classmethod
    def _some_experts(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("needs at least one expert")
        return v

    @model_validator(mode="after")
    def _distinct_models(self) -> ModelsSection:
        # The same checkpoint twice is a copy-paste slip: as base and expert its task vector is
        # zero (silently dropped), as two experts it would be merged twice.
        seen = {} if self.base is None else {_model_key(self.base): "models.base"}
        for name, path in self.experts.items():
            key = _model_key(path)
            if key in seen:
                raise ValueError(f"models.experts.{name} is the same model as {seen[key]} ({path!r})")
            seen[key] = f"models.experts.{name}"
        return self


def _model_key(path: str) -> str:
    local = Path(path).expanduser()
    return str(local.resolve()) if local.exists() else path


class ToyWorldSection(_Strict):
    preset: Literal["demo", "test", "carry"] = "demo"
    seed: int = 0
    dir: str | None = None  # where the world is built / cached; default: the user's cache dir
    # The world's tasks to optimise, each a maximised objective, taken from the world by name so
    # their sources and splits are exactly the world's (default: its target task alone).
    objectives: list[str] | None = None

    @field_validator("objectives")
    @classmethod
    def _known_tasks(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        from evomerge.toyworld.tasks import TASKS  # names only: no world is built here

        if not v:
            raise ValueError(f"needs at least one task (known: {', '.join(TASKS)})")
        for name in v:
            if name not in TASKS:
                raise ValueError(f"unknown toy-world task {name!r}{did_you_mean(name, TASKS, always_list=True)}")
        dup = sorted({n for n in v if v.count(n) > 1})
        if dup:
            raise ValueError(f"task {dup[0]!r} is named twice")
        return v


def _tagged_union(registry: Registry, tag: str, member) -> tuple[Any, type[BaseModel]]:
    """(the union of ``member(name, cls)`` over the registry, discriminated on ``tag``; the member
    of the first, default, plug-in). Each member declares ``tag: Literal[name]``, first in its fields."""
    tag_base = create_model(f"_{tag.title()}Tag", __base__=_Strict, **{tag: (str, ...)})
    members = [member(name, registry.get(name), tag_base) for name in registry]
    return Annotated[Union[tuple(members)], Field(discriminator=tag)], members[0]  # noqa: UP007


def _space_member(name: str, cls: type, tag_base: type[BaseModel]) -> type[BaseModel]:
    """``space: {kind: NAME, ...cls.Options}``"""
    return create_model(f"{cls.__name__}Section", __base__=(cls.Options, tag_base), kind=(Literal[name], name))


def _driver_member(name: str, cls: type, tag_base: type[BaseModel]) -> type[BaseModel]:
    """``driver: {name: NAME, options: cls.Options}``"""
    return create_model(
        f"{cls.__name__}Section",
        __base__=tag_base,
        name=(Literal[name], name),
        options=(cls.Options, Field(default_factory=cls.Options)),
    )


class WorkerSection(_Strict):
    """The ``evaluator`` keys every backend's worker reads (besides the backend's own options).

    ``memory``: where the base and task vectors live (:mod:`evomerge.merge.placement`): ``auto``
    (on the GPU when everything fits, else in pinned host memory, streamed), ``gpu`` or
    ``offload``. ``search_cache``: ``auto`` (half of what the plan leaves free), ``off``, or a cap
    in bytes (``8GiB``, ``500MB``, an integer)."""

    device: str = "auto"
    dtype: DtypeName = "float32"
    batch_size: int = Field(default=32, ge=1)
    memory: Literal["auto", "gpu", "offload"] = "auto"
    search_cache: StrictInt | str = "auto"

    @field_validator("search_cache")
    @classmethod
    def _search_cache(cls, v: int | str) -> int | str:
        if isinstance(v, int):
            if v < 0:
                raise ValueError(f"expected auto, off or a size in bytes, got {v}")
            return v
        text = v.strip().lower()
        return text if text in ("auto", "off") else parse_size(v)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in {"auto", "cpu", "cuda", "mps"} and not re.fullmatch(r"cuda:\d+", v):
            raise ValueError(f"expected auto, cpu, cuda, cuda:N or mps, got {v!r}")
        return v


def _backend_member(name: str, cls: type, tag_base: type[BaseModel]) -> type[BaseModel]:
    """``evaluator: {backend: NAME, device, dtype, batch_size, ...cls.Options}``"""
    return create_model(
        f"{cls.__name__}Section", __base__=(WorkerSection, cls.Options, tag_base), backend=(Literal[name], name)
    )


SpaceSection, _DefaultSpace = _tagged_union(SPACES, "kind", _space_member)
DriverSection, _DefaultDriver = _tagged_union(DRIVERS, "name", _driver_member)
EvaluatorSection, _DefaultEvaluator = _tagged_union(BACKENDS, "backend", _backend_member)

#: The keys v1 wrote into every resolved config (a run directory's config.yaml), whatever the
#: space kind, with the values they had when the kind did not read them.
_V1_SPACE_DEFAULTS = {
    "method": "task_arithmetic",
    "layer_groups": 1,
    "ranges": {},
    "fixed": {},
    "non_layer": "separate",
    "options": {},
    "repeats": 2,
    "fix_ends": True,
    "scale_mode": "matrix",
}


def _v1_space(space: dict) -> dict:
    """A v1 ``space`` section without the other kinds' keys that hold their v1 defaults."""
    kind = space.get("kind")
    if not isinstance(kind, str) or kind not in SPACES:
        return space
    fields = SPACES.get(kind).Options.model_fields
    return {k: v for k, v in space.items() if k == "kind" or k in fields or _V1_SPACE_DEFAULTS.get(k, ...) != v}


class StageBudgets(_Strict):
    """``budget.stages``: the evaluations of each stage of a sequential PS+DFS (``space: {kind:
    psdfs, mode: sequential}``): the PS search, then the DFS search over its winner."""

    ps: int = Field(ge=1)
    dfs: int = Field(ge=1)


class BudgetSection(_Strict):
    max_evals: int | None = Field(default=None, ge=1)  # a staged run: the stages' sum (the default)
    time_limit: float | None = Field(default=None, gt=0)  # seconds; "90m", "2h" accepted; spans all stages
    target: float | dict[str, float] | None = None  # stop once the (scalarised) objective reaches it
    stages: StageBudgets | None = None

    @field_validator("time_limit", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _stages_sum(self) -> BudgetSection:
        if self.stages is None:
            return self
        total = self.stages.ps + self.stages.dfs
        if self.max_evals is None:
            self.max_evals = total
        elif self.max_evals != total:
            raise ValueError(
                f"max_evals is {self.max_evals} but stages add up to {total} "
                f"(ps {self.stages.ps} + dfs {self.stages.dfs}); give one or make them agree"
            )
        return self


class DigitsSection(_Strict):
    """Options of the M2N2 digits problem (``problem: digits``)."""

    seed: StrictInt | None = None  # the world's seed (data split, experts); default: run.seed


class FailureBreakerSection(_Strict):
    """``run.failure_breaker``: stop a run that cannot succeed (counted over one process's new
    results, so a resume after a fix starts afresh)."""

    first: int = Field(default=10, ge=0)  # the first `first` results all failed (0: off)
    window: int = Field(default=50, ge=0)  # more than `fraction` of the last `window` failed (0: off)
    fraction: float = Field(default=0.9, gt=0, le=1)


class RunSection(_Strict):
    seed: int = 0
    checkpoint_every: int | Literal["generation"] = "generation"
    keep_checkpoints: int = Field(default=2, ge=1)
    # the process died this often while evaluating a candidate in-process: record it as failed
    max_attempts: int = Field(default=2, ge=1)
    failure_breaker: FailureBreakerSection = Field(default_factory=FailureBreakerSection)


class RunConfig(_Strict):
    description: str | None = None
    problem: Literal["merge", "digits"] = "merge"
    models: ModelsSection | None = None
    toyworld: ToyWorldSection | None = None
    space: SpaceSection = Field(default_factory=_DefaultSpace)
    driver: DriverSection = Field(default_factory=_DefaultDriver)
    fitness: dict[str, Any] | None = None  # validated by evomerge.fitness.FitnessConfig in runs.plan.build_plan
    budget: BudgetSection = Field(default_factory=BudgetSection)
    evaluator: EvaluatorSection = Field(default_factory=_DefaultEvaluator)
    run: RunSection = Field(default_factory=RunSection)
    digits: DigitsSection | None = None

    @model_validator(mode="before")
    @classmethod
    def _plug_in_tags(cls, data: Any) -> Any:
        """A plug-in section without its tag names the default plug-in; v1 space sections lose the
        keys of other kinds they carried at their defaults (see :data:`_V1_SPACE_DEFAULTS`)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for section, tag, default in (
            ("space", "kind", _DefaultSpace),
            ("driver", "name", _DefaultDriver),
            ("evaluator", "backend", _DefaultEvaluator),
        ):
            if isinstance(data.get(section), dict) and tag not in data[section]:
                data[section] = {tag: default.model_fields[tag].default, **data[section]}
        if isinstance(data.get("space"), dict):
            data["space"] = _v1_space(data["space"])
        return data

    @model_validator(mode="after")
    def _sources(self) -> RunConfig:
        if self.problem == "merge":
            if (self.models is None) == (self.toyworld is None):
                raise ValueError("give exactly one of 'models' (base + experts) or 'toyworld' (preset, seed)")
            if self.models is not None and self.fitness is None:
                raise ValueError("'fitness' (tasks and objectives) is required with 'models'")
            if self.toyworld is not None and self.toyworld.objectives is not None and self.fitness is not None:
                raise ValueError("give either 'toyworld.objectives' (the world's tasks by name) or 'fitness', not both")
        if self.budget.max_evals is None and self.budget.time_limit is None:
            raise ValueError("budget needs max_evals or time_limit (or both)")
        self._stage_budgets()
        return self

    def _stage_budgets(self) -> None:
        """``budget.stages`` belongs to a sequential PS+DFS with a PS stage, and such a run needs it."""
        sequential = getattr(self.space, "mode", None) == "sequential"
        model_a = getattr(self.space, "model_a", None)
        if sequential and self.problem != "merge":
            raise ValueError("space.mode sequential searches merges in stages: it needs problem: merge")
        if self.budget.stages is not None:
            if not sequential:
                raise ValueError("budget.stages splits the budget of space: {kind: psdfs, mode: sequential}; drop it")
            if model_a is not None:
                raise ValueError(
                    f"budget.stages: model A comes from {model_a.run_dir} (space.model_a), so this run is the DFS "
                    f"stage alone: give its budget as budget.max_evals"
                )
        elif sequential and model_a is None:
            raise ValueError(
                "space.mode sequential runs a PS stage, then a DFS stage over its winner: give the budget of each "
                "as budget.stages: {ps: N, dfs: M}"
            )

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)


def parse_config(data: Any, source: str = "config") -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, RunConfig)) from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run config file (structure only; :func:`evomerge.runs.plan.build_plan`
    checks the models, tasks and run directory)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    data = read_yaml(path, what="config file")
    cfg = parse_config(data if data is not None else {}, str(path))
    return resolve_paths(cfg, path.parent)


def resolve_paths(cfg: RunConfig, base_dir: Path) -> RunConfig:
    """Model paths relative to the config file's directory become absolute (when they exist there),
    so that the resolved config in the run directory works from anywhere."""
    if cfg.models is None:
        return cfg

    def fix(p: str | None) -> str | None:
        if p is None:
            return None
        cand = Path(p).expanduser()
        if not cand.is_absolute() and (base_dir / cand).exists():
            return str((base_dir / cand).resolve())
        if cand.is_absolute() or p.startswith(("~", ".")):
            return str(cand.resolve()) if cand.exists() else str(cand)
        return p

    models = cfg.models.model_copy(
        update={"base": fix(cfg.models.base), "experts": {k: fix(v) for k, v in cfg.models.experts.items()}}
    )
    return cfg.model_copy(update={"models": models})


def with_overrides(cfg: RunConfig, **overrides: Any) -> RunConfig:
    """Apply CLI flags (``max_evals``, ``time_limit``, ``seed``, ``backend``, ``address``,
    ``eval_timeout``) when given.

    Only the keys the config sets are carried over, so ``--backend ray`` on an in-process config
    gets Ray's own defaults. ``--address`` names a Ray cluster, so it implies ``--backend ray``;
    with another ``--backend`` it is refused."""
    data = cfg.model_dump(mode="python", exclude_unset=True)
    if overrides.get("address") is not None:
        if overrides.get("backend") not in (None, "ray"):
            raise ConfigError(
                f"--address {overrides['address']} names a Ray cluster, but --backend is {overrides['backend']}; "
                "drop --address or use --backend ray"
            )
        overrides = {**overrides, "backend": "ray"}
    where = {
        "max_evals": ("budget", "max_evals"),
        "time_limit": ("budget", "time_limit"),
        "seed": ("run", "seed"),
        "backend": ("evaluator", "backend"),
        "address": ("evaluator", "address"),
        "eval_timeout": ("evaluator", "timeout"),
    }
    for key, value in overrides.items():
        if value is None:
            continue
        section, field = where[key]
        data.setdefault(section, {})[field] = value
    return parse_config(data, "command line")
