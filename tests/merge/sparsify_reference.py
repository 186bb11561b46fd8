"""Sparsification of task vectors and the sign-elected (TIES) mean, shared by the task-arithmetic family.

Notation: ``τ`` a task vector (one tensor of ``expert - base``), ``n = τ.numel()``, ``d`` the density
(fraction of entries kept). Every sparsifier returns a :class:`Sparse` ``(mask, scale)`` so that
the sparsified vector is ``τ̂ = scale · mask ⊙ τ`` without ever materialising ``τ̂`` when the
combination does not need it (``mask`` is a float 0/1 tensor, or ``None`` for "keep all"; a
DELLA mask with the paper's rescale carries ``1/p_i`` in its entries).

- magnitude (TIES trim): keep the ``k = int(d · n)`` entries of largest ``|τ|`` (ties at the
  threshold broken by position: earlier entries first, so the result is deterministic).
- random (DARE): keep each entry with probability ``d`` (``torch.rand < d``, seeded generator).
- magnitude band (Model Breadcrumbs): with ``n_top = int(γ n)`` and ``n_bot = n − int(d n) − n_top``
  (``n_top`` reduced when ``n_bot < 0``), drop the ``n_top`` largest and the ``n_bot`` smallest.
- rank-magnitude sampling (DELLA MagPrune): within each row (``dim=1``; a vector is one row) the
  entry of magnitude rank ``r ∈ {0..m−1}`` (ascending) is kept with probability
  ``p = d − ε + 2ε · r/(m−1)``.

Rescale of the survivors when ``rescale`` is on:

- ``l1`` (mergekit, default): ``scale = ‖τ‖₁ / ‖mask ⊙ τ‖₁`` — the tensor keeps its L1 norm
  (no rescale when either norm is below 1e-7).
- ``inverse_p`` (the DARE and DELLA papers): divide each survivor by its keep probability
  (``1/d`` for DARE, ``1/p_i`` for DELLA), which makes ``E[τ̂] = τ`` exactly.

Sign election and disjoint mean (TIES), with ``v_t = w_t τ̂_t``:
``γ = +1 where Σ_t v_t ≥ 0 else −1`` (``consensus: sum``; ``count`` uses ``Σ_t sign(v_t)``),
``agree_t = [sign(v_t) = γ]``, ``mixed = Σ_t agree_t v_t`` and, when normalising, divided by
``Σ_t agree_t w_t`` (1 where that is 0). Without election: ``mixed = Σ_t v_t``, normalised by
``Σ_t w_t`` (1 where ``|Σ w| < 1e-8``). The merge is ``θ_0 + λ · mixed``.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from evomerge.merge.methods.fused import l1_norm, rescale_factor

_SAMPLE = 1 << 15  # sample size used to bracket a k-th value before the exact selection
_MAX_SCRATCH = 1 << 27  # entries; larger tensors get fresh buffers instead of cached ones


# --------------------------------------------------------------------------- scratch buffers


class Workspace:
    """Scratch buffers reused across merges, one flat buffer per (slot, dtype, device).

    On CPU the first touch of a freshly allocated 64 MB tensor costs a page fault per 4 KiB —
    several memcpys of the same bytes — and a TIES merge needs half a dozen such temporaries
    per tensor; reusing them makes the passes run at memory speed. Buffers grow to the largest
    tensor merged (up to ``_MAX_SCRATCH`` entries). Accelerators keep their own caching
    allocator, so there the workspace just allocates.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple, torch.Tensor] = {}

    def get(self, slot: object, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        numel = math.prod(shape)
        if device.type != "cpu" or numel > _MAX_SCRATCH:
            return torch.empty(shape, dtype=dtype, device=device)
        key = (slot, dtype, device)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=dtype, device=device)
            self._buffers[key] = buf
        return buf[:numel].view(shape)

    def like(self, slot: object, t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        return self.get(slot, t.shape, dtype or _work_dtype(t), t.device)

    def clear(self) -> None:
        self._buffers.clear()


_local = threading.local()


def workspace() -> Workspace:
    """This thread's workspace (merge functions on different threads never share buffers)."""
    ws = getattr(_local, "workspace", None)
    if ws is None:
        ws = _local.workspace = Workspace()
    return ws


def release_workspace() -> None:
    """Free this thread's scratch buffers (e.g. after the last merge of a run)."""
    workspace().clear()


def output_buffer(params: dict, like: torch.Tensor) -> torch.Tensor:
    """Where a method writes its result: ``params['_out']`` when the caller supplies a float
    tensor of the right shape (e.g. the live parameter's storage), else a fresh tensor."""
    out = params.get("_out")
    dtype = _work_dtype(like)
    if isinstance(out, torch.Tensor) and out.shape == like.shape and out.dtype == dtype and out.device == like.device:
        return out
    return torch.empty(like.shape, dtype=dtype, device=like.device)


@dataclass
class Sparse:
    """``τ̂ = scale · values``; ``values`` is ``mask ⊙ τ`` in a scratch buffer, or None for
    "keep every entry" (``τ̂ = scale · τ``, and ``τ`` is not ours to write)."""

    values: torch.Tensor | None
    scale: float = 1.0


# --------------------------------------------------------------------------- selection helpers


def kth_largest(values: torch.Tensor, k: int, ws: Workspace | None = None) -> torch.Tensor:
    """The ``k``-th largest entry of a flat tensor (``1 <= k <= n``), exactly."""
    return _kth_largest(values, k, ws)[0]


def _kth_largest(values: torch.Tensor, k: int, ws: Workspace | None = None) -> tuple[torch.Tensor, int | None]:
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
    threshold, at_least = _kth_largest(flat, k, ws)
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


_L1_CACHE: dict[int, tuple[weakref.ref, int, int, float]] = {}


def _l1(tau: torch.Tensor) -> float:
    """‖τ‖₁, remembered per task-vector tensor (the pool keeps them; every candidate reuses them).
    Keyed on the tensor's identity (a weak reference) and checked against its version counter
    and storage, so a tensor written in place is measured again."""
    stamp = (tau._version, tau.data_ptr())
    hit = _L1_CACHE.get(id(tau))
    if hit is not None and hit[0]() is tau and hit[1:3] == stamp:
        return hit[3]
    value = l1_norm(tau)
    if len(_L1_CACHE) > 4096:  # drop entries of tensors that are gone
        for key in [k for k, v in _L1_CACHE.items() if v[0]() is None]:
            del _L1_CACHE[key]
    _L1_CACHE[id(tau)] = (weakref.ref(tau), *stamp, value)
    return value


def _rescaled(tau: torch.Tensor, values: torch.Tensor) -> Sparse:
    """mergekit's L1 rescale: ``‖τ‖₁ / ‖mask ⊙ τ‖₁`` (none when either is below 1e-7). Norms as
    :func:`evomerge.merge.methods.fused.l1_norm` defines them, so the fused path agrees bit for bit."""
    return Sparse(values, rescale_factor(_l1(tau), l1_norm(values)))


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32


def _buffer(tau: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    return out if out is not None else torch.empty(tau.shape, dtype=_work_dtype(tau), device=tau.device)


# --------------------------------------------------------------------------- sparsifiers
# Each takes ``out``: an optional scratch tensor of τ's shape (float) that receives the values.


def magnitude(
    tau: torch.Tensor,
    density: float,
    *,
    rescale: bool = False,
    threshold: float | None = None,
    out: torch.Tensor | None = None,
) -> Sparse:
    """TIES trim: keep the top ``int(density · n)`` of ``|τ|`` (or ``|τ| >= threshold`` when a
    model-wide threshold is given: the paper's scope)."""
    if threshold is None and density >= 1:
        return Sparse(None)
    buf = _buffer(tau, out)
    torch.abs(tau, out=buf) if buf.dtype == tau.dtype else buf.copy_(tau).abs_()
    if threshold is not None:
        buf.ge_(threshold)
    else:
        top_k_mask_(buf, int(density * tau.numel()))
    values = buf.mul_(tau)
    return _rescaled(tau, values) if rescale else Sparse(values)


def random_drop(
    tau: torch.Tensor,
    density: float,
    generator: torch.Generator | None,
    *,
    rescale: bool = True,
    mode: str = "l1",
    out: torch.Tensor | None = None,
) -> Sparse:
    """DARE: keep each entry with probability ``density`` (``U[0, 1) < density``); rescale."""
    if density >= 1:
        return Sparse(None)
    buf = _buffer(tau, out)
    if density <= 0:
        return Sparse(buf.zero_())
    values = buf.uniform_(generator=generator).lt_(density).mul_(tau)  # 1.0 where kept, then τ there
    if not rescale:
        return Sparse(values)
    if mode == "inverse_p":
        return Sparse(values, 1.0 / density)
    return _rescaled(tau, values)


def magnitude_band(
    tau: torch.Tensor, density: float, gamma: float, *, rescale: bool = False, out: torch.Tensor | None = None
) -> Sparse:
    """Model Breadcrumbs: drop the largest ``int(γ n)`` outliers and the smallest entries so that
    ``int(density · n)`` remain (mergekit's counts)."""
    if density >= 1:
        return Sparse(None)
    n = tau.numel()
    target = int(density * n)
    n_top = int(gamma * n)
    n_bot = n - target - n_top
    if n_bot < 0:
        n_top += n_bot
        n_bot = 0
    mask = _buffer(tau, out)
    mask.copy_(tau).abs_()
    outliers = None
    if n_top > 0:
        outliers = top_k_mask_(workspace().like("band_top", mask).copy_(mask), n_top)
    top_k_mask_(mask, n - n_bot)
    if outliers is not None:
        mask.sub_(outliers)  # same total order, so the outliers are a subset of the kept set
    values = mask.mul_(tau)
    return _rescaled(tau, values) if rescale else Sparse(values)


def rank_sampling(
    tau: torch.Tensor,
    density: float,
    epsilon: float,
    generator: torch.Generator | None,
    *,
    rescale: bool = True,
    mode: str = "l1",
    out: torch.Tensor | None = None,
) -> Sparse:
    """DELLA MagPrune: keep probability rises linearly with the magnitude rank within each row."""
    if density >= 1:
        return Sparse(None)
    buf = _buffer(tau, out)
    if density <= 0:
        return Sparse(buf.zero_())
    dtype = buf.dtype
    rows = tau.unsqueeze(0) if tau.dim() < 2 else tau
    width = rows.shape[1]
    order = torch.sort(rows.abs(), dim=1, stable=True).indices
    if width > 1:
        ramp = torch.linspace(density - epsilon, density + epsilon, width, dtype=dtype, device=tau.device)
    else:
        ramp = torch.full((1,), density, dtype=dtype, device=tau.device)
    shape = [1] * rows.dim()
    shape[1] = width
    probs = workspace().get("della_p", rows.shape, dtype, tau.device)
    probs.scatter_(1, order, ramp.view(shape).expand(rows.shape))
    del order
    mask = buf.view(rows.shape).uniform_(generator=generator).lt_(probs)
    if rescale and mode == "inverse_p":
        mask.div_(probs)
    values = mask.view(tau.shape).mul_(tau)
    if not rescale or mode == "inverse_p":
        return Sparse(values)
    return _rescaled(tau, values)


# --------------------------------------------------------------------------- combination


def combine(
    base: torch.Tensor,
    taus: Sequence[torch.Tensor],
    sparse: Sequence[Sparse],
    weights: Sequence[float],
    *,
    consensus: str | None,
    normalize: bool,
    lam: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``θ_0 + λ · mixed`` (see the module docstring) written into ``out`` (fresh if None).
    Never writes into ``base`` or ``taus``; consumes the sparse buffers."""
    out = out if out is not None else torch.empty(base.shape, dtype=_work_dtype(base), device=base.device)
    if consensus is None:
        total = float(sum(weights))
        scale = lam / total if normalize and abs(total) >= 1e-8 else lam
        out.copy_(base)
        for tau, sp, w in zip(taus, sparse, weights):
            out.add_(tau if sp.values is None else sp.values, alpha=scale * w * sp.scale)
        return out

    ws = workspace()
    votes = []  # v_t = w_t τ̂_t, in scratch buffers
    for i, (tau, sp, w) in enumerate(zip(taus, sparse, weights)):
        if sp.values is None:
            votes.append(torch.mul(tau, w * sp.scale, out=ws.like(("vote", i), tau)))
        else:
            votes.append(sp.values.mul_(w * sp.scale))
    elected = ws.like("elected", votes[0])
    if consensus == "sum":
        elected.copy_(votes[0])
        for v in votes[1:]:
            elected.add_(v)
    elif consensus == "count":
        torch.sign(votes[0], out=elected)
        tmp = ws.like("tmp", votes[0])
        for v in votes[1:]:
            elected.add_(torch.sign(v, out=tmp))
    else:  # validated by the recipe; a bug if reached
        raise ValueError(f"unknown consensus {consensus!r}")
    sign = elected.ge_(0).mul_(2).sub_(1)  # γ = ±1, in place
    magnitude_sum = votes[0]
    divisor = ws.like("divisor", votes[0]) if normalize else None
    tmp = ws.like("tmp", votes[0]) if normalize else None
    for i, (v, w) in enumerate(zip(votes, weights)):
        agreeing = v.mul_(sign).clamp_(min=0)  # |v_t| where sign(v_t) = γ, else 0
        if divisor is not None:
            if i == 0:
                torch.sign(agreeing, out=divisor).mul_(w)
            else:
                divisor.add_(torch.sign(agreeing, out=tmp), alpha=w)
        if i > 0:
            magnitude_sum.add_(agreeing)
    if divisor is not None:
        if min(weights) >= 0:
            # divisor = 0 exactly where no expert agrees, so magnitude_sum is 0 there: 0/0 → 0
            magnitude_sum.div_(divisor).nan_to_num_(nan=0.0)
        else:  # cancelling weights: mergekit divides by 1 where the divisor is 0
            divisor.masked_fill_(divisor == 0, 1.0)
            magnitude_sum.div_(divisor)
    return torch.addcmul(base, sign, magnitude_sum, value=lam, out=out)


# --------------------------------------------------------------------------- TIES, paper scope


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
    (:func:`evomerge.merge.params.resolve` does it when given ``thresholds=``).
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
