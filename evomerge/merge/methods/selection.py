"""What a sparsifier needs to know before the fused pass, computed from scratch or from a cache.

In a search the task vectors are fixed and only the recipe (densities, weights) changes, so the
recipe-independent part of every sparsifier can be computed once per (expert, tensor):

- :class:`MagnitudeIndex` — the stable descending argsort of ``|τ|`` (int32) and every
  ``_TABLE_STRIDE``-th sorted magnitude. The top-``k`` cut for any density is then a lookup:
  ``h = |τ|[order[k−1]]``; the number of entries ``≥ h`` comes from the table plus one gather of
  ``_TABLE_STRIDE`` entries; the entries equal to ``h`` beyond the ``k``-th are exactly
  ``order[k : count]`` (a stable sort keeps equal magnitudes in position order, and ties go to
  earlier positions). Without an index the same :class:`~evomerge.merge.methods.fused.Cut` comes from
  an exact selection (:func:`cut_from_scratch`); both are the unique top-``k`` set, so the merges agree
  bit for bit.
- :func:`row_ranks` — DELLA's within-row magnitude rank of every entry (int16 when rows have at
  most 32767 entries).
- the uniforms of a randomized method: per ``(seed, tensor)`` the generator of
  :func:`~evomerge.merge.methods.registry.tensor_generator` is one stream, and the experts that draw
  (``0 < density < 1``) take consecutive blocks of ``n`` draws from it in recipe order. Block ``j``
  therefore depends on ``(seed, tensor, j)`` only — not on the densities — and a cache of blocks
  serves every candidate ("common random numbers": candidates differ only by their recipes, never
  by their luck, which also makes their fitness comparisons less noisy).

A cache is any object with the :class:`TensorCache` methods, passed to a method as
``params['_cache']`` (the engine's :class:`~evomerge.merge.cache.SearchCache` hands one out per
tensor). Without one, :class:`ScratchCache` computes everything for this call only.
"""

from __future__ import annotations

import torch

from evomerge.merge.methods import fused
from evomerge.merge.methods.fused import Cut
from evomerge.merge.methods.thresholds import kth_largest_count
from evomerge.merge.methods.workspace import work_dtype, workspace

_TABLE_STRIDE = 256


class MagnitudeIndex:
    """Sorted magnitudes of one task vector for O(1) top-``k`` cuts; see the module docstring.
    Memory: 4 B per entry (``order``) + 4 B per ``_TABLE_STRIDE`` entries (``table``)."""

    def __init__(self, tau: torch.Tensor):
        flat = tau.reshape(-1)
        self.n = n = flat.numel()
        magnitudes = flat.abs().to(work_dtype(flat))
        if magnitudes.dtype == torch.float32 and n < 2**32:
            # One int64 key per entry, (descending magnitude, ascending position): the bits of a
            # non-negative float32 order like the float, and unique keys need no stable sort
            # (twice as fast as torch.sort(stable=True) on floats).
            key = magnitudes.view(torch.int32).to(torch.int64).neg_().add_(0x7FFFFFFF).bitwise_left_shift_(32)
            key.bitwise_or_(torch.arange(n, dtype=torch.int64, device=flat.device))
            key = torch.sort(key).values.bitwise_and_(0xFFFFFFFF)
            order = key.to(torch.int32) if n < 2**31 else key
            del key
        else:
            order = torch.sort(magnitudes, descending=True, stable=True).indices
            order = order.to(torch.int32) if n < 2**31 else order
        self.order = order
        # table[j] = −(magnitude of rank j·stride): ascending, for searchsorted
        self.table = magnitudes[order[::_TABLE_STRIDE].long()].neg_().contiguous()

    @property
    def nbytes(self) -> int:
        return self.order.numel() * self.order.element_size() + self.table.numel() * self.table.element_size()

    def cut(self, tau: torch.Tensor, k: int) -> Cut:
        """The top-``k`` cut of ``|tau|`` (``tau`` the tensor the index was built from)."""
        n = self.n
        if k >= n:
            return Cut.everything()
        if k <= 0:
            return Cut.nothing()
        flat = tau.reshape(-1)
        threshold_t = flat[int(self.order[k - 1])].abs().to(self.table.dtype)
        threshold = float(threshold_t)
        # ranks with magnitude ≥ h form a prefix [0, count); the table brackets its end
        c = int(torch.searchsorted(self.table, threshold_t.neg().view(1), right=True))  # table entries ≥ h
        start = (c - 1) * _TABLE_STRIDE + 1
        stop = min(c * _TABLE_STRIDE, n)
        if stop > start:
            block = flat[self.order[start:stop].long()].abs()
            count = start + int(torch.count_nonzero(block >= threshold_t))
        else:
            count = start
        drop = None
        if count > k and threshold > 0.0:
            drop = self.order[k:count].long()  # equal magnitudes, ascending positions
        return Cut("threshold", threshold, drop)


