"""Registry of merge methods.

A merge method is a pure function on tensors (no I/O, no globals) plus a :class:`MethodSpec`
that says what it needs. Methods are looked up by their mergekit name.

Calling convention of ``spec.fn``::

    fn(base, tensors, model_params, params, generator) -> Tensor

- ``base``: the base model's tensor, or ``None`` for methods that need none.
- ``tensors``: one tensor per (non-base) model, in recipe order. When ``spec.uses_deltas`` is true
  these are task vectors ``expert - base`` (the pool precomputes them once), otherwise the raw
  expert tensors.
- ``model_params``: one dict per model with every name in ``spec.model_params`` resolved to a
  float for this tensor (defaults filled in).
- ``params``: the global parameters with defaults filled in (``lambda``, ``normalize``, ...).
- ``generator``: a seeded ``torch.Generator`` for randomized methods (DARE, DELLA), else ``None``.

It returns the merged tensor (not a delta), same shape as the inputs, in float32 or the inputs'
dtype; the caller casts to the recipe's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from evomerge.errors import ConfigError

MergeFn = Callable[
    [torch.Tensor | None, list[torch.Tensor], list[dict[str, float]], dict[str, Any], torch.Generator | None],
    torch.Tensor,
]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: MergeFn
    needs_base: bool
    uses_deltas: bool
    model_params: dict[str, float | None] = field(default_factory=dict)  # None = required
    global_params: dict[str, Any] = field(default_factory=dict)
    randomized: bool = False
    min_models: int = 1
    max_models: int | None = None
    doc: str = ""


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"merge method {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"unknown merge method {name!r}; expected one of: {known}") from None


def method_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    # Importing the package registers every built-in method module exactly once.
    import evomerge.merge.methods  # noqa: F401
