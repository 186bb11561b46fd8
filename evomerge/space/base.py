"""The search-space protocol: genome <-> recipe.

Genomes live in a normalised box: ``lower <= x <= upper`` elementwise (usually [0, 1]); the space
maps them to recipe values (weights, densities, t, layer indicators, scales). ``x0`` and
``sigma0`` are the starting point and step the drivers use (the paper's 0.5 and 1/6).
``group_boundaries`` are indices where a genome may be cut for crossover (M2N2 splits at
layer-group boundaries); always includes 0 and ``dim``. A space may also offer
``seed_genomes() -> {name: genome}`` (the sources alone and the untuned merges: the parameter
space's, :mod:`evomerge.space.seeds`), which M2N2's ``initial: seeded`` starts from.

**Categorical genes.** A space may declare some genes discrete with an attribute ``categories``:
one int per gene, 0 for a continuous gene, ``K >= 2`` for a gene that picks one of ``K``
categories. Such a gene still lives in [0, 1]: category ``k`` is the interval ``(k/K, (k+1)/K]``
(:func:`category_of`; 0 and below fall in category 0), so a continuous driver can search it as
it is, and a mixed driver (``catcma``) samples the category and writes its centre
(:func:`category_value`). ``K = 2`` is the data-flow indicator: on iff ``x > 0.5``.
:func:`gene_categories` reads the attribute (all zeros when a space has none).
"""

from __future__ import annotations

import math
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


def gene_categories(space: Any) -> np.ndarray:
    """The space's ``categories`` (0 = continuous gene, K = a gene with K categories) as an int
    array of length ``space.dim``; all zeros when the space declares none."""
    cats = getattr(space, "categories", None)
    if cats is None:
        return np.zeros(int(space.dim), dtype=int)
    return np.asarray(cats, dtype=int).reshape(int(space.dim))


def category_of(x: float, k: int) -> int:
    """The category of gene value ``x`` for a gene with ``k`` categories: ``ceil(x·k) − 1`` clipped
    to ``[0, k − 1]``; for ``k = 2``, 1 iff ``x > 0.5``."""
    return min(max(math.ceil(float(x) * k) - 1, 0), k - 1)


def category_value(c: int, k: int) -> float:
    """The gene value of category ``c`` of ``k``: the centre of its interval, ``(c + ½)/k``."""
    return (c + 0.5) / k


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
