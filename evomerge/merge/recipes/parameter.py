"""Parameter-space merge recipes: a pydantic model with YAML in and out.

The keys mirror mergekit's (``merge_method``, ``base_model``, ``models[].parameters``,
``parameters``, ``dtype``) plus ``seed`` (randomized methods draw per-tensor masks from
``(seed, tensor name)``) and ``options`` (where the papers and mergekit differ; mergekit's
behaviour is every option's default). See ``docs/merge-methods.md``.

A parameter setting is a scalar, a gradient list interpolated over layers, or a list of
``{filter, value}`` entries (:mod:`evomerge.merge.params`). Every invalid input raises
:class:`~evomerge.errors.ConfigError` with one line naming the key and the bad value, e.g.
``recipe.yaml: models[1].parameters.density = 1.5: expected a value in [0, 1]``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from evomerge.dtypes import DtypeName
from evomerge.errors import ConfigError, EvomergeError
from evomerge.merge.methods import get_method, method_names
from evomerge.merge.methods.registry import MethodSpec
from evomerge.merge.params import COMMON_OPTIONS
from evomerge.validation import format_validation_error, parse_yaml, show_value

OUR_KEYS = ("merge_method", "base_model", "models", "parameters", "dtype", "seed", "options")

# Value ranges for parameters whose meaning bounds them.
_RANGES: dict[str, tuple[float, float]] = {
    "density": (0.0, 1.0),
    "gamma": (0.0, 1.0),
    "epsilon": (0.0, 1.0),
}
#: The same, for callers that must keep values inside them (a search space's ``ranges``).
VALUE_RANGES = _RANGES


# --------------------------------------------------------------------------- settings


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("expected a number")
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return float(value)


def _scalar_or_gradient(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("expected a non-empty gradient list")
        return [_number(v) for v in value]
    raise ValueError("expected a number, a gradient list of numbers or a list of {filter, value} entries")


def _parse_setting(value: Any) -> Any:
    """Normalise a setting: scalar | [numbers] | [{filter: str | None, value: scalar | [numbers]}]."""
    if isinstance(value, dict):
        value = [value]  # mergekit accepts a single conditional entry
    if isinstance(value, (list, tuple)) and value and any(isinstance(v, dict) for v in value):
        entries = []
        for entry in value:
            if not isinstance(entry, dict) or "value" not in entry or set(entry) - {"filter", "value"}:
                raise ValueError("expected {filter, value} entries (filter optional)")
            flt = entry.get("filter")
            if flt is not None and not isinstance(flt, str):
                raise ValueError("a filter must be a string")
            entries.append(
                {"filter": None if flt in (None, "*") else flt, "value": _scalar_or_gradient(entry["value"])}
            )
        return entries
    return _scalar_or_gradient(value)


Setting = Annotated[Any, BeforeValidator(_parse_setting)]


def _leaves(setting: Any, key: str):
    """(key, value) for every scalar inside a normalised setting, for range checks."""
    if isinstance(setting, list):
        for i, item in enumerate(setting):
            if isinstance(item, dict):
                yield from _leaves(item["value"], f"{key}[{i}].value")
            else:
                yield f"{key}[{i}]", item
    else:
        yield key, setting


def _has_gradient(setting: Any) -> bool:
    if isinstance(setting, list):
        return any(_has_gradient(e["value"]) if isinstance(e, dict) else True for e in setting)
    return False


# --------------------------------------------------------------------------- models


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    parameters: dict[str, Setting] = {}


class Recipe(BaseModel):
    """A parameter-space merge recipe (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    merge_method: str
    base_model: str | None = None
    models: list[ModelEntry]
    parameters: dict[str, Setting] = {}
    dtype: DtypeName = "float32"
    seed: int = 0
    options: dict[str, str] = {}

    # ----------------------------------------------------------------- derived views

    @property
    def spec(self) -> MethodSpec:
        return get_method(self.merge_method)

    def indexed_experts(self) -> list[tuple[int, ModelEntry]]:
        """(index in ``models``, entry) of the models that receive tensors: all of them, minus
        the base model's own entry for methods that take a base."""
        skip_base = self.spec.needs_base and self.base_model is not None
        return [(i, m) for i, m in enumerate(self.models) if not (skip_base and m.model == self.base_model)]

    def expert_positions(self) -> list[int]:
        return [i for i, _ in self.indexed_experts()]

    @property
    def experts(self) -> list[ModelEntry]:
        return [m for _, m in self.indexed_experts()]

    @property
    def expert_ids(self) -> list[str]:
        return [m.model for m in self.experts]

    def has_gradient(self) -> bool:
        settings = list(self.parameters.values()) + [v for m in self.models for v in m.parameters.values()]
        return any(_has_gradient(s) for s in settings)

    # ----------------------------------------------------------------- semantic checks

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        try:
            spec = get_method(self.merge_method)
        except ConfigError:
            raise ConfigError(
                f"merge_method = {self.merge_method!r}: unknown merge method; expected one of: {', '.join(method_names())}"
            ) from None
        if not self.models:
            raise ConfigError("models = []: expected at least one model")
        if spec.needs_base and not self.base_model:
            raise ConfigError(f"base_model: missing; merge_method {spec.name} needs a base model")
        n = len(self.indexed_experts())
        if n < spec.min_models:
            raise ConfigError(
                f"models: {spec.name} needs at least {spec.min_models} model(s) besides base_model, got {n}"
            )
        if spec.max_models is not None and n > spec.max_models:
            raise ConfigError(f"models: {spec.name} merges at most {spec.max_models} model(s) with base_model, got {n}")

        model_names = list(spec.model_params)
        global_names = list(spec.global_params) + [k for k in model_names if k not in spec.global_params]
        for i, entry in enumerate(self.models):
            for key, setting in entry.parameters.items():
                where = f"models[{i}].parameters.{key}"
                if key not in spec.model_params:
                    expected = (
                        ", ".join(model_names) if model_names else f"none ({spec.name} takes only global parameters)"
                    )
                    raise ConfigError(
                        f"{where}: unknown per-model parameter for {spec.name}; expected one of: {expected}"
                    )
                self._check_values(spec, key, setting, where, spec.model_params[key])
        for key, setting in self.parameters.items():
            where = f"parameters.{key}"
            if key not in global_names:
                raise ConfigError(
                    f"{where}: unknown parameter for {spec.name}; expected one of: {', '.join(global_names)}"
                )
            default = spec.global_params[key] if key in spec.global_params else spec.model_params[key]
            self._check_values(spec, key, setting, where, default)

        for name, default in spec.model_params.items():
            if default is None and name not in self.parameters:
                for i, entry in self.indexed_experts():
                    if name not in entry.parameters:
                        raise ConfigError(
                            f"models[{i}].parameters.{name}: missing; {spec.name} needs {name} for every model "
                            "(per model or in the global parameters)"
                        )
        for name, default in spec.global_params.items():
            if default is None and name not in self.parameters:
                raise ConfigError(f"parameters.{name}: missing; {spec.name} needs {name}")

        allowed_options = {**COMMON_OPTIONS, **spec.options}
        for key, value in self.options.items():
            if key not in allowed_options:
                known = ", ".join(allowed_options)
                raise ConfigError(f"options.{key}: unknown option for {spec.name}; expected one of: {known}")
            if value not in allowed_options[key]:
                raise ConfigError(f"options.{key} = {value!r}: expected one of: {', '.join(allowed_options[key])}")
        if self.options.get("ties_scope") == "model":
            for i, entry in self.indexed_experts():
                setting = entry.parameters.get("density", self.parameters.get("density"))
                if isinstance(setting, list):
                    where = f"models[{i}].parameters.density" if "density" in entry.parameters else "parameters.density"
                    raise ConfigError(
                        f"{where}: options.ties_scope=model trims each whole model with one density; expected a scalar"
                    )
        if "epsilon" in spec.model_params:
            for i, entry in self.indexed_experts():
                d = entry.parameters.get("density", self.parameters.get("density", spec.model_params["density"]))
                e = entry.parameters.get("epsilon", self.parameters.get("epsilon", spec.model_params["epsilon"]))
                if isinstance(d, float) and isinstance(e, float) and 0 < d < 1 and not (0 < d - e and d + e < 1):
                    raise ConfigError(
                        f"models[{i}].parameters.epsilon = {e:g}: density {d:g} ± epsilon must stay inside (0, 1)"
                    )
        return self

    @staticmethod
    def _check_values(spec: MethodSpec, key: str, setting: Any, where: str, default: Any) -> None:
        is_bool = isinstance(default, bool)
        if is_bool and not isinstance(setting, bool):
            raise ConfigError(f"{where} = {show_value(setting)}: expected true or false")
        for leaf_key, value in _leaves(setting, where):
            if not is_bool and isinstance(value, bool):
                raise ConfigError(f"{leaf_key} = {show_value(value)}: expected a number")
            if key in _RANGES:
                lo, hi = _RANGES[key]
                if not lo <= value <= hi:
                    raise ConfigError(f"{leaf_key} = {show_value(value)}: expected a value in [{lo:g}, {hi:g}]")
        if isinstance(setting, list):
            for i, entry in enumerate(setting):
                if isinstance(entry, dict) and entry["filter"] is None and i != len(setting) - 1:
                    raise ConfigError(
                        f"{where}[{i}]: an entry without filter must come last (entries after it never match)"
                    )

    # ----------------------------------------------------------------- (de)serialisation

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Recipe:  # type: ignore[override]
        """pydantic's ``model_validate`` with errors turned into one-line :class:`ConfigError`."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, "", cls, layout="path")) from None

    @classmethod
    def from_dict(cls, data: Any, source_name: str | None = None) -> Recipe:
        if not isinstance(data, dict):
            raise ConfigError(
                f"{source_name or 'recipe'}: expected a mapping of recipe keys, got {type(data).__name__}"
            )
        try:
            return cls.model_validate(data)
        except EvomergeError as exc:
            raise ConfigError(f"{source_name}: {exc}" if source_name else str(exc)) from None

    @classmethod
    def from_yaml(cls, path_or_text: str | os.PathLike, source_name: str | None = None) -> Recipe:
        """Parse a recipe from a YAML file path or YAML text; errors name ``source_name`` (or the file)."""
        text, source = read_yaml_source(path_or_text, source_name)
        return cls.from_dict(parse_yaml(text, source), source)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"merge_method": self.merge_method}
        if self.base_model is not None:
            data["base_model"] = self.base_model
        data["models"] = [
            {"model": m.model, **({"parameters": dict(m.parameters)} if m.parameters else {})} for m in self.models
        ]
        if self.parameters:
            data["parameters"] = dict(self.parameters)
        data["dtype"] = self.dtype
        data["seed"] = self.seed
        data["options"] = dict(self.options)
        return _plain(data)

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())


# --------------------------------------------------------------------------- YAML helpers


class _Dumper(yaml.SafeDumper):
    """Numeric lists (gradients) in flow style, like mergekit writes them."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not (k == "filter" and v is None)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def read_yaml_source(path_or_text: str | os.PathLike, source_name: str | None = None) -> tuple[str, str]:
    """(text, source name) from a path or from YAML text."""
    if isinstance(path_or_text, os.PathLike) or (
        isinstance(path_or_text, str) and "\n" not in path_or_text and path_or_text.endswith((".yaml", ".yml"))
    ):
        path = Path(path_or_text)
        try:
            return path.read_text(encoding="utf-8"), source_name or str(path)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None
    return str(path_or_text), source_name or "<recipe>"


def load_recipe(path: str | os.PathLike):
    """Load a recipe file of any kind evomerge reads.

    - ``merge_method: dataflow`` → :class:`evomerge.space.dataflow.DataFlowRecipe`;
    - our YAML (only our keys, and ``seed`` or ``options`` present, as :meth:`Recipe.to_yaml`
      always writes) → :class:`Recipe`;
    - anything else is read as mergekit YAML (:func:`evomerge.merge.mergekit_io.from_mergekit`),
      which refuses what a parameter-space recipe cannot express.
    """
    text, source = read_yaml_source(Path(path))
    data = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of recipe keys, got {type(data).__name__}")
    if data.get("merge_method") == "dataflow":
        try:
            from evomerge.space.dataflow import DataFlowRecipe
        except ModuleNotFoundError as exc:  # the data-flow package not installed/built
            raise ConfigError(f"{source}: merge_method dataflow needs evomerge.space.dataflow ({exc})") from None

        if hasattr(DataFlowRecipe, "from_yaml"):
            return DataFlowRecipe.from_yaml(path)
        return DataFlowRecipe.model_validate(data)
    if set(data) <= set(OUR_KEYS) and ("seed" in data or "options" in data):
        return Recipe.from_dict(data, source)
    from evomerge.merge.mergekit_io import from_mergekit

    return from_mergekit(data, source_name=source)
