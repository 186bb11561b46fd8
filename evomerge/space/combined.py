"""PS+DFS: a layer path over a parameter-space merge.

* Sequential (the paper's order, ``space: {kind: psdfs, mode: sequential}``): run a PS search,
  then a DFS search whose model A is the PS winner. The run does it in two stages
  (:mod:`evomerge.runs.stages`); here are the two spaces: :meth:`JointSpace.ps_options` (the PS
  stage's ``space`` section) and :func:`dfs_over_merge` (the DFS stage's space over a given PS
  recipe, built on :func:`sequential_space`). Its recipes carry the PS recipe nested as source
  :data:`MERGED`, so they stay self-contained. ``model_a: {run_dir}`` takes model A from a
  finished run instead of a PS stage.
* Joint (:class:`JointSpace`, alias ``PSDFSSpace``; ``mode: joint``, the default): one genome
  ``[x_PS | x_DFS]``; the PS half becomes the nested recipe of the DFS source ``ps_source``.
  Both halves start at their own ``x0`` and share ``sigma0 = 1/6``; crossover points are the
  union of both halves' boundaries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from evomerge.errors import ConfigError
from evomerge.merge.recipes.dataflow import DataFlowRecipe
from evomerge.space.base import SpaceInputs
from evomerge.space.dataflow import DataFlowSpace, DataFlowSpaceOptions, frame_expert
from evomerge.space.parameter import ParameterSpace, ParameterSpaceOptions


def _as_dict(recipe) -> dict:
    if isinstance(recipe, dict):
        return recipe
    if hasattr(recipe, "to_dict"):  # the Recipe's canonical plain form (what its YAML holds)
        return recipe.to_dict()
    return recipe.model_dump(mode="json", exclude_none=True)


def sequential_space(
    ps_recipe,
    ps_num_layers: int,
    others: Mapping[str, tuple[str, int]],
    *,
    name: str = "A",
    **dfs_options,
) -> DataFlowSpace:
    """A :class:`DataFlowSpace` whose model A (``name``, embeddings and head) is the merge
    ``ps_recipe``; ``others`` maps further source names to ``(path, num_layers)``."""
    if name in others:
        raise ConfigError(f"PS+DFS: source name {name!r} is used twice")
    source_layers = {name: int(ps_num_layers), **{k: int(v[1]) for k, v in others.items()}}
    sources = {name: _as_dict(ps_recipe), **{k: str(v[0]) for k, v in others.items()}}
    dfs_options.setdefault("embed_from", name)
    return DataFlowSpace(source_layers, sources=sources, **dfs_options)


def dfs_over_merge(options: DataFlowSpaceOptions, inputs: SpaceInputs, ps_recipe) -> DataFlowSpace:
    """The DFS half of PS+DFS (both forms): a layer path over model A — the merge ``ps_recipe``,
    source :data:`MERGED`, in place of the frame expert ``embed_from`` and framing the path — and
    the other experts' own layers. ``options``' data-flow fields set the space; ``to_recipe(x0)``
    is model A's identity path."""
    embed = frame_expert(options, inputs)
    others = {n: (p, inputs.num_layers) for n, p in inputs.experts.items() if n != embed}
    settings = options.model_dump(include=set(DataFlowSpaceOptions.model_fields))
    settings["embed_from"] = MERGED
    return sequential_space(ps_recipe, inputs.num_layers, others, name=MERGED, dtype=inputs.dtype, **settings)


#: The data-flow source name of the PS merge (model A) in both forms of PS+DFS.
MERGED = "merged"


class ModelA(BaseModel):
    """``space.model_a``: model A of a sequential PS+DFS taken from a finished run directory (its
    best candidate, or ``candidate``) instead of a PS stage of this run."""

    model_config = ConfigDict(extra="forbid")

    run_dir: str
    candidate: int | None = Field(default=None, ge=0)


class JointSpaceOptions(ParameterSpaceOptions, DataFlowSpaceOptions):
    """The ``space`` options of ``kind: psdfs``: the PS half's and the DFS half's. ``embed_from``
    names the expert whose place (and frame) the PS merge takes. ``mode``: ``joint`` (one genome,
    both halves searched together) or ``sequential`` (a PS stage, then a DFS stage over its
    winner; ``budget.stages`` splits the budget); ``model_a`` (sequential only): model A from a
    finished run, no PS stage (the PS options are then not used and refused)."""

    mode: Literal["joint", "sequential"] = "joint"
    model_a: ModelA | None = None

    @model_validator(mode="after")
    def _model_a_is_sequential(self) -> JointSpaceOptions:
        if self.model_a is None:
            return self
        if self.mode != "sequential":
            raise ValueError("model_a (model A from a finished run) needs mode: sequential")
        ps_keys = [k for k in ParameterSpaceOptions.model_fields if k in self.model_fields_set]
        if ps_keys:
            raise ValueError(
                f"{ps_keys[0]} is an option of the PS stage, but model A comes from {self.model_a.run_dir} "
                f"(model_a): drop it"
            )
        return self


