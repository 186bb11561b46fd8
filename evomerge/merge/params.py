"""Resolve a recipe's parameter settings to plain values for one tensor.

A setting is one of (mergekit's rules):

- a scalar (``0.5``, ``true``);
- a *gradient* ``[v_0, …, v_k]``: evaluated at ``x = layer_index / (num_layers − 1)`` (``x = 1`` for
  a one-layer model) by piecewise-linear interpolation between equally spaced anchors:
  ``s = x·k``, ``i = ⌊s⌋``, ``v = (1 − (s − i))·v_i + (s − i)·v_{min(i+1, k)}``;
- a list of ``{filter, value}`` entries: the first entry whose ``filter`` is a substring of the
  tensor name (or that has no filter: the fallback, always last) gives the value, itself a
  scalar or a gradient; when none matches, the next level decides.

Precedence for a per-model parameter: the model's own setting, then the recipe's global
``parameters``, then the method's default. A gradient reaching a tensor without a layer index
(embeddings, final norm, head) is an error naming the tensor and key, unless
``options.layerless_gradient`` says where it sits (:func:`layerless_position`): ``start``, x = 0
for all of them (mergekit ≥ 0.1.2, the default when importing a mergekit file), or ``ends``,
x = 0 for the embeddings and x = 1 for the others (mergekit ≤ 0.1.1).

What each parameter is (scope, default, bounds, search range): :mod:`evomerge.merge.parameters`;
which ones a method reads: its :class:`~evomerge.merge.methods.registry.MethodSpec`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evomerge.errors import ConfigError
from evomerge.merge.methods import get_method
from evomerge.merge.parameters import OPTIONS, layerless_position

if TYPE_CHECKING:
    from evomerge.merge.recipes.parameter import Recipe

# `model.layers.7.`, `transformer.h.7.`, `encoder.layer.7.`, `blocks.7.`
_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)(?:\.|$)")


def layer_index(tensor_name: str) -> int | None:
    """The transformer block index in a tensor name (``model.layers.7.mlp…`` → 7), else None."""
    match = _LAYER_RE.search(tensor_name)
    return int(match.group(1)) if match else None


def interpolate(gradient: Sequence[float], x: float) -> float:
    """mergekit's gradient rule at ``x ∈ [0, 1]`` (same arithmetic, so values match bit for bit)."""
    scaled = x * (len(gradient) - 1)
    i0 = int(scaled)
    i1 = min(len(gradient) - 1, i0 + 1)
    frac = scaled - i0
    return (1 - frac) * gradient[i0] + frac * gradient[i1]


class _Position:
    """Where a tensor sits along the depth; computed only when a gradient asks for it."""

    def __init__(self, tensor_name: str, layer: int | None, num_layers: int, layerless: str):
        self.tensor_name = tensor_name
        self.layer = layer
        self.num_layers = num_layers
        self.layerless = layerless

    def x(self, key: str) -> float:
        if self.layer is None:
            x = layerless_position(self.tensor_name, self.layerless)
            if x is None:
                raise ConfigError(
                    f"{key} is a gradient but tensor {self.tensor_name!r} has no layer index; "
                    "give that tensor a {filter, value} entry or a scalar fallback "
                    "(or set options.layerless_gradient: start for mergekit's rule)"
                )
            return x
        if self.num_layers <= 1:
            return 1.0
        return self.layer / (self.num_layers - 1)


def evaluate(setting: Any, tensor_name: str, position: _Position, key: str) -> Any:
    """The value of one (normalised) setting for this tensor, or None when no entry matches."""
    if setting is None or isinstance(setting, (bool, int, float)):
        return setting
    if isinstance(setting, list):
        if not setting:
            return None
        if isinstance(setting[0], dict):
            for i, entry in enumerate(setting):
                flt = entry.get("filter")
                if flt is None or flt in tensor_name:
                    return evaluate(entry["value"], tensor_name, position, f"{key}[{i}].value")
            return None
        return interpolate(setting, position.x(key))
    raise TypeError(f"unnormalised setting {setting!r} at {key}")  # the recipe validates types


