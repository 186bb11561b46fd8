"""Every merge-method parameter and recipe option, defined once.

A **parameter** is a value a recipe sets per model (``models[i].parameters``) or globally
(``parameters``) — its scope is the parameter's own, whatever method reads it. Each has:

- ``default``: the value when a recipe gives none (``None``: required). A method may declare another
  default where that is what defines it (:class:`~evomerge.merge.methods.registry.MethodSpec`
  ``defaults``: TIES normalises, DARE rescales);
- ``bounds``: the values a recipe may hold (outside them the recipe is refused), ``None``: any
  finite number (``bool`` parameters: true or false);
- ``search``: the range a parameter space searches when its config gives none (``None``: the
  config must give one; ``bool`` parameters are never searched).

Every parameter here is mergekit's parameter of the same name (a recipe exports to mergekit as is).

An **option** (``options:`` in a recipe) chooses between mergekit's behaviour and a paper's: its
``values``, the first being the default; ``exports``: the values a mergekit config can express (by
default only the default), and ``mergekit``: why it cannot express the others (``None``: every value
exports). ``gradients_only``: the option changes nothing unless the recipe holds a gradient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Scope = Literal["model", "global"]


@dataclass(frozen=True)
class Parameter:
    name: str
    scope: Scope
    default: float | bool | None  # None = required
    bounds: tuple[float, float] | None = None
    search: tuple[float, float] | None = None
    doc: str = ""

    @property
    def is_bool(self) -> bool:
        return isinstance(self.default, bool)


@dataclass(frozen=True)
class Option:
    name: str
    values: tuple[str, ...]  # the first is the default
    mergekit: str | None = None  # why mergekit cannot express the values outside `exports`; None: it can
    doc: str = ""
    exports: tuple[str, ...] | None = None  # values mergekit expresses; None: the default only
    gradients_only: bool = False  # inert in a recipe without gradients

    @property
    def default(self) -> str:
        return self.values[0]

    def exports_value(self, value: str) -> bool:
        """Whether a mergekit config can express ``value`` of this option."""
        return self.mergekit is None or value in (self.exports or (self.default,))


PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter("weight", "model", None, search=(0.0, 1.0), doc="the model's weight in the mix"),
        Parameter(
            "density", "model", 1.0, bounds=(0.0, 1.0), search=(0.1, 1.0), doc="fraction of task-vector entries kept"
        ),
        Parameter(
            "gamma",
            "model",
            0.01,
            bounds=(0.0, 1.0),
            search=(0.0, 0.1),
            doc="Breadcrumbs: fraction of outliers dropped",
        ),
        Parameter(
            "epsilon", "model", 0.15, bounds=(0.0, 1.0), search=(0.0, 0.2), doc="DELLA: half-width of the keep ramp"
        ),
        Parameter("t", "global", None, search=(0.0, 1.0), doc="SLERP: 0 = base, 1 = the other model"),
        Parameter("lambda", "global", 1.0, search=(0.5, 1.5), doc="scale of the mixed task vector"),
        Parameter("normalize", "global", False, doc="divide by the sum of the weights"),
        Parameter("rescale", "global", False, doc="rescale the survivors of a sparsifier"),
        Parameter("int8_mask", "global", False, doc="mergekit's mask storage; no effect here"),
        Parameter("filter_wise", "global", False, doc="Model Stock: one interpolation factor per row"),
    )
}

OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            "layerless_gradient",
            ("error", "start", "ends"),
            mergekit="mergekit >= 0.1.2 evaluates a gradient at x = 0 on every tensor without a layer index "
            "(options.layerless_gradient: start)",
            exports=("error", "start"),
            gradients_only=True,
            doc="a gradient reaching a tensor without a layer index (embeddings, final norm, head): refused; "
            "start: x = 0 for all of them (mergekit >= 0.1.2); ends: x = 0 for embeddings, x = 1 for the "
            "others (mergekit <= 0.1.1)",
        ),
        Option(
            "ties_scope",
            ("tensor", "model"),
            mergekit="mergekit trims each tensor separately, not the whole model",
            doc="TIES trim per tensor (mergekit) or over the whole model (the paper)",
        ),
        Option(
            "rescale_mode",
            ("l1", "inverse_p"),
            mergekit="mergekit rescales survivors to keep each tensor's L1 norm, not by 1/p",
            doc="DARE/DELLA rescale: keep the L1 norm (mergekit) or divide by the keep probability (papers)",
        ),
        Option(
            "consensus",
            ("sum", "count"),
            mergekit="mergekit's TIES-family methods elect signs by weighted sum only",
            doc="TIES sign election by weighted sum (mergekit) or by sign count",
        ),
    )
}

#: Options every method takes.
COMMON_OPTIONS: tuple[str, ...] = ("layerless_gradient",)


def search_range(name: str) -> tuple[float, float] | None:
    """The default search range of parameter ``name`` (None: unknown or not searchable)."""
    p = PARAMETERS.get(name)
    return p.search if p is not None else None


def value_bounds(name: str) -> tuple[float, float] | None:
    """The values a recipe may give parameter ``name`` (None: any number)."""
    p = PARAMETERS.get(name)
    return p.bounds if p is not None else None


# Pre-layer tensors (embeddings): x = 0 under layerless_gradient: ends; the other layer-less ones x = 1.
_PRE_RE = re.compile(r"embed|wte|wpe|word_embeddings|position_embeddings|token_type_embeddings")


def pre_layer(tensor_name: str) -> bool:
    """Whether a tensor without a layer index comes before the layers (token / position
    embeddings), rather than after them (final norm, head)."""
    return _PRE_RE.search(tensor_name) is not None


def layerless_position(tensor_name: str, rule: str) -> float | None:
    """Where a gradient is evaluated on ``tensor_name``, a tensor without a layer index, under
    ``options.layerless_gradient = rule`` (None: ``error``, the gradient is refused there).

    mergekit 0.1.5 (``MergePlanner.plan_module``) resolves the pre-layer weights (embeddings) and
    the post-layer weights (final norm, head) with one ``ConfigReader`` built at ``t = 0``: our
    ``start``. Up to 0.1.1 its post-layer weights took ``t = 1``: our ``ends``."""
    if rule == "start":
        return 0.0
    if rule == "ends":
        return 0.0 if pre_layer(tensor_name) else 1.0
    return None
