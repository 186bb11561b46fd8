"""Exact k-th selection over large tensors, and TIES' whole-model trim thresholds.

- :func:`kth_largest` / :func:`kth_largest_count`: the k-th largest entry of a flat tensor (and
  how many entries reach it), bracketed by a strided sample so that the exact selection runs only
  inside the bracket (about half the cost of ``torch.kthvalue`` on 16 M entries);
- :func:`top_k_mask_`: the 0/1 mask of the k largest entries, ties at the threshold going to
  earlier positions (exactly k survive);
- :func:`global_trim_thresholds`: per model, the magnitude that keeps the top ``density`` fraction
  of its whole flattened task vector (``options.ties_scope: model``, the TIES paper's scope).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from evomerge.merge.methods.workspace import Workspace, workspace

_SAMPLE = 1 << 15  # sample size used to bracket a k-th value before the exact selection


def kth_largest(values: torch.Tensor, k: int, ws: Workspace | None = None) -> torch.Tensor:
    """The ``k``-th largest entry of a flat tensor (``1 <= k <= n``), exactly."""
    return kth_largest_count(values, k, ws)[0]


def kth_largest_count(values: torch.Tensor, k: int, ws: Workspace | None = None) -> tuple[torch.Tensor, int | None]:
    """(k-th largest entry, how many entries are >= it, or None when not known cheaply).

    ``torch.kthvalue`` over tens of millions of entries costs ~20 memcpys; instead a strided
    sample brackets the answer, one pass counts what lies below the bracket and the exact
    selection runs only inside it. Falls back to the full selection if the bracket missed.
    """
    n = values.numel()
    rank = n - k + 1  # ascending, 1-based
    if n <= 8 * _SAMPLE:
        return torch.kthvalue(values, rank).values, None
    ws = ws or workspace()
    stride = n // _SAMPLE
    sample = values[::stride].sort().values
    m = sample.numel()
    pos = rank / n * m
    margin = 3.0 * math.sqrt(m) + 2.0  # ≥ 6 binomial standard deviations of the sample rank
    lo = sample[max(0, int(pos - margin))]
    hi = sample[min(m - 1, int(math.ceil(pos + margin)))]
    in_band = ws.like("kth_a", values, torch.bool)
    upper = ws.like("kth_b", values, torch.bool)
    torch.lt(values, lo, out=in_band)
    below = int(torch.count_nonzero(in_band))
    torch.ge(values, lo, out=in_band)
    torch.le(values, hi, out=upper)
    in_band.logical_and_(upper)
    band = values[in_band]
    if below < rank <= below + band.numel():
        threshold = torch.kthvalue(band, rank - below).values
        above_band = n - below - band.numel()
        return threshold, above_band + int(torch.count_nonzero(band >= threshold))
    return torch.kthvalue(values, rank).values, None


def top_k_mask_(magnitudes: torch.Tensor, k: int, ws: Workspace | None = None) -> torch.Tensor:
    """Turn ``magnitudes`` (ours, float, >= 0) in place into the 0/1 mask of its ``k`` largest
    entries; ties at the threshold go to earlier positions, so exactly ``k`` entries are kept
    (a zero threshold needs no tie-break: the entries it would drop are zeros of τ anyway)."""
    flat = magnitudes.view(-1)
    n = flat.numel()
    if k >= n:
        return magnitudes.fill_(1.0)
    if k <= 0:
        return magnitudes.zero_()
    ws = ws or workspace()
    threshold, at_least = kth_largest_count(flat, k, ws)
    if at_least is None:
        at_least = int(torch.count_nonzero(flat >= threshold))
    equal = None
    if at_least > k and float(threshold) > 0.0:
        equal_mask = ws.like("topk_eq", flat, torch.bool)
        torch.eq(flat, threshold, out=equal_mask)
        equal = torch.nonzero(equal_mask).view(-1)
    flat.ge_(threshold)
    if equal is not None:
        surplus = at_least - k
        flat[equal[equal.numel() - surplus :]] = 0.0
    return magnitudes


def global_trim_thresholds(
    deltas_by_model: Sequence[Iterable[torch.Tensor]], densities: Sequence[float], bins: int = 1 << 16
) -> list[float]:
    """Per model, the magnitude ``h`` such that keeping ``|τ| >= h`` over the whole model keeps
    ``int(density · N)`` entries (the TIES paper trims the flattened model, not each tensor).

    Two streaming passes over each model's task vectors (an iterable may be a generator, so it
    is materialised into a list of tensors it already holds, no copies): a histogram of
    ``|τ|`` on ``[0, max]`` locates the bin holding the threshold, then the exact value is
    selected among the entries of that bin. Memory: one bin's entries, not the model.
    The engine passes ``thresholds[i]`` as ``model_params[i]['_threshold']``
    (:func:`evomerge.merge.params.resolve` does it when given ``thresholds=``; the engine's
    :class:`~evomerge.merge.cache.TrimThresholds` keeps them per (expert, density)).
    """
    out: list[float] = []
    for deltas, density in zip(deltas_by_model, densities):
        tensors = list(deltas)
        total = sum(t.numel() for t in tensors)
        k = int(density * total)
        if k >= total or not tensors:
            out.append(0.0)
            continue
        if k <= 0:
            out.append(math.inf)
            continue
        top = max(float(a.max()) for a in _abs_batches(tensors))
        if top == 0.0:
            out.append(0.0)
            continue
        counts = torch.zeros(bins, dtype=torch.float64)
        for a in _abs_batches(tensors):
            counts += torch.histc(a, bins=bins, min=0.0, max=top).double().cpu()
        # walk bins from the top until k entries are covered
        from_top = torch.flip(torch.cumsum(torch.flip(counts, [0]), 0), [0])
        b = int(torch.nonzero(from_top >= k).max())
        above = int(from_top[b + 1]) if b + 1 < bins else 0
        width = top / bins
        lo = b * width
        hi = (b + 1) * width if b + 1 < bins else math.inf
        in_bin = torch.cat([a[(a >= lo) & (a < hi)].cpu() for a in _abs_batches(tensors)])
        need = k - above
        if need < 1 or need > in_bin.numel():  # histc's edge rounding: fall back to an exact select
            everything = torch.cat([a.cpu() for a in _abs_batches(tensors)])
            out.append(float(kth_largest(everything, k)))
            continue
        out.append(float(kth_largest(in_bin, need)))
    return out


def _abs_batches(tensors: Sequence[torch.Tensor], min_batch: int = 1 << 20) -> Iterable[torch.Tensor]:
    """Flat float32 ``|τ|`` of the tensors, small ones concatenated into batches of at least
    ``min_batch`` entries: a 65536-bin ``histc`` costs the same on 500 entries as on 500,000, and
    a model has hundreds of small tensors (norms, biases)."""
    pending: list[torch.Tensor] = []
    count = 0
    for t in tensors:
        if t.numel() >= min_batch:
            yield t.reshape(-1).abs().float()
            continue
        pending.append(t.reshape(-1))
        count += t.numel()
        if count >= min_batch:
            yield torch.cat(pending).abs().float()
            pending, count = [], 0
    if pending:
        yield torch.cat(pending).abs().float()