class JointSpace:
    """Concatenated genome of a :class:`ParameterSpace` and a :class:`DataFlowSpace`."""

    Options = JointSpaceOptions

    @classmethod
    def build(cls, options: JointSpaceOptions, inputs: SpaceInputs) -> JointSpace:
        """The joint space of a config ``space`` section: model A is a PS merge of every expert
        (in place of ``embed_from``); the other experts keep their own layers."""
        if options.mode != "joint":
            raise ConfigError(
                f"{inputs.source}: space.mode {options.mode!r} runs in stages (evomerge.runs.stages.build_run_plan); "
                f"a single space is the joint form only"
            )
        ps = ParameterSpace.build(ParameterSpaceOptions.model_validate(cls.ps_options(options)), inputs)
        return cls(ps, dfs_over_merge(options, inputs, ps.to_recipe(ps.x0)), ps_source=MERGED)

    @staticmethod
    def ps_options(options: JointSpaceOptions) -> dict[str, Any]:
        """The PS half's options (``ParameterSpaceOptions`` fields) as plain data: the ``space``
        section of a sequential run's PS stage, with ``kind: parameter``."""
        return options.model_dump(mode="json", include=set(ParameterSpaceOptions.model_fields))

    def __init__(self, ps: ParameterSpace, dfs: DataFlowSpace, *, ps_source: str | None = None):
        self.ps = ps
        self.dfs = dfs
        self.ps_source = ps_source or dfs.embed_from
        if self.ps_source not in dfs.source_layers:
            raise ConfigError(
                f"PS+DFS: ps_source {self.ps_source!r} is not a source of the data-flow space {list(dfs.source_layers)}"
            )
        if dfs.source_layers[self.ps_source] != ps.num_layers:
            raise ConfigError(
                f"PS+DFS: source {self.ps_source!r} has {dfs.source_layers[self.ps_source]} layers in the data-flow space but the "
                f"parameter space merges {ps.num_layers}"
            )
        self.dim = ps.dim + dfs.dim
        self.lower = np.concatenate([ps.lower, dfs.lower])
        self.upper = np.concatenate([ps.upper, dfs.upper])
        self.x0 = np.concatenate([ps.x0, dfs.x0])
        self.sigma0 = 1.0 / 6.0
        self.names = [f"ps/{n}" for n in ps.names] + [f"dfs/{n}" for n in dfs.names]
        self.group_boundaries = sorted(set(ps.group_boundaries) | {ps.dim + b for b in dfs.group_boundaries})

    def split(self, genome: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(genome, dtype=float).reshape(-1)
        if x.shape[0] != self.dim:
            raise ConfigError(f"PS+DFS space: genome has {x.shape[0]} genes, expected {self.dim}")
        return x[: self.ps.dim], x[self.ps.dim :]

    def to_recipe(self, genome: np.ndarray) -> DataFlowRecipe:
        x_ps, x_dfs = self.split(genome)
        r = self.dfs.to_recipe(x_dfs)
        sources = dict(r.sources)
        sources[self.ps_source] = _as_dict(self.ps.to_recipe(x_ps))
        return DataFlowRecipe.model_validate({**r.model_dump(mode="json"), "sources": sources})

    def from_recipe(self, recipe: DataFlowRecipe | dict) -> np.ndarray:
        if isinstance(recipe, dict):
            recipe = DataFlowRecipe.validate_dict(recipe)
        nested = recipe.sources.get(self.ps_source)
        if not isinstance(nested, dict):
            raise ConfigError(f"PS+DFS: source {self.ps_source!r} of the recipe is not a nested parameter-space recipe")
        x_ps = self.ps.from_recipe(nested)
        plain = recipe.model_copy(
            update={"sources": {**recipe.sources, self.ps_source: self.dfs.sources[self.ps_source]}}
        )
        return np.concatenate([x_ps, self.dfs.from_recipe(plain)])

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "ps+dfs",
            "dim": self.dim,
            "ps_source": self.ps_source,
            "ps": self.ps.describe(),
            "dfs": self.dfs.describe(),
        }


PSDFSSpace = JointSpace
