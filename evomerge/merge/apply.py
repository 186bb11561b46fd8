"""Apply a recipe: merged tensors one at a time, and writing them into a live module in place.

Both ways of applying a recipe — :class:`InPlaceMerger` (into a resident ``torch.nn.Module``, once per
search candidate) and :func:`evomerge.merge.materialize.materialize` (to a directory) — draw their
tensors from :func:`merged_tensors`, so a model merged in place and the same recipe written to disk
and reloaded hold bit-identical weights.

Per tensor ``name`` with layer index ℓ (or none) of L layers:

1. ``params.resolve(recipe, name, ℓ, L)`` gives one float dict per expert and the global dict;
2. the method is called as ``fn(θ_0, [x_1 … x_N], model_params, params, generator)`` where
   x_t = τ_t (the pool's cached task vectors) when the method works on deltas, else θ_t, and the
   generator of a randomized method (DARE, DELLA) is seeded from ``(recipe.seed, name)`` alone, so a
   tensor's random mask does not depend on which other tensors were merged before it;
3. the result is cast to the output dtype (the recipe's ``dtype`` unless overridden).

Non-floating tensors (integer buffers some checkpoints store) are copied from the base (or the first
model) unchanged.

Recomputation: the *key* of a tensor is everything its merged value depends on — method, base and
expert ids, the resolved parameters, the seed when the method is randomized, and the output dtype.
:class:`InPlaceMerger` remembers the key it last wrote per tensor and skips tensors whose key is
unchanged, so a search step that moves one layer group's weight rewrites only that group. It owns the
engine's :class:`~evomerge.merge.cache.MergeCache` for its pool (sparsifier state and whole-model
thresholds shared by every candidate).

Recipes are duck-typed here (``merge_method``, ``base_model``, ``expert_ids``, ``options``, ``seed``,
``dtype``): this module sits below :mod:`evomerge.merge.recipes`, which calls it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from evomerge.dtypes import torch_dtype
from evomerge.errors import ConfigError, ModelError
from evomerge.merge.cache import MergeCache, TrimThresholds
from evomerge.merge.methods import get_method
from evomerge.merge.methods.registry import tensor_generator
from evomerge.merge.methods.thresholds import global_trim_thresholds
from evomerge.merge.params import layer_index, resolve
from evomerge.pool import ModelPool


def _method(recipe):
    return get_method(recipe.merge_method)


def expert_ids(recipe) -> list[str]:
    """Ids of the models a method combines, in recipe order (the recipe's rule: every ``models``
    entry, minus the base's own entry for methods that take a base)."""
    return [str(m) for m in recipe.expert_ids]


def pool_for_recipe(
    recipe,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache: bool = True,
    preload: bool = False,
):
    """A :class:`~evomerge.pool.ModelPool` holding exactly the recipe's base and models (validated)."""
    base = str(recipe.base_model) if recipe.base_model is not None else None
    return ModelPool(base, expert_ids(recipe), device=device, dtype=dtype, cache=cache, preload=preload)


def check_recipe_against_pool(recipe, pool) -> None:
    """The pool holds every model the recipe names (and its base, when the method needs one)."""
    spec = _method(recipe)
    if spec.needs_base:
        if recipe.base_model is None:
            raise ConfigError(f"base_model: merge method '{spec.name}' needs a base model, got none")
        if str(recipe.base_model) != pool.base:
            raise ModelError(f"base_model: recipe's base '{recipe.base_model}' is not the pool's base '{pool.base}'")
    known = set(pool.ids)
    for m in expert_ids(recipe):
        if m not in known:
            raise ModelError(f"models: '{m}' is not in the model pool (pool holds: {', '.join(pool.ids)})")


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, torch.Tensor):
        return tuple(value.flatten().tolist())
    return value


@dataclass
class TensorPlan:
    """What one tensor's merge needs, resolved; ``key`` identifies its merged value."""

    name: str
    model_params: list[dict]
    params: dict
    key: tuple


