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
``magnitude``     (expert, tensor): stable argsort of |τ|       4 B / entry (+ 4 B per 256 entries)
                  — TIES, Breadcrumbs (any density = lookup)
``ranks``         (expert, tensor): DELLA's within-row rank     2 B / entry (4 B if rows > 32767)
``uniforms``      (seed, tensor, block j): the j-th block of    4 B / entry per expert that draws
                  ``n`` draws of ``tensor_generator(seed, …)``  (float32 pools)
================  ===========================================  ===================================

So a TIES search holds one more int32 copy of the task vectors, a DARE search one float32 copy per
expert, DELLA both uniforms and int16 ranks. Entries are built on first use (the first candidate
pays: a sort per (expert, tensor), a draw per block) and reused by every later candidate.

Uniforms are stored as float32 (the pool dtype), not quantised: ``u`` has 24 significant bits, so
a uint16/uint8 table would change which entries ``u < d`` keeps for some densities and break the
equality with a merge that draws them afresh (materialize, another process).

One seed per tensor is kept: a recipe with another ``seed`` replaces that tensor's blocks
(a search uses one seed; a changed seed must never reuse the old draws). ``max_bytes`` caps the
total: what does not fit is computed for the call and dropped, with the same result.
Not thread-safe (like the pool's caches): one merging thread per pool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from evomerge.merge.methods.fused import Cut
from evomerge.merge.methods.registry import tensor_generator
from evomerge.merge.methods.selection import MagnitudeIndex, TensorCache, cut_from_scratch, row_ranks


@dataclass
class _Stream:
    """The first ``len(blocks)`` blocks of one tensor's uniform stream and the generator state after them."""

    seed: int
    n: int
    dtype: torch.dtype
    device: torch.device
    state: torch.Tensor
    blocks: list[torch.Tensor] = field(default_factory=list)


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
    """Per-pool cache of sparsification state; hands out one :class:`TensorCache` per tensor."""

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = max_bytes
        self._magnitude: dict[tuple[str, str], MagnitudeIndex] = {}
        self._ranks: dict[tuple[str, str], torch.Tensor] = {}
        self._streams: dict[str, _Stream] = {}
        self.builds = {"magnitude": 0, "ranks": 0, "uniforms": 0}  # entries computed, kept or not

    # --- accounting ------------------------------------------------------------------------------
    def usage(self) -> dict[str, int]:
        """Bytes held, by kind."""
        return {
            "magnitude": sum(ix.nbytes for ix in self._magnitude.values()),
            "ranks": sum(r.numel() * r.element_size() for r in self._ranks.values()),
            "uniforms": sum(b.numel() * b.element_size() for s in self._streams.values() for b in s.blocks),
        }

    def nbytes(self) -> int:
        return sum(self.usage().values())

    def _fits(self, extra: int) -> bool:
        return self.max_bytes is None or self.nbytes() + extra <= self.max_bytes

    def clear(self) -> None:
        self._magnitude.clear()
        self._ranks.clear()
        self._streams.clear()

    # --- entries ---------------------------------------------------------------------------------
    def magnitude_index(self, expert: str, name: str, tau: torch.Tensor) -> MagnitudeIndex | None:
        key = (expert, name)
        index = self._magnitude.get(key)
        if index is None:
            n = tau.numel()
            if not self._fits(4 * n + 4 * (n // 256 + 1)):
                return None
            index = MagnitudeIndex(tau)
            self.builds["magnitude"] += 1
            self._magnitude[key] = index
        return index

    def ranks(self, expert: str, name: str, tau: torch.Tensor) -> torch.Tensor:
        key = (expert, name)
        ranks = self._ranks.get(key)
        if ranks is None:
            ranks = row_ranks(tau)
            self.builds["ranks"] += 1
            if self._fits(ranks.numel() * ranks.element_size()):
                self._ranks[key] = ranks
        return ranks

    def uniforms(self, name: str, seed: int, j: int, n: int, dtype: torch.dtype, device) -> torch.Tensor:
        """Block ``j`` of ``tensor_generator(seed, name, device)``'s stream of ``n``-entry blocks."""
        device = torch.device(device)
        stream = self._streams.get(name)
        if stream is None or (stream.seed, stream.n, stream.dtype, stream.device) != (seed, n, dtype, device):
            # another seed (or layout) for this tensor: the old draws must not be reused
            stream = _Stream(seed, n, dtype, device, tensor_generator(seed, name, device).get_state())
            self._streams[name] = stream
        if j < len(stream.blocks):
            return stream.blocks[j]
        generator = torch.Generator(device=device)
        generator.set_state(stream.state)
        keep = True
        for _ in range(len(stream.blocks), j + 1):
            block = torch.empty(n, dtype=dtype, device=device).uniform_(generator=generator)
            self.builds["uniforms"] += 1
            keep = keep and self._fits(block.numel() * block.element_size())
            if keep:  # blocks are kept as a prefix of the stream, so the stored state stays valid
                stream.blocks.append(block)
                stream.state = generator.get_state()
        return block

    def view(self, name: str, experts: list[str], seed: int) -> SearchTensorCache:
        return SearchTensorCache(self, name, experts, seed)


class SearchTensorCache(TensorCache):
    """The search cache seen by a method for one tensor (experts by recipe position)."""

    def __init__(self, cache: SearchCache, name: str, experts: list[str], seed: int):
        self.cache, self.name, self.experts, self.seed = cache, name, experts, seed

    def cut(self, i: int, tau: torch.Tensor, k: int) -> Cut:
        if k >= tau.numel():
            return Cut.everything()
        if k <= 0:
            return Cut.nothing()
        index = self.cache.magnitude_index(self.experts[i], self.name, tau)
        return index.cut(tau, k) if index is not None else cut_from_scratch(tau, k)

    def ranks(self, i: int, tau: torch.Tensor) -> torch.Tensor:
        return self.cache.ranks(self.experts[i], self.name, tau)

    def uniforms(self, j: int, n: int, dtype: torch.dtype, device) -> torch.Tensor:
        return self.cache.uniforms(self.name, self.seed, j, n, dtype, device)


class MergeCache:
    """Everything the engine keeps for one pool across merges (see the module docstring).

    ``search``: keep the sparsifiers' state (:class:`SearchCache`; results are bit-identical
    without it); ``search_bytes`` caps that state's memory.
    """

    def __init__(self, *, search: bool = True, search_bytes: int | None = None):
        self.thresholds = TrimThresholds()
        self.search: SearchCache | None = SearchCache(search_bytes) if search else None

    def nbytes(self) -> int:
        return self.search.nbytes() if self.search is not None else 0

    def clear(self) -> None:
        self.thresholds.clear()
        if self.search is not None:
            self.search.clear()
