"""What a sparsifier needs to know before the fused pass, computed from scratch or from a cache.

In a search the task vectors are fixed and only the recipe (densities, weights) changes, so the
recipe-independent part of every sparsifier can be computed once per (expert, tensor):

- :class:`MagnitudeHistogram` — how many entries of ``|τ|`` have each 15-bit magnitude pattern.
  A non-negative float orders like its bit pattern, so for a 2-byte float (bf16, fp16) the pattern
  *is* the value: the top-``k`` threshold ``h`` and the number of entries ``≥ h`` and ``> h`` are a
  lookup in the cumulative counts, exactly, with no per-entry state (the table is 32768 counts,
  stored over its non-empty range). For float32 the 15 bits are the top of the 31-bit pattern: the
  table names the coarse bin holding the ``k``-th value, and a :class:`Window` — the entries of the
  coarse bins around it, sorted by (pattern descending, position ascending) — gives the exact value,
  its ties and their positions (one pass to build; reused while later thresholds stay inside it).
  The cut (:class:`~evomerge.merge.methods.selectors.Cut`) keeps every entry above ``h`` and the
  first ``k − #{> h}`` entries equal to ``h`` by position (ties go to earlier positions): the
  unique top-``k`` set, the same as a stable sort's, so cached and uncached merges agree bit for bit.
- :func:`row_ranks` — DELLA's within-row magnitude rank of every entry (int16 when rows have at
  most 32767 entries).
- ``‖τ‖₁`` for mergekit's L1 rescale, and DARE's masked norms for every density
  (:func:`dare_l1_table`, on a CPU).

(A randomized method's uniforms need no cache: each is a function of its position, computed
chunk by chunk inside the merge — :mod:`evomerge.merge.methods.draws`.)

A cache is any object with the :class:`TensorCache` methods, passed to a method as
``params['_cache']`` (the engine's :class:`~evomerge.merge.cache.SearchCache` hands one out per
tensor). Without one, :class:`ScratchCache` computes everything for this call only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from evomerge.merge.methods import draws, kernels
from evomerge.merge.methods.fused import cached_l1_norm
from evomerge.merge.methods.selectors import Cut

_BINS = 1 << 15  # 15-bit magnitude patterns (the sign bit dropped)
_PASS = 1 << 24  # entries per step of a pass over a task vector (bounds its temporaries)
_WINDOW = 16  # float32: coarse bins kept on each side of the threshold's bin (±1/8 of a binade)
_PATTERN = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}


def supports(dtype: torch.dtype) -> bool:
    """Whether :class:`MagnitudeHistogram` handles task vectors of ``dtype``."""
    return dtype in _PATTERN


def _patterns(chunk: torch.Tensor) -> torch.Tensor:
    """The magnitude bit patterns of a flat chunk (``|x|``'s bits, as int16 / int32)."""
    bits = chunk.view(_PATTERN[chunk.dtype])
    return torch.bitwise_and(bits, 0x7FFF if bits.dtype == torch.int16 else 0x7FFFFFFF)


def _bincount(keys: torch.Tensor, bins: int) -> torch.Tensor:
    """Counts of ``keys`` (non-negative ints < ``bins``) as an int64 CPU tensor."""
    if keys.device.type == "cpu":  # numpy's bincount is about 2x torch's here
        return torch.from_numpy(np.bincount(keys.numpy(), minlength=bins).astype(np.int64))
    return torch.bincount(keys.int(), minlength=bins).cpu()


def _from_top(counts: torch.Tensor) -> torch.Tensor:
    """``above[v] = Σ_{u ≥ v} counts[u]``."""
    return torch.flip(torch.cumsum(torch.flip(counts, [0]), 0), [0])


class MagnitudeHistogram:
    """Counts of the 15-bit magnitude patterns of one task vector; see the module docstring.
    Memory: 8 B per bin of its non-empty range (a few KB); building it is one pass."""

    def __init__(self, tau: torch.Tensor):
        flat = tau.reshape(-1)
        self.n = flat.numel()
        self.dtype = flat.dtype
        self.exact = flat.element_size() == 2
        counts = torch.zeros(_BINS, dtype=torch.int64)
        for a in range(0, self.n, _PASS):
            keys = _patterns(flat[a : a + _PASS])
            if not self.exact:
                keys = keys.bitwise_right_shift_(16)
            counts += _bincount(keys, _BINS)
        filled = torch.nonzero(counts).view(-1)
        self.lo = int(filled[0]) if filled.numel() else 0
        hi = int(filled[-1]) if filled.numel() else 0
        self._above = _from_top(counts[self.lo : hi + 1]).contiguous()
        self._rising = -self._above.numpy()  # non-decreasing: a binary search finds a rank's bin

    @property
    def nbytes(self) -> int:
        return self._above.numel() * self._above.element_size()

    def above(self, v: int) -> int:
        """How many entries have a (coarse) pattern ``≥ v``."""
        if v <= self.lo:
            return self.n
        if v - self.lo >= self._above.numel():
            return 0
        return int(-self._rising[v - self.lo])

    def bin_of(self, k: int) -> int:
        """The (coarse) pattern of the ``k``-th largest magnitude (``1 ≤ k ≤ n``): the last bin with
        at least ``k`` entries at or above it."""
        return self.lo + int(np.searchsorted(self._rising, -k, side="right")) - 1

    def cut(self, flat: torch.Tensor, k: int, window: Window | None = None) -> Cut:
        """The top-``k`` cut of ``|flat|`` (the task vector this histogram counts); float32 takes
        the exact value from ``window`` (built here, for this call, when None or not covering)."""
        if k >= self.n:
            return Cut.everything()
        if k <= 0:
            return Cut.nothing()
        v = self.bin_of(k)
        if self.exact:
            above, strictly = self.above(v), self.above(v + 1)
            threshold = _pattern_value(v, self.dtype)
            return _cut(threshold, k - strictly, above - strictly)
        if window is None or not window.covers(v):
            window = Window(self, flat, v, 0)
        return window.cut(k)


def _pattern_value(v: int, dtype: torch.dtype) -> float:
    """The value of a non-negative 16-bit pattern ``v`` of ``dtype`` (bf16: the top half of a float32)."""
    if dtype == torch.bfloat16:
        return float(np.array([v << 16], dtype=np.uint32).view(np.float32)[0])
    return float(np.array([v], dtype=np.uint16).view(np.float16)[0])


class Window:
    """A float32 task vector's entries in the coarse bins ``[v − width, v + width]``, sorted by
    (31-bit pattern descending, position ascending); ``above`` entries lie in higher bins.
    Memory: 8 B per entry inside (a few percent of the tensor); building it is one pass."""

    def __init__(self, hist: MagnitudeHistogram, flat: torch.Tensor, v: int, width: int = _WINDOW):
        self.v0, self.v1 = max(v - width, 0), v + width
        self.above = hist.above(self.v1 + 1)
        parts = []
        for a in range(0, flat.numel(), _PASS):
            keys = _patterns(flat[a : a + _PASS]).to(torch.int64)
            coarse = keys >> 16
            inside = torch.nonzero((coarse >= self.v0) & (coarse <= self.v1)).view(-1)
            # one int64 key per entry: (descending pattern, ascending position), unique → no stable sort
            parts.append(((0x7FFFFFFF - keys[inside]) << 32) | (inside + a))
        order = torch.sort(torch.cat(parts)).values if parts else torch.empty(0, dtype=torch.int64)
        self._descending = ((order >> 32) - 0x7FFFFFFF).to(torch.int32)  # −pattern, ascending
        self.positions = (order & 0xFFFFFFFF).to(torch.int32 if flat.numel() < 2**31 else torch.int64)

    @property
    def nbytes(self) -> int:
        return self._descending.numel() * 4 + self.positions.numel() * self.positions.element_size()

    def covers(self, v: int) -> bool:
        return self.v0 <= v <= self.v1

    def cut(self, k: int) -> Cut:
        r = k - self.above  # 1-based rank inside the window
        pattern = -int(self._descending[r - 1])
        first = int(torch.searchsorted(self._descending, -pattern, right=False))
        last = int(torch.searchsorted(self._descending, -pattern, right=True))
        threshold = float(torch.tensor(pattern, dtype=torch.int32).view(torch.float32))
        kept = r - first
        cut = _cut(threshold, kept, last - first)
        if cut.splits_ties:  # the ties are the run [first, last), in ascending positions
            cut = Cut(cut.kind, cut.threshold, cut.kept, cut.tied, int(self.positions[first + kept - 1]) + 1)
        return cut


def _cut(threshold: float, kept: int, tied: int) -> Cut:
    return Cut("threshold", threshold, None if kept >= tied else kept, tied)


def cut_by_sort(tau: torch.Tensor, k: int) -> Cut:
    """The top-``k`` cut by a stable sort (task vectors of a dtype without bit patterns here)."""
    flat = tau.reshape(-1)
    n = flat.numel()
    if k >= n:
        return Cut.everything()
    if k <= 0:
        return Cut.nothing()
    magnitudes = flat.abs()
    order = torch.sort(magnitudes, descending=True, stable=True).indices
    threshold_t = magnitudes[order[k - 1]]
    above = int(torch.count_nonzero(magnitudes > threshold_t))
    tied = int(torch.count_nonzero(magnitudes == threshold_t))
    cut = _cut(float(threshold_t), k - above, tied)
    if cut.splits_ties:
        cut = Cut(cut.kind, cut.threshold, cut.kept, cut.tied, int(order[k - 1]) + 1)
    return cut


def top_k_cut(
    tau: torch.Tensor,
    k: int,
    histogram: Callable[[torch.Tensor], MagnitudeHistogram] = MagnitudeHistogram,
    window: Callable[[MagnitudeHistogram, torch.Tensor, int], Window] | None = None,
) -> Cut:
    """The top-``k`` cut of ``|tau|``: ``histogram(flat)`` gives the task vector's histogram (built
    here, or a cache's), ``window(hist, flat, v)`` a float32 window covering coarse bin ``v`` (a
    cache's; None: one built for this call)."""
    flat = tau.reshape(-1)
    if k >= flat.numel():
        return Cut.everything()
    if k <= 0:
        return Cut.nothing()
    if not supports(flat.dtype):
        return cut_by_sort(flat, k)
    hist = histogram(flat)
    if hist.exact or window is None:
        return hist.cut(flat, k)
    return hist.cut(flat, k, window(hist, flat, hist.bin_of(k)))


def cut_from_scratch(tau: torch.Tensor, k: int) -> Cut:
    """The top-``k`` cut of ``|tau|`` (one call, nothing kept)."""
    return top_k_cut(tau, k)


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


def dare_l1_table(tau: torch.Tensor, key: int) -> np.ndarray:
    """DARE's masked L1 norms for every density at once (on a CPU): ``C[b] = Σ_{u < b} H[u]`` for
    ``b = 0 … 65536``, with ``H[u]`` the sum of ``|τ_p|`` over the positions whose word is ``u``
    (:mod:`evomerge.merge.methods.draws`), each bin summed in float64 in position order and the
    bins summed in order. So ``‖m ⊙ τ‖₁ = C[keep_below(d)]`` for the block keyed ``key``: one
    pass per (expert, tensor, key), then a lookup per candidate whatever its density. Memory: 512 KB.
    The compiled kernel and this torch/numpy path add in the same order (``np.add.at`` is an
    unbuffered, in-order scatter-add), so both give the same bits."""
    flat = tau.reshape(-1)
    if kernels.available() and flat.dtype in (torch.float32, torch.bfloat16) and flat.is_contiguous():
        table = kernels._table(kernels._array(flat), np.uint64(key))
    else:
        table = np.zeros(65536, dtype=np.float64)
        step = 1 << 20
        words = torch.empty(min(step, flat.numel()), dtype=torch.int32)
        scratch = torch.empty_like(words)
        for a in range(0, flat.numel(), step):
            chunk = flat[a : a + step]
            u = draws.u16_into(key, a, words[: chunk.numel()], scratch[: chunk.numel()])
            np.add.at(table, u.numpy(), chunk.abs().double().numpy())
    cumulative = np.zeros(65537, dtype=np.float64)
    np.cumsum(table, out=cumulative[1:])
    return cumulative


class TensorCache:
    """What the fused methods ask a cache for, for one tensor (expert positions in recipe order).

    Implementations: :class:`ScratchCache` (this call only) and the engine's search cache.
    """

    def cut(self, i: int, tau: torch.Tensor, k: int) -> Cut:
        raise NotImplementedError

    def ranks(self, i: int, tau: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def l1_norm(self, i: int, tau: torch.Tensor) -> float:
        """``‖τ_i‖₁`` (:func:`~evomerge.merge.methods.fused.l1_norm`)."""
        raise NotImplementedError

    def l1_table(self, i: int, tau: torch.Tensor, key: int) -> np.ndarray:
        """:func:`dare_l1_table` of ``τ_i`` for the block keyed ``key``."""
        raise NotImplementedError


class ScratchCache(TensorCache):
    """No cache: a histogram per cut, a sort per DELLA rank."""

    def cut(self, i, tau, k):
        return cut_from_scratch(tau, k)

    def ranks(self, i, tau):
        return row_ranks(tau)

    def l1_norm(self, i, tau):
        return cached_l1_norm(tau, kernels.l1_norm)

    def l1_table(self, i, tau, key):
        return dare_l1_table(tau, key)
