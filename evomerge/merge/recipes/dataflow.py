"""Data-flow recipes (``merge_method: dataflow``): a layer path through one or more source models.

Each step runs ``layer`` of source ``model`` with its input (the residual stream) multiplied by
``scale``; embeddings, final norm, head and tokenizer come from ``embed_from``. A source is a
checkpoint (path or hub id) or a nested parameter-space recipe (PS+DFS: the source is itself a
merge). The search space that produces these recipes is :class:`evomerge.space.dataflow.DataFlowSpace`.

Running one: :meth:`DataFlowRecipe.build` (a path model over a worker's resident sources,
:mod:`evomerge.merge.dataflow.path_model`), :meth:`DataFlowRecipe.materialize` (the scales folded into
a plain checkpoint, :mod:`evomerge.merge.dataflow.fold`), :meth:`DataFlowRecipe.to_mergekit` (a
``passthrough`` config).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evomerge.dtypes import DtypeName
from evomerge.errors import ConfigError, EvomergeError
from evomerge.merge.dataflow import fold, path_model
from evomerge.merge.recipes.parameter import Recipe
from evomerge.validation import format_validation_error, parse_yaml, read_yaml


class PathStep(BaseModel):
    """One step of the path: ``layer`` of source ``model``, its input multiplied by ``scale``."""

    model_config = ConfigDict(extra="forbid")

    model: str
    layer: int = Field(ge=0)
    scale: float = 1.0

    @field_validator("scale")
    @classmethod
    def _positive_finite(cls, v: float) -> float:
        # Folding divides by the running product of scales and norm(c·x) = norm(x) needs c > 0.
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"scale must be a finite number > 0, got {v}")
        return v


class DataFlowRecipe(BaseModel):
    """A layer path through one or more source models (``merge_method: dataflow``).

    ``sources`` maps a name to a model path / hub id, or to a nested parameter-space recipe dict
    (the PS+DFS sequence: source A is itself a merge). Tokenizer, embeddings, final norm and head
    come from ``embed_from``.
    """

    model_config = ConfigDict(extra="forbid")

    merge_method: Literal["dataflow"] = "dataflow"
    sources: dict[str, str | dict[str, Any]]
    embed_from: str
    path: list[PathStep] = Field(min_length=1)
    dtype: DtypeName = "float32"

    @model_validator(mode="after")
    def _names_known(self) -> DataFlowRecipe:
        if not self.sources:
            raise ValueError("sources must name at least one model")
        if self.embed_from not in self.sources:
            raise ValueError(f"embed_from {self.embed_from!r} is not a source; expected one of {sorted(self.sources)}")
        for k, step in enumerate(self.path):
            if step.model not in self.sources:
                raise ValueError(
                    f"path[{k}].model {step.model!r} is not a source; expected one of {sorted(self.sources)}"
                )
        for name, src in self.sources.items():
            if isinstance(src, dict):
                _validate_nested(name, src)
        return self

    # ---- YAML -------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> DataFlowRecipe:
        if isinstance(text_or_path, str) and "\n" not in text_or_path and text_or_path.endswith((".yaml", ".yml")):
            if not Path(text_or_path).is_file():
                raise ConfigError(f"{text_or_path}: data-flow recipe file not found")
        if isinstance(text_or_path, Path) or ("\n" not in str(text_or_path) and Path(str(text_or_path)).is_file()):
            where = str(text_or_path)
            data = read_yaml(text_or_path, what="data-flow recipe")
        else:
            where = "<string>"
            data = parse_yaml(str(text_or_path), where)
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping with keys merge_method, sources, embed_from, path")
        return cls.validate_dict(data, where=where)

    @classmethod
    def validate_dict(cls, data: dict, where: str = "data-flow recipe") -> DataFlowRecipe:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, where, cls)) from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    # ---- helpers ----------------------------------------------------------------------------
    def layer_sequence(self) -> list[tuple[str, int]]:
        return [(s.model, s.layer) for s in self.path]

    def scales(self) -> list[float]:
        return [s.scale for s in self.path]

    def cumulative_scales(self) -> list[float]:
        """``C_k = s_0·s_1⋯s_k``: the residual stream after step k is ``C_k`` times the stream of
        the same layers without scales (pre-norm models, norm eps = 0)."""
        out, c = [], 1.0
        for s in self.path:
            c *= s.scale
            out.append(c)
        return out

    def nested_recipe(self, name: str) -> Recipe | None:
        """The parameter-space :class:`~evomerge.merge.recipes.parameter.Recipe` of a nested source, else None."""
        src = self.sources[name]
        if not isinstance(src, dict):
            return None
        return Recipe.model_validate(src)

    def check_layers(self, num_layers: Mapping[str, int]) -> None:
        """Raise ConfigError naming the step when a layer index is out of range for its source."""
        for k, step in enumerate(self.path):
            n = num_layers[step.model]
            if step.layer >= n:
                raise ConfigError(
                    f"data-flow recipe: path[{k}] uses layer {step.layer} of source {step.model!r}, "
                    f"which has layers 0..{n - 1}"
                )

    # ---- running it -------------------------------------------------------------------------
    def build(self, live) -> tuple[Any, Any]:
        """``(model, tokenizer)``: the path model over ``live``'s resident sources
        (:class:`~evomerge.merge.live.LiveModels`: a checkpoint is read once, a nested recipe is
        merged in place), layers shared by reference, nothing copied."""
        sources = {
            name: live.source(name, src if isinstance(src, str) else self.nested_recipe(name))
            for name, src in self.sources.items()
        }
        model = path_model.build_path_model(self, sources).eval()
        return model, live.tokenizer_for(str(path_model.tokenizer_source(self)))

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
        """Write the folded checkpoint to ``out_dir`` (:func:`evomerge.merge.dataflow.fold.materialize_dataflow`;
        ``dtype`` overrides the recipe's; no progress bar)."""
        recipe = self if dtype is None or dtype == self.dtype else self.model_copy(update={"dtype": dtype})
        shards = "5GB" if max_shard_bytes is None else max_shard_bytes
        return fold.materialize_dataflow(recipe, out_dir, device=device, force=force, max_shard_size=shards)

    def load_model(self, workdir: str | os.PathLike, *, device: str = "cpu", dtype=None) -> tuple[Any, Any]:
        """``(model, tokenizer)`` to score this recipe once: the path model over its sources loaded
        onto ``device`` in ``dtype`` (nested recipes merged in memory; ``workdir`` is not used)."""
        from transformers import AutoTokenizer

        sources = path_model.load_dataflow_sources(self, device=device, dtype=dtype)
        model = path_model.build_path_model(self, sources).eval()
        return model, AutoTokenizer.from_pretrained(path_model.tokenizer_source(self))

    def to_mergekit(self) -> dict[str, Any]:
        """A mergekit ``passthrough`` config building the folded checkpoint
        (:func:`evomerge.merge.dataflow.fold.to_mergekit_passthrough`)."""
        return fold.to_mergekit_passthrough(self)

    def to_mergekit_yaml(self) -> str:
        return yaml.safe_dump(self.to_mergekit(), sort_keys=False)

    def model_ids(self) -> list[str]:
        """Every model the recipe reads, nested recipes' included: what an output must never replace."""
        ids: list[str] = []
        for name, src in self.sources.items():
            ids += [src] if isinstance(src, str) else self.nested_recipe(name).model_ids()
        return list(dict.fromkeys(ids))

    def parameter_recipe(self) -> Recipe | None:
        """The parameter-space merge this recipe holds: its first nested source (model A of PS+DFS), else None."""
        return next((self.nested_recipe(name) for name, s in self.sources.items() if isinstance(s, dict)), None)


def _validate_nested(name: str, src: dict) -> None:
    try:
        Recipe.model_validate(src)  # raises ConfigError: Recipe reports its own errors as one line
    except EvomergeError as exc:
        raise ValueError(f"nested recipe of source {name!r}: {exc}") from None