def cut_from_scratch(tau: torch.Tensor, k: int, scratch: torch.Tensor | None = None) -> Cut:
    """The top-``k`` cut of ``|tau|`` by exact selection (one call, nothing kept)."""
    flat = tau.reshape(-1)
    n = flat.numel()
    if k >= n:
        return Cut.everything()
    if k <= 0:
        return Cut.nothing()
    ws = workspace()
    magnitudes = scratch if scratch is not None else ws.get("cut_abs", (n,), work_dtype(flat), flat.device)
    fused.abs_into(flat, magnitudes)
    threshold_t, at_least = kth_largest_count(magnitudes, k, ws)
    if at_least is None:
        at_least = int(torch.count_nonzero(magnitudes >= threshold_t))
    threshold = float(threshold_t)
    drop = None
    if at_least > k and threshold > 0.0:
        equal = torch.nonzero(magnitudes == threshold_t).view(-1)
        drop = equal[equal.numel() - (at_least - k) :]
    return Cut("threshold", threshold, drop)


def row_ranks(tau: torch.Tensor) -> torch.Tensor:
    """Flat tensor of each entry's ascending-magnitude rank within its row (dim 1; a vector is one
    row), ties by position — the order DELLA's reference scatters its probabilities by."""
    rows = tau.unsqueeze(0) if tau.dim() < 2 else tau
    width = rows.shape[1]
    order = torch.sort(rows.abs(), dim=1, stable=True).indices
    dtype = torch.int16 if width <= 32767 else torch.int32
    shape = [1] * rows.dim()
    shape[1] = width
    positions = torch.arange(width, device=tau.device).view(shape).expand(rows.shape)
    ranks = torch.empty(rows.shape, dtype=torch.int64, device=tau.device)
    ranks.scatter_(1, order, positions)
    return ranks.reshape(-1).to(dtype)


def della_ramp(density: float, epsilon: float, width: int, dtype: torch.dtype, device) -> torch.Tensor:
    """Keep probability by rank: ``linspace(d − ε, d + ε, width)`` (``d`` for one-entry rows)."""
    if width > 1:
        return torch.linspace(density - epsilon, density + epsilon, width, dtype=dtype, device=device)
    return torch.full((1,), density, dtype=dtype, device=device)


class TensorCache:
    """What the fused methods ask a cache for, for one tensor (expert positions in recipe order).

    Implementations: :class:`ScratchCache` (this call only) and the engine's search cache.
    """

    def cut(self, i: int, tau: torch.Tensor, k: int) -> Cut:
        raise NotImplementedError

    def ranks(self, i: int, tau: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def uniforms(self, j: int, n: int, dtype: torch.dtype, device) -> torch.Tensor:
        """Block ``j`` (0-based) of ``n`` uniforms of this tensor's stream."""
        raise NotImplementedError


class ScratchCache(TensorCache):
    """No cache: exact selection per cut, a sort per DELLA rank, and the blocks drawn in order from
    ``generator`` (the caller's ``tensor_generator(seed, name)``), each once."""

    def __init__(self, generator: torch.Generator | None):
        self.generator = generator
        self._drawn = 0

    def cut(self, i, tau, k):
        return cut_from_scratch(tau, k)

    def ranks(self, i, tau):
        return row_ranks(tau)

    def uniforms(self, j, n, dtype, device):
        if j != self._drawn:  # blocks are asked for in order; a bug otherwise
            raise RuntimeError(f"uniform block {j} requested after {self._drawn} blocks")
        self._drawn += 1
        return workspace().get(("uniforms", j), (n,), dtype, device).uniform_(generator=self.generator)