class RecipePlan:
    """A recipe bound to a pool: method spec, expert ids, output dtype; resolves tensors on demand.

    ``cache``: the engine's state for this pool kept across merges (none: computed for this plan).
    """

    def __init__(self, recipe, pool, dtype: torch.dtype | None = None, cache: MergeCache | None = None):
        check_recipe_against_pool(recipe, pool)
        self.recipe = recipe
        self.pool = pool
        self.cache = cache
        self.spec = _method(recipe)
        self.experts = expert_ids(recipe)
        self.out_dtype = dtype if dtype is not None else torch_dtype(getattr(recipe, "dtype", None))
        seed = getattr(recipe, "seed", None)
        self.seed = int(seed) if seed is not None else 0
        self.thresholds = self._global_thresholds()
        self._static_key = (
            self.spec.name,
            pool.base if self.spec.needs_base or self.spec.uses_deltas else None,
            tuple(self.experts),
            self.seed if self.spec.randomized else None,
            str(self.out_dtype),
        )

    def _global_thresholds(self) -> list[float] | None:
        """``options.ties_scope: model`` (the TIES paper): one magnitude threshold per expert over its
        whole task vector, so that the top-``density`` fraction of the *model* survives. Needs one
        density per expert; kept in the cache's :class:`~evomerge.merge.cache.TrimThresholds`."""
        if self.recipe.options.get("ties_scope", "tensor") != "model" or "ties_scope" not in self.spec.options:
            return None
        pool = self.pool
        densities: list[float] | None = None
        for name in pool.tensor_names:
            model_params, _ = resolve(self.recipe, name, layer_index(name), pool.num_layers)
            here = [mp["density"] for mp in model_params]
            if densities is None:
                densities = here
            elif here != densities:
                k = next(i for i, (a, b) in enumerate(zip(here, densities)) if a != b)
                raise ConfigError(
                    f"models[{self.recipe.expert_positions()[k]}].parameters.density: options.ties_scope=model "
                    f"trims over the whole model and needs one density per model, got {densities[k]:g} and "
                    f"{here[k]:g} (tensor {name!r})"
                )
        known = self.cache.thresholds if self.cache is not None else TrimThresholds()
        floats = [n for n in pool.tensor_names if pool.stored_dtype(n).is_floating_point]

        def compute(m: str, density: float):
            return lambda: global_trim_thresholds([(pool.delta(m, n) for n in floats)], [density])[0]

        return [known.get(m, density, compute(m, density)) for m, density in zip(self.experts, densities or [])]

    def plan(self, name: str) -> TensorPlan:
        model_params, params = resolve(
            self.recipe, name, layer_index(name), self.pool.num_layers, thresholds=self.thresholds
        )
        key = self._static_key + (_freeze(model_params), _freeze(params))
        return TensorPlan(name, model_params, params, key)

    def compute(self, plan: TensorPlan, out: torch.Tensor | None = None) -> torch.Tensor:
        """The merged tensor in the output dtype, on the pool's device.

        ``out``: where to write it if the method can (a float32 contiguous tensor on the pool's
        device that aliases no input, and a float32 output) — the in-place merger passes the live
        parameter, saving a temporary and a copy. The caller checks whether the result is ``out``.
        """
        pool, spec, name = self.pool, self.spec, plan.name
        if not pool.stored_dtype(name).is_floating_point:
            return pool.stored(pool.reference, name).to(pool.device)
        base = pool.tensor(pool.base, name) if (spec.needs_base and pool.base is not None) else None
        if spec.uses_deltas:
            inputs = [pool.delta(m, name) for m in self.experts]
        else:
            inputs = [pool.tensor(m, name) for m in self.experts]
        generator = tensor_generator(self.seed, name, pool.device) if spec.randomized else None
        params = plan.params
        search = self.cache.search if self.cache is not None else None
        if spec.uses_deltas and search is not None:
            params = {**params, "_cache": search.view(name, self.experts, self.seed)}
        if out is not None and self._can_write_into(out, [base, *inputs]):
            params = {**params, "_out": out}
        merged = spec.fn(base, inputs, plan.model_params, params, generator)
        return merged.to(self.out_dtype)

    def _can_write_into(self, out: torch.Tensor, inputs: list[torch.Tensor | None]) -> bool:
        if out.dtype != torch.float32 or self.out_dtype != torch.float32:
            return False
        if out.device != self.pool.device or not out.is_contiguous():
            return False
        storage = out.untyped_storage().data_ptr()
        return all(t is None or t.untyped_storage().data_ptr() != storage for t in inputs)


