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

import math
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from evomerge.dtypes import torch_dtype
from evomerge.errors import ConfigError, ModelError
from evomerge.merge.cache import MergeCache, TrimThresholds
from evomerge.merge.methods import get_method, kernels
from evomerge.merge.methods.registry import tensor_generator
from evomerge.merge.methods.thresholds import global_trim_thresholds
from evomerge.merge.methods.workspace import workspace
from evomerge.merge.params import layer_index, resolve
from evomerge.merge.staging import Staging
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


def staging_sizes(pool) -> tuple[int, int]:
    """Entries of the pool's largest float tensor, and of the largest below the vocabulary-sized
    ones (half the largest or less): the two staging buffer sets (:mod:`evomerge.merge.staging`)."""
    sizes = sorted({math.prod(pool.shape(n)) for n in pool.tensor_names if pool.stored_dtype(n).is_floating_point})
    largest = sizes[-1] if sizes else 1
    return largest, max((s for s in sizes if 2 * s <= largest), default=largest)


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
    ``device``: where the merge runs (default: the pool's compute device); ``staging`` brings each
    tensor's inputs there from the pool's store (:mod:`evomerge.merge.staging`; made here when the
    pool stores elsewhere).
    """

    def __init__(
        self,
        recipe,
        pool,
        dtype: torch.dtype | None = None,
        cache: MergeCache | None = None,
        *,
        device: torch.device | str | None = None,
        staging: Staging | None = None,
    ):
        check_recipe_against_pool(recipe, pool)
        self.recipe = recipe
        self.pool = pool
        self.cache = cache
        self.device = torch.device(device) if device is not None else pool.compute_device
        if staging is None and self.device != pool.device:  # a pool that stores elsewhere: stream its inputs
            staging = Staging(self.device, staging_sizes(pool)[0], second=0)
        self.staging = staging
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

    def sources(self, name: str) -> list[torch.Tensor | None]:
        """``[θ_0 or None, x_1 … x_N]``: the method's inputs for ``name``, where the pool keeps them."""
        pool, spec = self.pool, self.spec
        if not pool.stored_dtype(name).is_floating_point:
            return []
        base = pool.tensor(pool.base, name) if (spec.needs_base and pool.base is not None) else None
        if spec.uses_deltas:
            return [base, *(pool.delta(m, name) for m in self.experts)]
        return [base, *(pool.tensor(m, name) for m in self.experts)]

    def compute(self, plan: TensorPlan, out: torch.Tensor | None = None, *, prefetch: str | None = None):
        """The merged tensor, on the plan's device.

        Without ``out``: a new tensor in the output dtype. With ``out`` (the in-place merger passes
        the live parameter): the method writes into it when it can (same device, contiguous, no
        input aliased, and a dtype the method writes — float32, or any float for the fused family —
        that equals the output dtype or receives the float32 result cast once); otherwise the
        result is a float32 scratch tensor (or the output dtype, if that differs from both)
        which the caller copies into ``out`` at once. ``prefetch``: the next tensor to merge
        (its inputs start streaming now).
        """
        pool, spec, name = self.pool, self.spec, plan.name
        if not pool.stored_dtype(name).is_floating_point:
            return pool.stored(pool.reference, name).to(self.device)
        sources = self.sources(name)
        staged = self.staging.take(name, sources) if self.staging is not None else sources
        if prefetch is not None and self.staging is not None:
            self.staging.prefetch(prefetch, self.sources(prefetch))
        base, inputs = staged[0], staged[1:]
        generator = tensor_generator(self.seed, name, self.device) if spec.randomized else None
        params = plan.params
        search = self.cache.search if self.cache is not None else None
        if spec.uses_deltas and search is not None:
            params = {**params, "_cache": search.view(name, self.experts)}
        if out is not None:
            if self._can_write_into(out, staged):
                params = {**params, "_out": out}
            elif out.device == self.device and out.dtype != torch.float32:
                # the result is copied into `out` at once: a reused buffer, not a fresh tensor
                params = {**params, "_out": workspace().get("apply_out", out.shape, torch.float32, self.device)}
        merged = spec.fn(base, inputs, plan.model_params, params, generator)
        if self.staging is not None:
            self.staging.release()
        if out is None or self.out_dtype not in (merged.dtype, out.dtype):
            merged = merged.to(self.out_dtype)
        return merged

    def _can_write_into(self, out: torch.Tensor, inputs: list[torch.Tensor | None]) -> bool:
        if out.device != self.device or not out.is_contiguous():
            return False
        if not (out.dtype == torch.float32 or (self.spec.writes_any_float and out.dtype.is_floating_point)):
            return False
        if self.out_dtype not in (out.dtype, torch.float32):  # the result would be rounded twice
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
    ``device``: where the module lives and the merge runs (default: the pool's compute device);
    ``stream``: bring every tensor's inputs from the pool's store through reused device buffers
    (:class:`~evomerge.merge.staging.Staging`; implied when the pool keeps them elsewhere).
    """

    PARALLEL_MIN_ENTRIES = 1 << 22  # merge tensors on several threads from this many entries per apply

    def __init__(
        self,
        pool,
        module: torch.nn.Module,
        *,
        cache: MergeCache | None = None,
        device: str | torch.device | None = None,
        stream: bool = False,
    ):
        self.pool = pool
        self.module = module
        self.device = torch.device(device) if device is not None else pool.compute_device
        self.cache = cache if cache is not None else MergeCache(search=pool.cache_enabled)
        self.targets: dict[str, torch.Tensor] = self._map_targets()
        self._keys: dict[str, tuple] = {}
        self._warm = False  # an apply has run: every input the pool derives is held
        self.staging: Staging | None = None
        if stream or self.device != pool.device:
            largest, second = staging_sizes(pool)
            self.staging = Staging(self.device, largest, second=second, always=True)
        if self.device.type == "cpu" and kernels.available():  # compile while the checkpoints load
            self._warm_up = threading.Thread(target=self._compile, name="evomerge-kernels", daemon=True)
            self._warm_up.start()

    def _compile(self) -> None:
        floats = [n for n in self.pool.tensor_names if self.pool.stored_dtype(n).is_floating_point]
        if not floats:
            return
        out = next(iter(self.targets.values()), None)
        try:
            kernels.warm_up(
                self.pool.stored_dtype(floats[0]), len(self.pool.models), out.dtype if out is not None else None
            )
        except Exception:  # noqa: BLE001 - a failed warm-up only means the first merge compiles
            pass

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
        plan = RecipePlan(recipe, self.pool, cache=self.cache, device=self.device, staging=self.staging)
        work = []
        for name, target in self.targets.items():
            tplan = plan.plan(name)
            if force or self._keys.get(name) != tplan.key:
                work.append((name, target, tplan))
        threads = self._threads() if plan.spec.writes_any_float else 1  # the fused family: chunk scratch only
        if sum(t.numel() for _, t, _ in work) < self.PARALLEL_MIN_ENTRIES:
            threads = 1  # a small model: the thread pool costs more than it saves
        try:
            if threads > 1 and len(work) > 1:
                self._apply_parallel(plan, work, threads)
            else:
                for i, (name, target, tplan) in enumerate(work):
                    # Forget first: if the merge fails half-way the tensor is not claimed as up to date.
                    self._keys.pop(name, None)
                    following = work[i + 1][0] if i + 1 < len(work) else None
                    self._write(plan, target, tplan, following)
                    self._keys[name] = tplan.key
        except BaseException:
            if self.staging is not None:
                self.staging.reset()
            raise
        self._warm = True
        skipped = len(self.targets) - len(work)
        return ApplyStats(recomputed=len(work), skipped=skipped, seconds=time.perf_counter() - start)

    @staticmethod
    def _write(plan: RecipePlan, target: torch.Tensor, tplan: TensorPlan, following: str | None) -> None:
        merged = plan.compute(tplan, out=target.data, prefetch=following)
        if merged.data_ptr() != target.data_ptr():
            target.data.copy_(merged)

    def _threads(self) -> int:
        """Tensors merged at once: torch's thread count when the compiled CPU kernels merge (one
        thread each, the GIL released) out of a resident pool whose inputs are all held (after the
        first apply, which reads and derives them one by one); else 1."""
        if not (self._warm and self.device.type == "cpu" and self.staging is None and self.pool.cache_enabled):
            return 1
        return torch.get_num_threads() if kernels.available() else 1

    def _apply_parallel(self, plan: RecipePlan, work: list, threads: int) -> None:
        """The tensors of ``work`` on ``threads`` threads (each tensor's merge depends on it alone:
        the result is the same in any order)."""
        from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

        for name, _, _ in work:
            self._keys.pop(name, None)
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="evomerge-merge") as pool:
            futures = {
                pool.submit(self._write, plan, target, tplan, None): (name, tplan) for name, target, tplan in work
            }
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for f in pending:
                f.cancel()
            for f in done:
                if f.exception() is None:
                    name, tplan = futures[f]
                    self._keys[name] = tplan.key
            for f in done:
                if f.exception() is not None:
                    raise f.exception()
