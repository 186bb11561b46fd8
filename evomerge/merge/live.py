"""The resident models one worker merges into, for its whole life.

:class:`LiveModels` is built once per worker: the model pool of the run's base and experts (task
vectors cached), one live model of the base architecture with its
:class:`~evomerge.merge.apply.InPlaceMerger`, and the tokenizer. Where each lives is planned from
the headers and the free memory before any weight is read (:mod:`evomerge.merge.placement`:
everything on the device, or the base and task vectors in pinned host memory, streamed per
tensor; ``live.placement`` says which). ``live.build(recipe)`` then turns a recipe of either kind
into a runnable ``(model, tokenizer)``:

- a parameter-space recipe is merged in place into the live model (only tensors whose resolved
  parameters changed are recomputed);
- a data-flow recipe runs as a path model over its sources (layers shared by reference, nothing
  materialised; rebuilt per recipe — it costs no copies).

Data-flow sources stay resident too: a plain source (a checkpoint) is read from disk the first time
a recipe names it; a nested parameter-space source (model A of the PS+DFS space, whose recipe
changes with every candidate) is one live module merged **in place** — nothing is reloaded. When
the nested recipe merges the worker's own pool (the joint space's case) that module is the live
model itself, so the joint space needs one model of the base architecture plus its other sources,
loaded once.
"""

from __future__ import annotations

from typing import Any

from evomerge.dtypes import resolve_device, torch_dtype
from evomerge.errors import EvomergeError
from evomerge.merge.apply import InPlaceMerger, check_recipe_against_pool, expert_ids, pool_for_recipe
from evomerge.merge.cache import MergeCache
from evomerge.merge.dataflow.path_model import source_ref
from evomerge.merge.placement import MemoryGuard, plan_for_pool
from evomerge.pool import ModelPool
from evomerge.pool.modules import load_causal_lm


class LiveModels:
    """A worker's resident models (see the module docstring); ``device`` may be ``"auto"``;
    ``memory``: ``auto | gpu | offload``; ``search_cache``: ``auto | off`` or a byte cap;
    ``methods``: the merge methods recipes will use, when known (the plan's scratch for DARE's
    draws is left out without one that samples)."""

    def __init__(
        self,
        base: str | None,
        experts: list[str],
        *,
        device: str = "cpu",
        dtype: Any = "float32",
        memory: str = "auto",
        search_cache: int | str = "auto",
        methods: list[str] | None = None,
    ):
        from transformers import AutoTokenizer

        self.device = resolve_device(device) if isinstance(device, str) else device
        self.dtype = torch_dtype(dtype)
        self.pool = ModelPool(base, list(experts), device="cpu", dtype=self.dtype)  # headers only, so far
        device_name = str(self.device)
        self.placement = plan_for_pool(
            self.pool,
            device=device_name,
            dtype_bytes=self.dtype.itemsize,
            memory=memory,
            search_cache=search_cache,
            methods=methods,
        )
        self.pool.place(self.placement.store, compute_device=self.device, pin=self.placement.pin)
        ref = str(self.pool.reference_dir)
        self.model = load_causal_lm(ref, device=self.device, dtype=self.dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(ref)
        cache = MergeCache(
            search=self.placement.search_cache_bytes > 0,
            search_bytes=self.placement.search_cache_bytes,
            fits=MemoryGuard(device_name, self.placement.reserve_bytes),
        )
        self.merger = InPlaceMerger(
            self.pool, self.model, cache=cache, device=self.device, stream=self.placement.stream
        )
        self._plain: dict[str, Any] = {}  # data-flow source ref -> loaded model
        self._nested: dict[str, tuple[tuple, InPlaceMerger]] = {}  # source name -> (pool key, merger)
        self._tokenizers: dict[str, Any] = {ref: self.tokenizer}

    def build(self, recipe) -> tuple[Any, Any]:
        """``(model, tokenizer)`` for a recipe of either kind (its ``build(live)``)."""
        return recipe.build(self)

    def reset(self) -> None:
        """After a failure: an apply interrupted half-way leaves tensors of two recipes, so every
        resident merge rewrites all its tensors next time."""
        self.merger.invalidate()
        for _, merger in self._nested.values():
            merger.invalidate()

    # -- data-flow sources, resident ----------------------------------------------------------
    def source(self, name: str, src) -> Any:
        """Data-flow source ``name``: a checkpoint (``src`` a path or hub id) loaded once, or the
        nested parameter-space recipe ``src`` merged in place into its resident module."""
        if isinstance(src, str):
            return self._plain_source(src)
        return self._nested_source(name, src)

    def tokenizer_for(self, ref: str) -> Any:
        """The tokenizer of checkpoint ``ref``, loaded once."""
        from transformers import AutoTokenizer

        tok = self._tokenizers.get(ref)
        if tok is None:
            tok = self._tokenizers[ref] = AutoTokenizer.from_pretrained(ref)
        return tok

    def _plain_source(self, src: str):
        ref = source_ref(src)
        model = self._plain.get(ref)
        if model is None:
            model = self._plain[ref] = load_causal_lm(
                ref, device=self.device, dtype=self.dtype, role="data-flow source"
            )
        return model

    def _nested_source(self, name: str, recipe):
        key = (str(recipe.base_model) if recipe.base_model is not None else None, tuple(expert_ids(recipe)))
        entry = self._nested.get(name)
        if entry is None or entry[0] != key:
            entry = self._nested[name] = (key, self._nested_merger(name, recipe))
        merger = entry[1]
        merger.apply(recipe)
        return merger.module

    def _nested_merger(self, name: str, recipe) -> InPlaceMerger:
        live_taken = any(m is self.merger for other, (_, m) in self._nested.items() if other != name)
        if not live_taken:
            try:
                check_recipe_against_pool(recipe, self.pool)
            except EvomergeError:
                pass
            else:
                return self.merger  # the worker's pool and live model are model A's
        pool = pool_for_recipe(recipe, device=self.device, dtype=self.dtype)
        module = load_causal_lm(str(pool.reference_dir), device=self.device, dtype=self.dtype)
        return InPlaceMerger(pool, module)
