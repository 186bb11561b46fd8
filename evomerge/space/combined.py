"""PS+DFS: a layer path over a parameter-space merge.

* Sequential (the paper's order): run a PS search, then a DFS search whose model A is the PS
  winner. :func:`sequential_space` builds that DFS space; its recipes carry the PS recipe nested
  as source A, so they stay self-contained.
* Joint (:class:`JointSpace`, alias ``PSDFSSpace``): one genome ``[x_PS | x_DFS]``; the PS half
  becomes the nested recipe of the DFS source ``ps_source``. Both halves start at their own
  ``x0`` and share ``sigma0 = 1/6``; crossover points are the union of both halves' boundaries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

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


class JointSpaceOptions(ParameterSpaceOptions, DataFlowSpaceOptions):
    """The ``space`` options of ``kind: psdfs``: the PS half's and the DFS half's. ``embed_from``
    names the expert whose place (and frame) the PS merge takes."""


class JointSpace:
    """Concatenated genome of a :class:`ParameterSpace` and a :class:`DataFlowSpace`."""

    Options = JointSpaceOptions

    @classmethod
    def build(cls, options: JointSpaceOptions, inputs: SpaceInputs) -> JointSpace:
        """The joint space of a config ``space`` section: model A is a PS merge of every expert
        (in place of ``embed_from``); the other experts keep their own layers."""
        ps_options = ParameterSpaceOptions.model_validate(
            options.model_dump(include=set(ParameterSpaceOptions.model_fields))
        )
        ps = ParameterSpace.build(ps_options, inputs)
        embed = frame_expert(options, inputs)
        experts = inputs.experts
        names = ["merged"] + [n for n in experts if n != embed]
        sources = {
            "merged": ps.to_recipe(ps.x0).model_dump(mode="json", exclude_none=True),
            **{n: experts[n] for n in names[1:]},
        }
        settings = options.model_dump(include=set(DataFlowSpaceOptions.model_fields))
        settings["embed_from"] = "merged"
        dfs = DataFlowSpace({n: inputs.num_layers for n in names}, sources=sources, dtype=inputs.dtype, **settings)
        return cls(ps, dfs, ps_source="merged")

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
        self.categories = [0] * ps.dim + list(dfs.categories)  # the DFS half's path genes are categorical
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
