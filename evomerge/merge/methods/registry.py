"""Registry of merge methods.

A merge method is a pure function on tensors (no I/O, no globals) plus a :class:`MethodSpec`
that says what it needs. Methods are looked up by their mergekit name; importing
:mod:`evomerge.merge.methods` (which importing this module does first) registers the built-in ones.

A new method is one module in this package that calls :func:`register` (plus its name in the
package's import list), and, if it reads a parameter or option no method had before, its
definition in :mod:`evomerge.merge.parameters`.

Calling convention of ``spec.fn``::

    fn(base, tensors, model_params, params, generator) -> Tensor

- ``base``: the base model's tensor, or ``None`` for methods that need none.
- ``tensors``: one tensor per (non-base) model, in recipe order. When ``spec.uses_deltas`` is true
  these are task vectors ``expert - base`` (the pool precomputes them once), otherwise the raw
  expert tensors. The function never writes into them (they are the pool's cache).
- ``model_params``: one dict per model with every name in ``spec.model_params`` resolved to a
  float for this tensor (defaults filled in). With ``options.ties_scope: model`` each dict also
  carries ``_threshold``: that model's global magnitude threshold
  (:func:`evomerge.merge.methods.thresholds.global_trim_thresholds`).
- ``params``: the global parameters with defaults filled in (``lambda``, ``normalize``, ...) and
  the recipe's ``options`` that apply to the method (``ties_scope``, ``consensus``,
  ``rescale_mode``), each with its default (mergekit's behaviour) filled in. The caller may add
  ``_out``: a float32 tensor of the output shape, aliasing no input, that the method writes its
  result into and returns (e.g. a reusable buffer: fresh 64 MB tensors cost page faults on CPU);
  a method with ``writes_any_float`` also takes an ``_out`` of another float dtype (a bf16 weight)
  and writes into it the float32 result cast to that dtype.
- ``generator``: a seeded ``torch.Generator`` for randomized methods (DARE, DELLA), else ``None``.
  Callers build it with :func:`tensor_generator` so that every path that merges a tensor (in
  place or materialized) draws the same masks.

It returns the merged tensor (not a delta), same shape as the inputs, in float32 or the inputs'
dtype; the caller casts to the recipe's dtype.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from evomerge.merge.parameters import OPTIONS, PARAMETERS
from evomerge.registry import Registry

MergeFn = Callable[
    [torch.Tensor | None, list[torch.Tensor], list[dict[str, float]], dict[str, Any], torch.Generator | None],
    torch.Tensor,
]


@dataclass(frozen=True)
class MethodSpec:
    """What a method reads. ``params`` names parameters of :mod:`evomerge.merge.parameters` (their
    scope, bounds and search range are defined there, once); ``defaults`` overrides a parameter's
    default where the method's own differs (TIES normalises, DARE rescales); ``method_options``
    names the options of that module the method takes besides the common ones.

    Derived, for lookups: ``model_params`` / ``global_params`` (name → default, None = required,
    in declaration order) and ``options`` (name → allowed values, the first the default).
    """

    name: str
    fn: MergeFn
    needs_base: bool
    uses_deltas: bool
    params: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    randomized: bool = False
    min_models: int = 1
    max_models: int | None = None
    doc: str = ""
    method_options: tuple[str, ...] = ()
    # Parameters accepted for mergekit compatibility that have no effect on this method.
    inert_params: frozenset[str] = frozenset()
    # Takes an ``_out`` of any float dtype (casting as it writes), not only float32.
    writes_any_float: bool = False
    model_params: dict[str, Any] = field(init=False, repr=False, compare=False)
    global_params: dict[str, Any] = field(init=False, repr=False, compare=False)
    options: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = [p for p in (*self.params, *self.defaults) if p not in PARAMETERS]
        unknown += [o for o in self.method_options if o not in OPTIONS]
        if unknown or set(self.defaults) - set(self.params):  # a bug in a method module
            raise ValueError(
                f"merge method {self.name!r}: unknown or unlisted parameter/option {unknown or self.defaults}"
            )
        values = {p: self.defaults.get(p, PARAMETERS[p].default) for p in self.params}
        object.__setattr__(self, "model_params", {p: v for p, v in values.items() if PARAMETERS[p].scope == "model"})
        object.__setattr__(self, "global_params", {p: v for p, v in values.items() if PARAMETERS[p].scope == "global"})
        object.__setattr__(self, "options", {o: OPTIONS[o].values for o in self.method_options})


_METHODS = Registry("merge method")


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in _METHODS:
        raise ValueError(f"merge method {spec.name!r} registered twice")
    return _METHODS.register(spec.name, spec)


def get_method(name: str) -> MethodSpec:
    """The method registered as ``name``; an unknown name raises a one-line ConfigError."""
    return _METHODS.get(name)


def method_names() -> list[str]:
    return sorted(_METHODS.names())


def tensor_generator(seed: int, tensor_name: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator seeded from ``(seed, tensor_name)``, stable across processes and runs.

    ``(seed, name)`` goes through BLAKE2b (Python's ``hash`` is salted per process), so the
    in-place merger, the materializer and a Ray worker all draw the same masks for a tensor.
    Every bit of the 64-bit digest depends on both inputs: the CPU generator (mt19937) keeps
    only the low 32 bits of a seed. Masks are equal for equal device *types*; CPU and CUDA
    generators are different streams.
    """
    digest = hashlib.blake2b(f"{int(seed)}\x00{tensor_name}".encode(), digest_size=8).digest()
    generator = torch.Generator(device=device)
    generator.manual_seed(int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF)
    return generator
