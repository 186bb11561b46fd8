"""What the merge engine derives from a pool's weights and keeps across merges.

A search applies hundreds of recipes to one fixed pool: the task vectors never change, only the
densities, weights and ``lambda`` do. :class:`MergeCache` holds, for one pool,

- :class:`TrimThresholds`: TIES' whole-model magnitude threshold per (expert, density)
  (``options.ties_scope: model``; two streaming passes over the model to compute, one float to keep);
- :class:`SearchCache`: the recipe-independent state of the sparsifiers.

:class:`~evomerge.merge.apply.InPlaceMerger` owns one (a search's merges share it); a one-shot
merge (materialize) builds none. The pool (:mod:`evomerge.pool`) holds only models on disk and the
task vectors.

What a sparsifier needs that depends on the task vectors alone (see
:mod:`evomerge.merge.methods.selection` for the math):

================  ===========================================  ===================================
kind              kept per                                      memory
================  ===========================================  ===================================
``histogram``     (expert, tensor): counts of |τ|'s 15-bit      ≤ 256 KB per tensor (its non-empty
                  patterns — TIES, Breadcrumbs (any density:    range: a few KB), built in one pass
                  a lookup, exact for bf16/fp16)
``window``        (expert, tensor), float32 only: the entries   8 B per entry inside (a few % of
                  near the last threshold, sorted               the tensor); rebuilt when a
                                                                threshold leaves it
``ranks``         (expert, tensor): DELLA's within-row rank     2 B / entry (4 B if rows > 32767)
``l1_table``      (expert, tensor, block key), CPU: DARE's      512 KB (65537 float64)
                  masked L1 norm for every density
``l1``            (expert, tensor): ‖τ‖₁                        one float
================  ===========================================  ===================================

So a TIES search keeps no per-entry state at all in bf16, and DARE none at all: its uniforms are a
function of their positions, computed chunk by chunk inside the merge
(:mod:`evomerge.merge.methods.draws`).

``max_bytes`` caps the total and ``fits(extra_bytes)`` (the placement's guard on the memory actually free) is asked before
each new entry: what does not fit is computed for the call and dropped, with the same result — the
cache is never the reason a run runs out of memory.
Not thread-safe (like the pool's caches): one merging thread per pool.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from evomerge.merge.methods import kernels
from evomerge.merge.methods.selection import (
    MagnitudeHistogram,
    TensorCache,
    Window,
    dare_l1_table,
    row_ranks,
    top_k_cut,
)
from evomerge.merge.methods.selectors import Cut

_WINDOWS = 2  # float32 windows kept per (expert, tensor)


class TrimThresholds:
    """TIES' whole-model trim threshold per (expert id, density), computed once."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, float], float] = {}

    def get(self, expert: str, density: float, compute: Callable[[], float]) -> float:
        key = (expert, float(density))
        value = self._values.get(key)
        if value is None:
            value = self._values[key] = float(compute())
        return value

    def items(self) -> list[tuple[tuple[str, float], float]]:
        """((expert, density), threshold) in the order they were computed."""
        return list(self._values.items())

    def clear(self) -> None:
        self._values.clear()


