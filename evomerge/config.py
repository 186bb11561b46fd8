"""The run config: one YAML file, validated completely before anything heavy happens.

Every section forbids unknown keys: a typo is reported as one line naming the file, the dotted
key and the closest known key (``runs.yaml: unknown key 'space.layer_group' (did you mean
'space.layer_groups'?)``), because a silently ignored key is a run of days with the wrong setting.

Sections::

    models:    {base: PATH_OR_HUB_ID, experts: {name: PATH_OR_HUB_ID}}   # or, instead:
    toyworld:  {preset: demo|test|carry, seed: 0, objectives: [task, ...]}   # models and tasks from the embedded world
    space:     {kind: parameter|dataflow|psdfs, method, layer_groups, params, ranges, ...}
    driver:    {name: cmaes|m2n2|optuna-tpe|random|..., options: {...}}
    fitness:   fitness.FitnessConfig (tasks, objectives, early_stopping)
    budget:    {max_evals, time_limit, target}
    evaluator: {backend: inprocess|ray, num_workers, num_gpus, device, dtype, batch_size, address}
    run:       {seed, checkpoint_every, keep_checkpoints}
    problem:   merge (default) | digits
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evomerge.errors import ConfigError


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
                hint = difflib.get_close_matches(name, list(TASKS), n=1, cutoff=0.6)
                tail = f"did you mean {hint[0]!r}? " if hint else ""
                raise ValueError(f"unknown toy-world task {name!r} ({tail}known: {', '.join(TASKS)})")
        dup = sorted({n for n in v if v.count(n) > 1})
        if dup:
            raise ValueError(f"task {dup[0]!r} is named twice")
        return v


class SpaceSection(_Strict):
    """Passed to :mod:`evomerge.space` (``ParameterSpace`` / ``DataFlowSpace`` / ``JointSpace``)."""

    kind: Literal["parameter", "dataflow", "psdfs"] = "parameter"
    # parameter space (also the PS half of psdfs)
    method: str = "task_arithmetic"
    method_choices: list[str] | None = None  # the method itself searched as a categorical gene
    layer_groups: int | list[int] = 1  # k near-equal groups, or explicit boundaries [0, …, L]
    params: list[str] | None = None  # which method parameters are genes (default weight, density)
    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    fixed: dict[str, Any] = Field(default_factory=dict)  # global method parameters held constant
    non_layer: Literal["separate", "fold"] = "separate"
    options: dict[str, Any] = Field(default_factory=dict)  # recipe options (e.g. ties_scope)
    # data-flow space
    repeats: int = Field(default=2, ge=1)
    embed_from: str | None = None  # expert whose embeddings / head / end layers frame the path
    fix_ends: bool = True
    scale_mode: Literal["matrix", "per_layer", "none"] = "matrix"
    scale_range: tuple[float, float] | None = None


class DriverSection(_Strict):
    name: str = "cmaes"
    options: dict[str, Any] = Field(default_factory=dict)


class BudgetSection(_Strict):
    max_evals: int | None = Field(default=None, ge=1)
    time_limit: float | None = Field(default=None, gt=0)  # seconds; "90m", "2h" accepted
    target: float | dict[str, float] | None = None  # stop once the (scalarised) objective reaches it

    @field_validator("time_limit", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v


class EvaluatorSection(_Strict):
    backend: Literal["inprocess", "ray"] = "inprocess"
    num_workers: int | None = Field(default=None, ge=1)
    num_gpus: float | None = Field(default=None, ge=0)
    device: str = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    batch_size: int = Field(default=32, ge=1)
    address: str | None = None

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in {"auto", "cpu", "cuda", "mps"} and not re.fullmatch(r"cuda:\d+", v):
            raise ValueError(f"expected auto, cpu, cuda, cuda:N or mps, got {v!r}")
        return v


class RunSection(_Strict):
    seed: int = 0
    checkpoint_every: int | Literal["generation"] = "generation"
    keep_checkpoints: int = Field(default=2, ge=1)


class RunConfig(_Strict):
    description: str | None = None
    problem: Literal["merge", "digits"] = "merge"
    models: ModelsSection | None = None
    toyworld: ToyWorldSection | None = None
    space: SpaceSection = Field(default_factory=SpaceSection)
    driver: DriverSection = Field(default_factory=DriverSection)
    fitness: dict[str, Any] | None = None  # validated by fitness.FitnessConfig in validate_config
    budget: BudgetSection = Field(default_factory=BudgetSection)
    evaluator: EvaluatorSection = Field(default_factory=EvaluatorSection)
    run: RunSection = Field(default_factory=RunSection)
    digits: dict[str, Any] | None = None  # options of the digits problem (problem: digits)

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
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)


# ---------------------------------------------------------------------------------------------
def parse_duration(text: str) -> float:
    """'3600', '90s', '90m', '2h', '1d', '1h30m' → seconds."""
    s = text.strip().lower().replace(" ", "")
    try:
        return float(s)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", s)
    if not parts or "".join(a + b for a, b in parts) != s:
        raise ValueError(f"expected seconds or a duration like 90m, 2h, 1h30m; got {text!r}")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return float(sum(float(a) * unit[b] for a, b in parts))


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Known keys of the section that ``loc`` (minus its last element) points into."""
    cls: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return []
        field = cls.model_fields.get(part)
        if field is None:
            return []
        cls = _model_type(field.annotation)
        if cls is None:
            return []
    return list(cls.model_fields) if isinstance(cls, type) and issubclass(cls, BaseModel) else []


def _model_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_type(arg)
        if found is not None:
            return found
    return None


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel], prefix: str = "") -> str:
    """The first error of ``exc`` as one line: ``source: key 'a.b': message``."""
    err = exc.errors()[0]
    loc = tuple(
        p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in {"function-after", "function-before"}))
    )
    dotted = prefix + ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        known = _fields_at(model, loc)
        hint = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        parent = prefix + ".".join(str(p) for p in loc[:-1])
        where = f"'{parent}.{hint[0]}'" if hint and parent else (f"'{hint[0]}'" if hint else None)
        tail = f" (did you mean {where}?)" if where else (f" (known keys: {', '.join(known)})" if known else "")
        return f"{source}: unknown key '{dotted}'{tail}"
    msg = err["msg"].removeprefix("Value error, ")
    if not dotted:
        return f"{source}: {msg}"
    if err["type"] == "missing":
        return f"{source}: missing key '{dotted}'"
    got = err.get("input")
    got_s = "" if isinstance(got, (dict, list)) or got is None or "got" in msg else f" (got {got!r})"
    return f"{source}: key '{dotted}': {msg}{got_s}"


def parse_config(data: Any, source: str = "config") -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, RunConfig)) from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run config file (structure only; see :func:`evomerge.runs.setup.validate`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
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
    """Apply CLI flags (``max_evals``, ``time_limit``, ``seed``, ``backend``, ``address``) when given."""
    data = cfg.model_dump(mode="python")
    where = {
        "max_evals": ("budget", "max_evals"),
        "time_limit": ("budget", "time_limit"),
        "seed": ("run", "seed"),
        "backend": ("evaluator", "backend"),
        "address": ("evaluator", "address"),
    }
    for key, value in overrides.items():
        if value is None:
            continue
        section, field = where[key]
        data[section][field] = value
    return parse_config(data, "command line")
