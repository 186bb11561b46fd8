"""The search-space protocol: genome <-> recipe.

Genomes live in a normalised box: ``lower <= x <= upper`` elementwise (usually [0, 1]); the space
maps them to recipe values (weights, densities, t, layer indicators, scales). ``x0`` and
``sigma0`` are the starting point and step the drivers use (the paper's 0.5 and 1/6).
``group_boundaries`` are indices where a genome may be cut for crossover (M2N2 splits at
layer-group boundaries); always includes 0 and ``dim``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class SearchSpace(Protocol):
    dim: int
    lower: np.ndarray
    upper: np.ndarray
    x0: np.ndarray
    sigma0: float
    names: list[str]  # one readable name per gene, e.g. "layers.0-3/expert_a/weight"
    group_boundaries: list[int]

    def to_recipe(self, genome: np.ndarray) -> Any:
        """A recipe (a kind of :data:`evomerge.merge.recipes.AnyRecipe`) for the genome."""
        ...

    def from_recipe(self, recipe: Any) -> np.ndarray:
        """The genome that maps to ``recipe`` (inverse of ``to_recipe`` on its image)."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able summary (kind, dim, names) for logs and reports."""
        ...


@dataclass(frozen=True)
class SpaceInputs:
    """What a config ``space`` section is built over (each kind's ``build(options, inputs)``):
    the base and the experts (``{name: path}``, in order) with ``num_layers`` layers each, the
    run's seed and dtype, ``source``, the config's name for errors, and ``tensor_names``, the
    models' tensors (from their headers; None: not known, recipes then carry the filters of every
    supported family)."""

    base: str | None
    experts: Mapping[str, str]
    num_layers: int
    seed: int
    dtype: str
    source: str = "config"
    tensor_names: tuple[str, ...] | None = None
