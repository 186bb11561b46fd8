"""Parameter space (PS): per-layer-group merge parameters, optionally the merge method itself.

Groups. The ``num_layers`` decoder layers are cut into contiguous *layer groups* (``layer_groups``
= k gives k near-equal groups, 1 … num_layers; or explicit boundaries ``[0, b_1, …, num_layers]``).
Tensors without a layer index get groups of their own with ``non_layer="separate"`` (default):
``embed`` (token / position embeddings) before the layers and ``head`` (final norm and LM head)
after them, as in the toy world's 6 groups (embeddings, 4 layers, norm + head). With
``non_layer="fold"`` the embeddings take the first layer group's values and the head the last's.

Genes. Group-major: for each group, for each searched parameter, one gene per expert (parameters
the method reads per model, e.g. weight, density) or one gene (global ones, e.g. SLERP's ``t``);
then, with ``method_choices``, one gene per method (argmax picks; ties go to the first). Every
gene lives in [0, 1] and maps linearly to its range: ``v = lo + x·(hi − lo)``. ``x0 = 0.5``,
``sigma0 = 1/6`` (Akiba et al.). ``group_boundaries`` are the group edges (M2N2 cuts there). :meth:`ParameterSpace.seed_genomes`:
the sources alone and the untuned merges as genomes (:mod:`evomerge.space.seeds`).

Recipes. Each searched parameter becomes, per expert (or globally), the most compact value the
recipe grammar has for it: a scalar when one value covers all tensors; otherwise a list of
``{filter, value}`` entries — the embed filters, the head filters, and a final unfiltered entry
whose value is a scalar (one layer group) or a gradient with one anchor per layer (so layer ℓ gets
exactly its group's value: gradients are evaluated at ℓ / (num_layers − 1)). Fixed parameters go
to the recipe's global ``parameters``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from evomerge.errors import ConfigError
from evomerge.space.base import SpaceInputs
from evomerge.space.layout import EMBED_FILTERS, HEAD_FILTERS, architecture_filters, layer_boundaries, short_names
from evomerge.space.seeds import seed_recipes
from evomerge.validation import parse_options


def _ordered(r: tuple[float, float]) -> tuple[float, float]:
    if not r[0] <= r[1]:
        raise ValueError(f"expected [lo, hi] with lo <= hi, got [{r[0]:g}, {r[1]:g}]")
    return r


Range = Annotated[tuple[float, float], AfterValidator(_ordered)]


def _merge_method(name: str) -> str:
    from evomerge.merge.methods import get_method  # the registry imports torch: only when validating

    try:
        get_method(name)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return name


MethodName = Annotated[str, AfterValidator(_merge_method)]


class ParameterSpaceOptions(BaseModel):
    """The ``space`` options of ``kind: parameter`` (and the PS half of ``psdfs``)."""

    model_config = ConfigDict(extra="forbid")

    method: MethodName = "task_arithmetic"
    method_choices: list[MethodName] | None = None  # the method itself searched as a categorical gene
    layer_groups: int | list[int] = 1  # k near-equal groups, or explicit boundaries [0, …, L]
    params: list[str] | None = None  # which method parameters are genes (default weight, density)
    ranges: dict[str, Range] = Field(default_factory=dict)
    fixed: dict[str, Any] = Field(default_factory=dict)  # global method parameters held constant
    non_layer: Literal["separate", "fold"] = "separate"
    options: dict[str, Any] = Field(default_factory=dict)  # recipe options (e.g. ties_scope)


class ParameterSpace:
    """Genome ↔ :class:`evomerge.merge.recipes.parameter.Recipe` over layer groups × experts × parameters.

    ``settings`` are :class:`ParameterSpaceOptions` fields but ``method`` (``layer_groups=4``,
    ``ranges={"weight": (0, 1.5)}``, ...), validated as in the run config.
    """

    Options = ParameterSpaceOptions

    def __init__(
        self,
        method: str,
        base_model: str | None,
        models: Sequence[str],
        num_layers: int,
        *,
        embed_filters: Sequence[str] = EMBED_FILTERS,
        head_filters: Sequence[str] = HEAD_FILTERS,
        seed: int = 0,
        dtype: str = "float32",
        **settings: Any,
    ):
        from evomerge.merge.methods import get_method
        from evomerge.merge.parameters import search_range, value_bounds

        given = {k: v for k, v in settings.items() if v is not None}  # None: the default
        opts = parse_options(self.Options, {"method": method, **given}, prefix="space.")
        layer_groups, params, ranges, fixed = opts.layer_groups, opts.params, opts.ranges, opts.fixed
        method_choices, non_layer, options = opts.method_choices, opts.non_layer, opts.options
        self.settings = opts
        if int(num_layers) < 1:
            raise ConfigError(f"parameter space: num_layers must be >= 1, got {num_layers}")
        self.method = method
        self.method_choices = list(method_choices) if method_choices else None
        if self.method_choices and method not in self.method_choices:
            self.method_choices.insert(0, method)
        self.methods = self.method_choices or [method]
        self.specs = {m: get_method(m) for m in self.methods}  # ConfigError for an unknown name
        self.base_model = None if base_model is None else str(base_model)
        self.models = [str(m) for m in models]
        self.experts = [m for m in self.models if m != self.base_model]
        if not self.experts:
            raise ConfigError("parameter space: models must list at least one model other than base_model")
        self.num_layers = int(num_layers)
        self.layer_bounds = layer_boundaries(self.num_layers, layer_groups)
        self.non_layer = non_layer
        self.embed_filters = tuple(embed_filters)
        self.head_filters = tuple(head_filters)
        self.seed = int(seed)
        self.dtype = dtype
        self.options = dict(options or {})
        self.fixed = dict(fixed or {})

        def accepts(spec, p):
            # A parameter mergekit accepts but the method ignores (task_arithmetic's density) would
            # only add dead genes that dilute the search.
            return (p in spec.model_params or p in spec.global_params) and p not in spec.inert_params

        if params is None:  # the defaults, kept where some method reads them
            params = [p for p in ("weight", "density") if any(accepts(s, p) for s in self.specs.values())]
            params = params or [next(iter(self.specs[method].model_params), None) or "t"]
        self.params = list(params)
        self.scope: dict[str, str] = {}
        for p in self.params:
            scopes = {("model" if p in s.model_params else "global") for s in self.specs.values() if accepts(s, p)}
            if not scopes:
                raise ConfigError(f"parameter space: params: {p!r} is not a parameter of method(s) {self.methods}")
            if len(scopes) > 1:
                raise ConfigError(
                    f"parameter space: params: {p!r} is per-model in some of {self.methods} and global in others"
                )
            self.scope[p] = scopes.pop()
            if p in self.fixed:
                raise ConfigError(f"parameter space: {p!r} is both searched (params) and fixed")
        for p in self.fixed:
            if not any(accepts(s, p) for s in self.specs.values()):
                raise ConfigError(f"parameter space: fixed: {p!r} is not a parameter of method(s) {self.methods}")
        self.ranges: dict[str, tuple[float, float]] = {}
        for p in self.params:
            r = (ranges or {}).get(p, search_range(p))
            if r is None:
                raise ConfigError(
                    f"parameter space: ranges: no range for parameter {p!r}; give ranges={{{p!r}: (lo, hi)}}"
                )
            lo, hi = float(r[0]), float(r[1])
            # Checked here, not at the first genome that lands outside (mid-run, after the run
            # directory exists): every value of the range must be one the recipe accepts.
            bounds = value_bounds(p)
            if bounds is not None and not bounds[0] <= lo <= hi <= bounds[1]:
                vlo, vhi = bounds
                raise ConfigError(
                    f"parameter space: ranges[{p!r}] = [{lo:g}, {hi:g}] goes outside the valid range of {p}, [{vlo:g}, {vhi:g}]"
                )
            self.ranges[p] = (lo, hi)

        n_groups = len(self.layer_bounds) - 1
        self.groups: list[str] = [
            f"layers.{a}" if b - a == 1 else f"layers.{a}-{b - 1}"
            for a, b in zip(self.layer_bounds, self.layer_bounds[1:])
        ]
        if non_layer == "separate":
            self.groups = ["embed", *self.groups, "head"]
        self._layer_group0 = 1 if non_layer == "separate" else 0
        self.n_layer_groups = n_groups

        self.expert_names = short_names(self.experts)  # the experts' names in gene names and seeds
        short = dict(zip(self.experts, self.expert_names))
        self._genes: list[tuple[int, str, str | None]] = []  # (group, param, expert or None)
        self.names: list[str] = []
        bounds = [0]
        for g, gname in enumerate(self.groups):
            for p in self.params:
                for e in self.experts if self.scope[p] == "model" else [None]:
                    self._genes.append((g, p, e))
                    self.names.append(f"{gname}/{short[e]}/{p}" if e is not None else f"{gname}/{p}")
            bounds.append(len(self._genes))
        self.n_param_genes = len(self._genes)
        if self.method_choices:
            self.names += [f"method/{m}" for m in self.method_choices]
        self.dim = len(self.names)
        if bounds[-1] != self.dim:
            bounds.append(self.dim)
        self.group_boundaries = sorted(set(bounds))
        self.lower = np.zeros(self.dim)
        self.upper = np.ones(self.dim)
        self.x0 = np.full(self.dim, 0.5)
        self.sigma0 = 1.0 / 6.0
        # Fail at construction, not mid-search, when a method choice cannot form a valid recipe.
        for k, m in enumerate(self.methods):
            x = self.x0.copy()
            if self.method_choices:
                x[self.n_param_genes + k] = 1.0
            try:
                self.to_recipe(x)
            except ConfigError as exc:
                raise ConfigError(
                    f"parameter space: method {m!r} cannot be used with these models/params: {exc}"
                ) from None

    @classmethod
    def build(cls, options: ParameterSpaceOptions, inputs: SpaceInputs) -> ParameterSpace:
        """The space of a config ``space`` section: every expert merged into ``base``."""
        settings = options.model_dump(include=set(ParameterSpaceOptions.model_fields) - {"method"})
        if inputs.tensor_names is not None:
            settings["embed_filters"], settings["head_filters"] = architecture_filters(inputs.tensor_names)
        return cls(
            options.method,
            inputs.base,
            list(inputs.experts.values()),
            inputs.num_layers,
            seed=inputs.seed,
            dtype=inputs.dtype,
            **settings,
        )

    # ---- value maps -------------------------------------------------------------------------
    def _to_value(self, p: str, x: float) -> float:
        lo, hi = self.ranges[p]
        return float(lo + x * (hi - lo))

    def _to_gene(self, p: str, v: float) -> float:
        lo, hi = self.ranges[p]
        if hi == lo:
            return 0.5
        return float(np.clip((v - lo) / (hi - lo), 0.0, 1.0))

    def chosen_method(self, genome: np.ndarray) -> str:
        if not self.method_choices:
            return self.method
        x = np.asarray(genome, dtype=float)
        return self.method_choices[int(np.argmax(x[self.n_param_genes :]))]

    def _group_values(self, x: np.ndarray) -> dict[tuple[str, str | None], list[float]]:
        """(param, expert) → one value per group."""
        out: dict[tuple[str, str | None], list[float]] = {}
        for i, (g, p, e) in enumerate(self._genes):
            out.setdefault((p, e), [0.0] * len(self.groups))[g] = self._to_value(p, x[i])
        return out

    def _value_spec(self, per_group: list[float]):
        """The recipe value giving each group its value (see the module docstring)."""
        lg = self._layer_group0
        layer_vals = per_group[lg : lg + self.n_layer_groups]
        embed = per_group[0] if self.non_layer == "separate" else layer_vals[0]
        head = per_group[-1] if self.non_layer == "separate" else layer_vals[-1]
        if len(set(layer_vals)) == 1:
            default: float | list[float] = layer_vals[0]
        else:
            default = [
                layer_vals[g]
                for g in range(self.n_layer_groups)
                for _ in range(self.layer_bounds[g + 1] - self.layer_bounds[g])
            ]
        if not isinstance(default, list) and embed == default and head == default:
            return default
        entries = [{"filter": f, "value": embed} for f in self.embed_filters]
        entries += [{"filter": f, "value": head} for f in self.head_filters]
        entries.append({"value": default})
        return entries

    # ---- protocol ---------------------------------------------------------------------------
    def to_recipe(self, genome: np.ndarray):
        """The recipe for ``genome`` (genes clipped into the box first)."""
        from evomerge.merge.recipes.parameter import Recipe

        x = np.asarray(genome, dtype=float).reshape(-1)
        if x.shape[0] != self.dim:
            raise ConfigError(f"parameter space: genome has {x.shape[0]} genes, expected {self.dim}")
        x = np.clip(x, self.lower, self.upper)
        method = self.chosen_method(x)
        spec = self.specs[method]
        values = self._group_values(x)
        models = []
        for m in self.models:
            entry: dict[str, Any] = {"model": m}
            if m != self.base_model:
                mp = {
                    p: self._value_spec(values[(p, m)])
                    for p in self.params
                    if self.scope[p] == "model" and p in spec.model_params
                }
                if mp:
                    entry["parameters"] = mp
            models.append(entry)
        glob = {
            p: self._value_spec(values[(p, None)])
            for p in self.params
            if self.scope[p] == "global" and p in spec.global_params
        }
        glob.update({k: v for k, v in self.fixed.items() if k in spec.model_params or k in spec.global_params})
        data: dict[str, Any] = {"merge_method": method, "models": models, "dtype": self.dtype, "seed": self.seed}
        if self.base_model is not None:
            data["base_model"] = self.base_model
        if glob:
            data["parameters"] = glob
        if self.options:
            data["options"] = dict(self.options)
        return Recipe.model_validate(data)

    def _read(self, value, group: int) -> float:
        """Value of a recipe parameter for a representative tensor of ``group``."""
        if isinstance(value, dict) and "value" in value:
            value = [value]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        lg = self._layer_group0
        is_embed = self.non_layer == "separate" and group == 0
        is_head = self.non_layer == "separate" and group == len(self.groups) - 1
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            if is_embed or is_head:
                wanted = set(self.embed_filters if is_embed else self.head_filters)
                for e in value:
                    if e.get("filter") in wanted:
                        return self._read(e["value"], group)
            for e in value:
                if e.get("filter") is None:
                    return self._read(e["value"], group)
            raise ConfigError(f"parameter space: cannot read {value!r}: no entry without a filter")
        if isinstance(value, list) and value:
            if is_embed or is_head:
                raise ConfigError("parameter space: a gradient cannot apply to embeddings / head (no layer index)")
            a = self.layer_bounds[group - lg]
            n = len(value)
            # gradient at the group's first layer: position a / (L - 1) over n evenly spaced anchors
            pos = 0.0 if self.num_layers == 1 else a / (self.num_layers - 1) * (n - 1)
            if abs(pos - round(pos)) < 1e-9:  # on an anchor: read it exactly
                pos = float(round(pos))
            i = min(int(np.floor(pos)), n - 2) if n > 1 else 0
            if n == 1:
                return float(value[0])
            frac = pos - i
            return float(value[i] * (1 - frac) + value[i + 1] * frac)
        raise ConfigError(f"parameter space: cannot read parameter value {value!r}")

    def from_recipe(self, recipe) -> np.ndarray:
        """The genome of ``recipe`` (exact inverse on the image of :meth:`to_recipe`; a recipe from
        elsewhere is projected: each group reads the value at its first layer, clipped to the
        range). Parameters the recipe's method does not use stay at 0.5; the chosen method's gene
        is 2/3 and the others 1/3 (a margin of two ``sigma0``)."""
        from evomerge.merge.recipes.parameter import Recipe

        if isinstance(recipe, dict):
            recipe = Recipe.model_validate(recipe)
        data = recipe.to_dict() if hasattr(recipe, "to_dict") else recipe.model_dump(mode="json", exclude_none=True)
        method = data["merge_method"]
        if method not in self.methods:
            raise ConfigError(f"parameter space: recipe method {method!r} is not one of the space's {self.methods}")
        by_model = {str(e["model"]): dict(e.get("parameters") or {}) for e in data.get("models", [])}
        missing = [m for m in self.experts if m not in by_model]
        if missing:
            raise ConfigError(f"parameter space: recipe has no entry for model(s) {missing}")
        glob = dict(data.get("parameters") or {})
        x = np.array(self.x0, dtype=float)
        for i, (g, p, e) in enumerate(self._genes):
            src = glob if e is None else by_model[e]
            v = src.get(p, glob.get(p) if e is not None else None)
            if v is None:
                continue
            x[i] = self._to_gene(p, self._read(v, g))
        if self.method_choices:
            x[self.n_param_genes :] = 1 / 3
            x[self.n_param_genes + self.method_choices.index(method)] = 2 / 3
        return x

    def seed_genomes(self) -> dict[str, np.ndarray]:
        """Named genomes of each source alone and of the untuned merges (:mod:`evomerge.space.seeds`),
        a genome equal to an earlier one left out."""
        out: dict[str, np.ndarray] = {}
        for name, recipe in seed_recipes(self).items():
            x = self.from_recipe(recipe)
            if not any(np.array_equal(x, y) for y in out.values()):
                out[name] = x
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "parameter",
            "dim": self.dim,
            "method": self.method,
            "method_choices": self.method_choices,
            "params": list(self.params),
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "groups": list(self.groups),
            "layer_boundaries": list(self.layer_bounds),
            "non_layer": self.non_layer,
            "models": list(self.experts),
            "names": list(self.names),
        }