def merged_tensors(
    recipe,
    pool,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    names: Iterable[str] | None = None,
    cache: MergeCache | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, merged tensor)`` for every tensor of the pool (or ``names``), in pool order.

    ``dtype`` overrides the recipe's; ``device`` (default: the pool's) is where tensors are yielded;
    ``cache``: the engine's state to use and fill (none: nothing kept).
    """
    plan = RecipePlan(recipe, pool, torch_dtype(dtype) if dtype is not None else None, cache)
    target = torch.device(device) if device is not None else pool.device
    for name in names if names is not None else pool.tensor_names:
        yield name, plan.compute(plan.plan(name)).to(target)


@dataclass(frozen=True)
class ApplyStats:
    recomputed: int
    skipped: int
    seconds: float


class InPlaceMerger:
    """Writes merged tensors into a live module's existing parameter storage.

    The mapping from pool tensor names to the module's parameters and persistent buffers is built
    once: exact names first, then with the module's ``base_model_prefix`` added or stripped (hub
    checkpoints of some families omit it). Tensors tied in the module (one ``Parameter`` under two
    names) are written once. Every parameter of the module must receive a tensor, and every pool
    tensor must land somewhere, unless the module declares it ignorable on load.

    ``cache``: the engine's state kept across applies (default: a new
    :class:`~evomerge.merge.cache.MergeCache`, with the search cache when the pool caches tensors).
    """

    def __init__(self, pool, module: torch.nn.Module, *, cache: MergeCache | None = None):
        self.pool = pool
        self.module = module
        self.cache = cache if cache is not None else MergeCache(search=pool.cache_enabled)
        self.targets: dict[str, torch.Tensor] = self._map_targets()
        self._keys: dict[str, tuple] = {}

    def _map_targets(self) -> dict[str, torch.Tensor]:
        module, pool = self.module, self.pool
        state = module.state_dict(keep_vars=True)
        prefix = getattr(module, "base_model_prefix", "") or ""
        ignorable = [re.compile(p) for p in (getattr(module, "_keys_to_ignore_on_load_unexpected", None) or [])]
        targets: dict[str, torch.Tensor] = {}
        written: set[int] = set()
        for name in pool.tensor_names:
            candidates = [name]
            if prefix:
                candidates += [f"{prefix}.{name}", name.removeprefix(f"{prefix}.")]
            hit = next((c for c in candidates if c in state), None)
            if hit is None:
                if any(p.search(name) for p in ignorable):
                    continue
                raise ModelError(
                    f"tensor '{name}' of model '{pool.reference}' has no parameter or buffer in the module"
                )
            tensor = state[hit]
            if tuple(tensor.shape) != tuple(pool.shape(name)):
                raise ModelError(
                    f"tensor '{name}': model '{pool.reference}' has shape {tuple(pool.shape(name))}, "
                    f"the module's '{hit}' has {tuple(tensor.shape)}"
                )
            if id(tensor) in written:  # tied: already written under another name
                continue
            written.add(id(tensor))
            targets[name] = tensor
        for pname, param in module.named_parameters():
            if id(param) not in written:
                raise ModelError(f"module parameter '{pname}' has no tensor in model '{pool.reference}'")
        return targets

    def invalidate(self, names: Iterable[str] | None = None) -> None:
        """Forget what was written (all, or ``names``) so the next apply rewrites it."""
        if names is None:
            self._keys.clear()
        else:
            for n in names:
                self._keys.pop(n, None)

    @torch.no_grad()
    def apply(self, recipe, force: bool = False) -> ApplyStats:
        """Merge ``recipe`` into the module; recompute only tensors whose key changed (all if ``force``)."""
        start = time.perf_counter()
        plan = RecipePlan(recipe, self.pool, cache=self.cache)
        recomputed = skipped = 0
        for name, target in self.targets.items():
            tplan = plan.plan(name)
            if not force and self._keys.get(name) == tplan.key:
                skipped += 1
                continue
            # Forget first: if the merge fails half-way the tensor is not claimed as up to date.
            self._keys.pop(name, None)
            merged = plan.compute(tplan, out=target.data)
            if merged.data_ptr() != target.data_ptr():
                target.data.copy_(merged)
            self._keys[name] = tplan.key
            recomputed += 1
        return ApplyStats(recomputed=recomputed, skipped=skipped, seconds=time.perf_counter() - start)