class SearchCache:
    """Per-pool cache of sparsification state; hands out one :class:`TensorCache` per tensor.

    ``max_bytes``: cap on what it holds (None: none); ``fits(extra_bytes) -> bool``: asked before
    keeping a new entry (None: always)."""

    def __init__(
        self,
        max_bytes: int | None = None,
        *,
        fits: Callable[[int], bool] | None = None,
    ):
        self.max_bytes = max_bytes
        self._guard = fits
        self._histograms: dict[tuple[str, str], MagnitudeHistogram] = {}
        self._windows: dict[tuple[str, str], list[Window]] = {}  # most recent last
        self._ranks: dict[tuple[str, str], torch.Tensor] = {}
        self._l1: dict[tuple[str, str], float] = {}
        self._tables: dict[tuple[str, str, int], object] = {}  # DARE's L1 tables (numpy, 512 KB)
        self.builds = {"histogram": 0, "window": 0, "ranks": 0, "l1_table": 0}  # entries computed, kept or not

    # --- accounting ------------------------------------------------------------------------------
    def usage(self) -> dict[str, int]:
        """Bytes held, by kind."""
        return {
            "histogram": sum(h.nbytes for h in self._histograms.values()),
            "window": sum(w.nbytes for ws in self._windows.values() for w in ws),
            "ranks": sum(r.numel() * r.element_size() for r in self._ranks.values()),
            "l1_table": sum(t.nbytes for t in self._tables.values()),
        }

    def nbytes(self) -> int:
        return sum(self.usage().values())

    def _fits(self, extra: int) -> bool:
        if self.max_bytes is not None and self.nbytes() + extra > self.max_bytes:
            return False
        return self._guard is None or self._guard(extra)

    def clear(self) -> None:
        self._histograms.clear()
        self._windows.clear()
        self._ranks.clear()
        self._l1.clear()
        self._tables.clear()

    # --- entries ---------------------------------------------------------------------------------
    def histogram(self, expert: str, name: str, flat: torch.Tensor) -> MagnitudeHistogram:
        key = (expert, name)
        hist = self._histograms.get(key)
        if hist is None:
            hist = MagnitudeHistogram(flat)
            self.builds["histogram"] += 1
            if self._fits(hist.nbytes):
                self._histograms[key] = hist
        return hist

    def window(self, expert: str, name: str, hist: MagnitudeHistogram, flat: torch.Tensor, v: int) -> Window:
        """A float32 window of ``(expert, name)`` covering coarse bin ``v``: one of the last
        ``_WINDOWS`` kept (Breadcrumbs cuts twice per tensor), else a new one."""
        kept = self._windows.setdefault((expert, name), [])
        for window in kept:
            if window.covers(v):
                kept.remove(window)
                kept.append(window)  # the most recently used last
                return window
        if len(kept) >= _WINDOWS:
            kept.pop(0)
        window = Window(hist, flat, v)
        self.builds["window"] += 1
        if self._fits(window.nbytes):
            kept.append(window)
        return window

    def ranks(self, expert: str, name: str, tau: torch.Tensor) -> torch.Tensor:
        key = (expert, name)
        ranks = self._ranks.get(key)
        if ranks is None:
            ranks = row_ranks(tau)
            self.builds["ranks"] += 1
            if self._fits(ranks.numel() * ranks.element_size()):
                self._ranks[key] = ranks
        return ranks

    def l1_norm(self, expert: str, name: str, tau: torch.Tensor) -> float:
        key = (expert, name)
        value = self._l1.get(key)
        if value is None:
            value = self._l1[key] = kernels.l1_norm(tau)
        return value

    def l1_table(self, expert: str, name: str, tau: torch.Tensor, block_key: int):
        key = (expert, name, block_key)
        table = self._tables.get(key)
        if table is None:
            table = dare_l1_table(tau, block_key)
            self.builds["l1_table"] += 1
            if self._fits(table.nbytes):
                self._tables[key] = table
        return table

    def view(self, name: str, experts: list[str]):
        """The cache seen by a method for tensor ``name``."""
        return SearchTensorCache(self, name, experts)


class SearchTensorCache(TensorCache):
    """The search cache seen by a method for one tensor (experts by recipe position)."""

    def __init__(self, cache: SearchCache, name: str, experts: list[str]):
        self.cache, self.name, self.experts = cache, name, experts

    def cut(self, i: int, tau: torch.Tensor, k: int) -> Cut:
        expert, cache = self.experts[i], self.cache
        return top_k_cut(
            tau,
            k,
            lambda flat: cache.histogram(expert, self.name, flat),
            lambda hist, flat, v: cache.window(expert, self.name, hist, flat, v),
        )

    def ranks(self, i: int, tau: torch.Tensor) -> torch.Tensor:
        return self.cache.ranks(self.experts[i], self.name, tau)

    def l1_norm(self, i: int, tau: torch.Tensor) -> float:
        return self.cache.l1_norm(self.experts[i], self.name, tau)

    def l1_table(self, i: int, tau: torch.Tensor, key: int):
        return self.cache.l1_table(self.experts[i], self.name, tau, key)


class MergeCache:
    """Everything the engine keeps for one pool across merges (see the module docstring).

    ``search``: keep the sparsifiers' state (:class:`SearchCache`; results are bit-identical
    without it); ``search_bytes`` caps that state's memory, ``fits`` guards each new entry against
    the memory actually free.
    """

    def __init__(
        self,
        *,
        search: bool = True,
        search_bytes: int | None = None,
        fits: Callable[[int], bool] | None = None,
    ):
        self.thresholds = TrimThresholds()
        self.search: SearchCache | None = SearchCache(search_bytes, fits=fits) if search else None

    def nbytes(self) -> int:
        return self.search.nbytes() if self.search is not None else 0

    def clear(self) -> None:
        self.thresholds.clear()
        if self.search is not None:
            self.search.clear()
