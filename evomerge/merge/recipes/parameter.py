"""Parameter-space merge recipes: a pydantic model with YAML in and out.

The keys mirror mergekit's (``merge_method``, ``base_model``, ``models[].parameters``,
``parameters``, ``dtype``) plus ``seed`` (randomized methods draw per-tensor masks from
``(seed, tensor name)``) and ``options`` (where the papers and mergekit differ; mergekit's
behaviour is every option's default). See ``docs/merge-methods.md``.

A parameter setting is a scalar, a gradient list interpolated over layers, or a list of
``{filter, value}`` entries (:mod:`evomerge.merge.params`). Every invalid input raises
:class:`~evomerge.errors.ConfigError` with one line naming the key and the bad value, e.g.
``recipe.yaml: models[1].parameters.density = 1.5: expected a value in [0, 1]``. Which parameters a
method takes is its :class:`~evomerge.merge.methods.registry.MethodSpec`; what values each may hold,
:mod:`evomerge.merge.parameters`.

A recipe kind (this one, and :class:`~evomerge.merge.recipes.dataflow.DataFlowRecipe`) knows how
to run itself: :meth:`Recipe.build` (into a worker's live model), :meth:`Recipe.materialize` (to a
checkpoint directory), :meth:`Recipe.load_model` (a model to score once), :meth:`Recipe.to_mergekit`
and :meth:`Recipe.to_yaml`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from evomerge.dtypes import DtypeName
from evomerge.errors import ConfigError, EvomergeError
from evomerge.merge import mergekit_io
from evomerge.merge.materialize import DEFAULT_MAX_SHARD_BYTES, load_merged
from evomerge.merge.materialize import materialize as materialize_recipe
from evomerge.merge.methods import get_method, method_names
from evomerge.merge.methods.registry import MethodSpec
from evomerge.merge.parameters import COMMON_OPTIONS, OPTIONS, PARAMETERS
from evomerge.merge.yaml_text import dump_yaml, plain, read_yaml_source
from evomerge.validation import format_validation_error, parse_yaml, show_value

OUR_KEYS = ("merge_method", "base_model", "models", "parameters", "dtype", "seed", "options")


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
                self._check_values(key, setting, where)
        for key, setting in self.parameters.items():
            where = f"parameters.{key}"
            if key not in global_names:
                raise ConfigError(
                    f"{where}: unknown parameter for {spec.name}; expected one of: {', '.join(global_names)}"
                )
            self._check_values(key, setting, where)

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

        allowed_options = {**{o: OPTIONS[o].values for o in COMMON_OPTIONS}, **spec.options}
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
    def _check_values(key: str, setting: Any, where: str) -> None:
        parameter = PARAMETERS[key]
        if parameter.is_bool and not isinstance(setting, bool):
            raise ConfigError(f"{where} = {show_value(setting)}: expected true or false")
        for leaf_key, value in _leaves(setting, where):
            if not parameter.is_bool and isinstance(value, bool):
                raise ConfigError(f"{leaf_key} = {show_value(value)}: expected a number")
            if parameter.bounds is not None:
                lo, hi = parameter.bounds
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
        return plain(data)

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())

    # ----------------------------------------------------------------- running it

    def build(self, live) -> tuple[Any, Any]:
        """``(model, tokenizer)``: the merge written in place into ``live``'s resident model
        (:class:`~evomerge.merge.live.LiveModels`; only tensors whose parameters changed)."""
        live.merger.apply(self)
        return live.model, live.tokenizer

    def materialize(
        self,
        out_dir: str | os.PathLike,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        force: bool = False,
        progress: bool = True,
        max_shard_bytes: int | None = None,
    ) -> Path:
        """Write the merged checkpoint to ``out_dir`` (:func:`evomerge.merge.materialize.materialize`)."""
        shards = DEFAULT_MAX_SHARD_BYTES if max_shard_bytes is None else max_shard_bytes
        return materialize_recipe(
            self, out_dir, device=device, dtype=dtype, force=force, progress=progress, max_shard_bytes=shards
        )

    def load_model(self, workdir: str | os.PathLike, *, device: str = "cpu", dtype=None) -> tuple[Any, Any]:
        """``(model, tokenizer)`` to score this recipe once: the checkpoint :meth:`materialize`
        writes (under ``workdir``), loaded back in ``dtype``."""
        return load_merged(self, workdir, device=device, dtype=dtype)

    def to_mergekit(self) -> dict[str, Any]:
        """The mergekit config that rebuilds these weights (:func:`evomerge.merge.mergekit_io.to_mergekit`)."""
        return mergekit_io.to_mergekit(self)

    def to_mergekit_yaml(self) -> str:
        return mergekit_io.to_mergekit_yaml(self)

    def parameter_recipe(self) -> Recipe:
        """The parameter-space merge this recipe holds: itself."""
        return self

    def model_ids(self) -> list[str]:
        """Every model the recipe reads (base first), as written: what an output must never replace."""
        ids = ([str(self.base_model)] if self.base_model is not None else []) + [str(m.model) for m in self.models]
        return list(dict.fromkeys(ids))