def resolve(
    recipe: Recipe,
    tensor_name: str,
    layer_index: int | None,
    num_layers: int,
    *,
    thresholds: Sequence[float] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-model parameter dicts (one per model that receives tensors, in recipe order) and the
    global dict for ``tensor_name``, defaults filled in; see the module docstring.

    ``params`` also carries the method's options (``ties_scope``, ``consensus``, ``rescale_mode``)
    with their defaults. ``thresholds`` (``options.ties_scope: model``) are copied into each
    model dict as ``_threshold``.
    """
    spec = get_method(recipe.merge_method)
    layerless = recipe.options.get("layerless_gradient", OPTIONS["layerless_gradient"].default)
    position = _Position(tensor_name, layer_index, num_layers, layerless)
    model_params: list[dict[str, Any]] = []
    for i, entry in recipe.indexed_experts():
        resolved: dict[str, Any] = {}
        for name, default in spec.model_params.items():
            value = evaluate(entry.parameters.get(name), tensor_name, position, f"models[{i}].parameters.{name}")
            if value is None:
                value = evaluate(recipe.parameters.get(name), tensor_name, position, f"parameters.{name}")
            if value is None:
                value = default
            if value is None:
                raise ConfigError(
                    f"models[{i}].parameters.{name}: no value for tensor {tensor_name!r} "
                    f"({recipe.merge_method} needs {name} for every model; no filter matched and no fallback)"
                )
            resolved[name] = float(value)
        model_params.append(resolved)
    params: dict[str, Any] = {}
    for name, default in spec.global_params.items():
        value = evaluate(recipe.parameters.get(name), tensor_name, position, f"parameters.{name}")
        if value is None:
            value = default
        if value is None:
            raise ConfigError(
                f"parameters.{name}: no value for tensor {tensor_name!r} ({recipe.merge_method} needs {name})"
            )
        params[name] = value if isinstance(default, bool) else float(value)
    for name, allowed in spec.options.items():
        params[name] = recipe.options.get(name, allowed[0])
    if "epsilon" in spec.model_params:
        for i, mp in zip(recipe.expert_positions(), model_params):
            d, eps = mp["density"], mp["epsilon"]
            if 0 < d < 1 and not (0 < d - eps and d + eps < 1):
                raise ConfigError(
                    f"models[{i}].parameters: density {d:g} ± epsilon {eps:g} leaves (0, 1) "
                    f"for tensor {tensor_name!r}; expected 0 < density - epsilon and density + epsilon < 1"
                )
    if thresholds is not None:
        for mp, threshold in zip(model_params, thresholds):
            mp["_threshold"] = float(threshold)
    return model_params, params


def freeze(model_params: list[dict[str, Any]], params: dict[str, Any]) -> tuple:
    """A hashable, comparable form of :func:`resolve`'s result."""
    return (
        tuple(tuple(sorted(mp.items())) for mp in model_params),
        tuple(sorted(params.items())),
    )


def resolve_key(
    recipe: Recipe,
    tensor_name: str,
    layer_index: int | None,
    num_layers: int,
    *,
    thresholds: Sequence[float] | None = None,
) -> tuple:
    """Everything that determines the merged value of ``tensor_name`` besides the weights
    themselves: equal keys ⇒ equal merged tensors, so the in-place merger can skip it."""
    spec = get_method(recipe.merge_method)
    model_params, params = resolve(recipe, tensor_name, layer_index, num_layers, thresholds=thresholds)
    return (
        recipe.merge_method,
        recipe.base_model if spec.needs_base else None,
        tuple(entry.model for _, entry in recipe.indexed_experts()),
        recipe.seed if spec.randomized else None,
        recipe.dtype,
        freeze(model_params, params),
    )
