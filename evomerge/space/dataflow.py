"""Data-flow space (DFS): which layers run, in which order, with which input scales.

Following Akiba et al. (2024), the ``M`` decoder layers of the source models are laid out in
order (all of A's, then all of B's, …) and the layout is repeated ``r`` times, giving ``T = M·r``
slots. Slot ``t`` holds layer ``g(t) = t mod M`` of the layout. A genome holds

* the path genes of ``space.encoding`` (:mod:`evomerge.space.path_encoding`): with
  ``"indicator"`` (the paper's) an indicator per slot: the recipe-space indicator is
  ``I_t = 2·x_t − 1 ∈ [−1, 1]`` and slot ``t`` is on the inference path iff ``I_t > 0``, i.e.
  iff ``x_t > 0.5``; the path is the "on" slots in slot order (2^T possible paths). With
  ``"choice"`` one categorical gene per depth and repetition picks {skip, A.d, B.d, …} (``D·r``
  genes). Both are categorical genes (``categories``) in :mod:`evomerge.space.base`'s sense;
* scales: with ``scale_mode="matrix"`` an ``M×M`` matrix ``W`` where ``W[i, j]`` multiplies the
  input (residual stream) of layer ``j`` when layer ``i`` directly precedes it on the path; with
  ``"per_layer"`` one scale per layer ``j`` whatever precedes it (``M`` genes, for small budgets);
  with ``"none"`` no scale genes (all 1). Scales are mapped log-linearly from the normalised gene,
  ``s = lo·(hi/lo)^x``, so that halving and doubling are equally far from 1.

Embeddings, final norm, head and tokenizer come from model A (``embed_from``). With
``fix_ends=True`` (the paper's choice) A's first and last layers are always the path's first and
last steps and the slots choose what runs in between; the first step has no predecessor and gets
scale 1 (for a pre-norm model a scale on the first layer's input is a no-op anyway).

``x0`` turns on exactly the slots of A's layers in the first repetition (A's inner layers when the
ends are fixed) and sets every scale to 1, so ``to_recipe(x0)`` is model A itself (with
``"choice"``: A's layer at each of those depths of the first repetition, skip elsewhere).
Two-category genes start at ``0.5 ± indicator_margin`` (on / off), so that a step of
``sigma0 = 1/6`` flips a slot with probability ≈ 7 % at the default margin 0.25; genes with more
categories start at their category's centre.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from evomerge.errors import ConfigError
from evomerge.merge.recipes.dataflow import DataFlowRecipe
from evomerge.space.base import SpaceInputs
from evomerge.space.path_encoding import build_encoding
from evomerge.validation import parse_options

ScaleMode = Literal["matrix", "per_layer", "none"]
Encoding = Literal["indicator", "choice"]


def _scale_range(r: tuple[float, float]) -> tuple[float, float]:
    lo, hi = r
    if not (0 < lo <= 1 <= hi and lo < hi):
        raise ValueError(f"expected [lo, hi] with 0 < lo <= 1 <= hi and lo < hi, got [{lo:g}, {hi:g}]")
    return r


class DataFlowSpaceOptions(BaseModel):
    """The ``space`` options of ``kind: dataflow`` (and the DFS half of ``psdfs``)."""

    model_config = ConfigDict(extra="forbid")

    repeats: int = Field(default=2, ge=1)
    embed_from: str | None = None  # the source whose embeddings / head / end layers frame the path
    fix_ends: bool = True
    scale_mode: ScaleMode = "matrix"
    scale_range: Annotated[tuple[float, float], AfterValidator(_scale_range)] = (0.5, 2.0)
    indicator_margin: float = Field(default=0.25, gt=0, le=0.5)
    encoding: Encoding = "indicator"  # the path genes: one per slot (the paper's) or one per depth


def frame_expert(options: DataFlowSpaceOptions, inputs: SpaceInputs) -> str:
    """``options.embed_from`` (default: the first expert), which must name an expert."""
    embed = options.embed_from or next(iter(inputs.experts))
    if embed not in inputs.experts:
        known = ", ".join(inputs.experts)
        raise ConfigError(f"{inputs.source}: space.embed_from: {embed!r} is not an expert (known: {known})")
    return embed


class DataFlowSpace:
    """Genome ↔ :class:`DataFlowRecipe` (see the module docstring for the layout and mappings).

    Genes, in order: the ``T`` path genes of the encoding (``indicator``: ``T = M·r`` slot
    indicators, repetition-major, layout order inside; ``choice``: ``T = D·r``), then the scale genes (``W`` row-major: gene ``T + i·M + j`` is ``W[i, j]``; or one per layer).
    ``settings`` are :class:`DataFlowSpaceOptions` fields (``repeats=3``, ``scale_mode="none"``,
    ...), validated as in the run config.
    """

    Options = DataFlowSpaceOptions

    def __init__(
        self,
        source_layers: Mapping[str, int],
        *,
        sources: Mapping[str, str | dict] | None = None,
        dtype: str = "float32",
        **settings: Any,
    ):
        opts = parse_options(self.Options, {k: v for k, v in settings.items() if v is not None}, prefix="space.")
        self.settings = opts
        if not source_layers:
            raise ConfigError("data-flow space: source_layers must name at least one model")
        for name, n in source_layers.items():
            if int(n) < 1:
                raise ConfigError(f"data-flow space: source {name!r} has {n} layers; expected >= 1")
        embed_from, fix_ends, repeats, scale_mode = opts.embed_from, opts.fix_ends, opts.repeats, opts.scale_mode
        lo, hi = opts.scale_range
        self.source_layers = {str(k): int(v) for k, v in source_layers.items()}
        self.embed_from = embed_from if embed_from is not None else next(iter(self.source_layers))
        if self.embed_from not in self.source_layers:
            raise ConfigError(
                f"data-flow space: embed_from {self.embed_from!r} is not a source; expected one of {list(self.source_layers)}"
            )
        self.fix_ends = bool(fix_ends)
        n_a = self.source_layers[self.embed_from]
        if self.fix_ends and n_a < 2:
            raise ConfigError(
                f"data-flow space: fix_ends needs model {self.embed_from!r} to have >= 2 layers, got {n_a}"
            )
        self.repeats = int(repeats)
        self.scale_range = (lo, hi)
        self.scale_mode = scale_mode
        self.indicator_margin = opts.indicator_margin
        self.dtype = dtype
        self.sources = dict(sources) if sources is not None else {k: k for k in self.source_layers}
        if list(self.sources) != list(self.source_layers):
            raise ConfigError(
                f"data-flow space: sources {list(self.sources)} must name the same models, in the same order, as source_layers {list(self.source_layers)}"
            )

        self.layout: list[tuple[str, int]] = [(m, l) for m, n in self.source_layers.items() for l in range(n)]
        self._index = {ml: g for g, ml in enumerate(self.layout)}
        self.M = len(self.layout)
        self.encoding = build_encoding(
            opts.encoding, self.layout, self.source_layers, self.repeats, opts.indicator_margin
        )
        self.T = self.encoding.n
        self.n_scale = {"matrix": self.M * self.M, "per_layer": self.M, "none": 0}[scale_mode]
        self.dim = self.T + self.n_scale
        self.lower = np.zeros(self.dim)
        self.upper = np.ones(self.dim)
        self.sigma0 = 1.0 / 6.0
        self.categories = list(self.encoding.categories) + [0] * self.n_scale
        self._first = self._index[(self.embed_from, 0)]
        self._last = self._index[(self.embed_from, n_a - 1)]

        inner = range(1, n_a - 1) if self.fix_ends else range(n_a)
        x0 = np.empty(self.dim)
        x0[: self.T] = self.encoding.encode([self._index[(self.embed_from, l)] for l in inner])
        x0[self.T :] = self.scale_to_gene(1.0)
        self.x0 = x0

        self.names = list(self.encoding.names)
        if scale_mode == "matrix":
            self.names += [f"W/{mi}.{li}->{mj}.{lj}" for (mi, li) in self.layout for (mj, lj) in self.layout]
        elif scale_mode == "per_layer":
            self.names += [f"scale/{m}.{l}" for (m, l) in self.layout]
        bounds = set(range(0, self.T + 1, self.encoding.period))
        if scale_mode == "matrix":
            bounds |= {self.T + i * self.M for i in range(self.M + 1)}
        bounds.add(self.dim)
        self.group_boundaries = sorted(bounds)

    @classmethod
    def build(cls, options: DataFlowSpaceOptions, inputs: SpaceInputs) -> DataFlowSpace:
        """The space of a config ``space`` section: a path through the experts' layers, framed by
        ``embed_from`` (default: the first expert)."""
        settings = options.model_dump(include=set(DataFlowSpaceOptions.model_fields))
        settings["embed_from"] = frame_expert(options, inputs)
        layers = {name: inputs.num_layers for name in inputs.experts}
        return cls(layers, sources=dict(inputs.experts), dtype=inputs.dtype, **settings)

    # ---- scalar maps ------------------------------------------------------------------------
    def scale_to_gene(self, s: float) -> float:
        lo, hi = self.scale_range
        return math.log(s / lo) / math.log(hi / lo)

    def gene_to_scale(self, x: float) -> float:
        lo, hi = self.scale_range
        return lo * (hi / lo) ** float(x)

    def _scale_gene_index(self, i: int, j: int) -> int | None:
        if self.scale_mode == "matrix":
            return self.T + i * self.M + j
        if self.scale_mode == "per_layer":
            return self.T + j
        return None

    # ---- protocol ---------------------------------------------------------------------------
    def on_slots(self, genome: np.ndarray) -> list[int]:
        """The path positions the genome fills (indicator: the "on" slots), in order."""
        return [p for p, _ in self.encoding.chosen(np.asarray(genome, dtype=float))]

    def to_recipe(self, genome: np.ndarray) -> DataFlowRecipe:
        """Genes are clipped into the box first (unbounded samplers may step outside it)."""
        x = np.asarray(genome, dtype=float).reshape(-1)
        if x.shape[0] != self.dim:
            raise ConfigError(f"data-flow space: genome has {x.shape[0]} genes, expected {self.dim}")
        x = np.clip(x, self.lower, self.upper)
        middle = self.encoding.decode(x)
        if self.fix_ends:
            order = [self._first, *middle, self._last]
        elif middle:
            order = middle
        else:  # nothing on and no fixed ends: the gene closest to "on" keeps the path non-empty
            order = [self.encoding.fallback(x)]
        steps = []
        prev = None
        for g in order:
            scale = 1.0
            if prev is not None:
                idx = self._scale_gene_index(prev, g)
                if idx is not None:
                    scale = self.gene_to_scale(x[idx])
            m, l = self.layout[g]
            steps.append({"model": m, "layer": l, "scale": scale})
            prev = g
        return DataFlowRecipe.model_validate(
            {"sources": self.sources, "embed_from": self.embed_from, "path": steps, "dtype": self.dtype}
        )

    def from_recipe(self, recipe: DataFlowRecipe | dict) -> np.ndarray:
        """A genome mapping to ``recipe``: the path is placed on the earliest slots that hold it in
        order; scale genes not used by the path stay at 1. Raises ConfigError when the recipe is
        outside the space's image (other sources, ends not fixed, a path longer than r
        repetitions can hold, one predecessor pair with two scales, a scale out of range)."""
        if isinstance(recipe, dict):
            recipe = DataFlowRecipe.validate_dict(recipe)
        if list(recipe.sources) != list(self.source_layers) or recipe.embed_from != self.embed_from:
            raise ConfigError(
                f"data-flow recipe: sources {list(recipe.sources)} / embed_from {recipe.embed_from!r} do not match the space's "
                f"{list(self.source_layers)} / {self.embed_from!r}"
            )
        recipe.check_layers(self.source_layers)
        order = [self._index[ml] for ml in recipe.layer_sequence()]
        x = np.array(self.x0, dtype=float)
        if self.fix_ends:
            if len(order) < 2 or order[0] != self._first or order[-1] != self._last:
                raise ConfigError(
                    f"data-flow recipe: path must start with {self.embed_from}.0 and end with "
                    f"{self.embed_from}.{self.source_layers[self.embed_from] - 1} (fixed ends)"
                )
            middle = order[1:-1]
        else:
            middle = order
        x[: self.T] = self.encoding.encode(middle, first_step=int(self.fix_ends))
        if recipe.path[0].scale != 1.0:
            raise ConfigError(
                f"data-flow recipe: path[0].scale is {recipe.path[0].scale}; the space fixes the first step's scale at 1"
            )
        lo, hi = self.scale_range
        set_by: dict[int, float] = {}
        for k in range(1, len(order)):
            s = recipe.path[k].scale
            idx = self._scale_gene_index(order[k - 1], order[k])
            if idx is None:
                if s != 1.0:
                    raise ConfigError(
                        f"data-flow recipe: path[{k}].scale is {s}; this space has no scale genes (scale_mode none)"
                    )
                continue
            if not lo * (1 - 1e-12) <= s <= hi * (1 + 1e-12):
                raise ConfigError(
                    f"data-flow recipe: path[{k}].scale {s} is outside the space's scale_range [{lo}, {hi}]"
                )
            if idx in set_by and not math.isclose(set_by[idx], s, rel_tol=1e-9):
                raise ConfigError(
                    f"data-flow recipe: path[{k}].scale {s} conflicts with {set_by[idx]} for the same gene {self.names[idx]!r}"
                )
            set_by[idx] = s
            x[idx] = min(max(self.scale_to_gene(s), 0.0), 1.0)
        return x

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "dataflow",
            "dim": self.dim,
            "sources": dict(self.source_layers),
            "embed_from": self.embed_from,
            "repeats": self.repeats,
            "encoding": self.encoding.kind,
            "slots": self.T,
            "scale_mode": self.scale_mode,
            "scale_range": list(self.scale_range),
            "fix_ends": self.fix_ends,
            "names": list(self.names),
        }
