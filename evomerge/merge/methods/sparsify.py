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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

_EPS_RESCALE = 1e-7
_SAMPLE = 1 << 15  # sample size used to bracket a k-th value before the exact selection


@dataclass
class Sparse:
    """``τ̂ = scale · values``; ``values`` is ``mask ⊙ τ`` in a buffer the sparsifier owns, or
    None for "keep every entry" (``τ̂ = scale · τ``, and ``τ`` is not ours to write)."""

    values: torch.Tensor | None
    scale: float = 1.0


# --------------------------------------------------------------------------- selection helpers


def kth_largest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th largest entry of a flat tensor (``1 <= k <= n``), exactly.

    ``torch.kthvalue`` over tens of millions of entries costs ~20 memcpys; instead a strided
    sample brackets the answer, one pass counts what lies below the bracket and the exact
    selection runs only inside it. Falls back to the full selection if the bracket missed.
    """
    n = values.numel()
    rank = n - k + 1  # ascending, 1-based
    if n <= 8 * _SAMPLE:
        return torch.kthvalue(values, rank).values
    stride = n // _SAMPLE
    sample = values[::stride].sort().values
    m = sample.numel()
    pos = rank / n * m
    margin = 3.0 * math.sqrt(m) + 2.0  # ≥ 6 binomial standard deviations of the sample rank
    lo = sample[max(0, int(pos - margin))]
    hi = sample[min(m - 1, int(math.ceil(pos + margin)))]
    below = int(torch.count_nonzero(values < lo))
    band = values[(values >= lo) & (values <= hi)]
    if below < rank <= below + band.numel():
        return torch.kthvalue(band, rank - below).values
    return torch.kthvalue(values, rank).values


def top_k_mask_(magnitudes: torch.Tensor, k: int) -> torch.Tensor:
    """Turn ``magnitudes`` (ours, float) in place into the 0/1 mask of its ``k`` largest entries;
    ties at the threshold go to earlier positions, so exactly ``k`` entries are kept."""
    flat = magnitudes.view(-1)
    n = flat.numel()
    if k >= n:
        return magnitudes.fill_(1.0)
    if k <= 0:
        return magnitudes.zero_()
    threshold = kth_largest(flat, k)
    equal = torch.nonzero(flat == threshold).view(-1)
    flat.ge_(threshold)
    if equal.numel() > 1:
        surplus = int(torch.count_nonzero(flat)) - k
        if surplus > 0:
            flat[equal[equal.numel() - surplus :]] = 0.0
    return magnitudes


def _rescaled(tau: torch.Tensor, values: torch.Tensor) -> Sparse:
    """mergekit's L1 rescale: ``‖τ‖₁ / ‖mask ⊙ τ‖₁`` (none when either is below 1e-7)."""
    before = float(torch.linalg.vector_norm(tau, ord=1, dtype=torch.float32))
    after = float(torch.linalg.vector_norm(values, ord=1))
    if before < _EPS_RESCALE or after < _EPS_RESCALE:
        return Sparse(values)
    return Sparse(values, before / after)


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32


# --------------------------------------------------------------------------- sparsifiers


def magnitude(tau: torch.Tensor, density: float, *, rescale: bool = False, threshold: float | None = None) -> Sparse:
    """TIES trim: keep the top ``int(density · n)`` of ``|τ|`` (or ``|τ| >= threshold`` when a
    model-wide threshold is given: the paper's scope)."""
    if threshold is None and density >= 1:
        return Sparse(None)
    buf = torch.abs(tau).to(_work_dtype(tau))
    if threshold is not None:
        buf.ge_(threshold)
    else:
        top_k_mask_(buf, int(density * tau.numel()))
    values = buf.mul_(tau)
    return _rescaled(tau, values) if rescale else Sparse(values)


def random_drop(
    tau: torch.Tensor, density: float, generator: torch.Generator | None, *, rescale: bool = True, mode: str = "l1"
) -> Sparse:
    """DARE: keep each entry with probability ``density``; rescale the survivors."""
    if density >= 1:
        return Sparse(None)
    if density <= 0:
        return Sparse(torch.zeros_like(tau, dtype=_work_dtype(tau)))
    buf = torch.rand(tau.shape, generator=generator, device=tau.device, dtype=_work_dtype(tau))
    values = buf.lt_(density).mul_(tau)  # in place: 1.0 where kept, then τ there
    if not rescale:
        return Sparse(values)
    if mode == "inverse_p":
        return Sparse(values, 1.0 / density)
    return _rescaled(tau, values)


def magnitude_band(tau: torch.Tensor, density: float, gamma: float, *, rescale: bool = False) -> Sparse:
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
    magnitudes = torch.abs(tau).to(_work_dtype(tau))
    outliers = top_k_mask_(magnitudes.clone(), n_top) if n_top > 0 else None
    mask = top_k_mask_(magnitudes, n - n_bot)
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
) -> Sparse:
    """DELLA MagPrune: keep probability rises linearly with the magnitude rank within each row."""
    if density >= 1:
        return Sparse(None)
    dtype = _work_dtype(tau)
    if density <= 0:
        return Sparse(torch.zeros_like(tau, dtype=dtype))
    rows = tau.unsqueeze(0) if tau.dim() < 2 else tau
    width = rows.shape[1]
    order = torch.sort(rows.abs(), dim=1, stable=True).indices
    if width > 1:
        ramp = torch.linspace(density - epsilon, density + epsilon, width, dtype=dtype, device=tau.device)
    else:
        ramp = torch.full((1,), density, dtype=dtype, device=tau.device)
    shape = [1] * rows.dim()
    shape[1] = width
    probs = torch.empty(rows.shape, dtype=dtype, device=tau.device)
    probs.scatter_(1, order, ramp.view(shape).expand(rows.shape))
    del order
    draws = torch.rand(rows.shape, generator=generator, device=tau.device, dtype=dtype)
    mask = draws.lt_(probs).view(tau.shape)
    if rescale and mode == "inverse_p":
        mask.div_(probs.view(tau.shape))
    values = mask.mul_(tau)
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
) -> torch.Tensor:
    """``θ_0 + λ · mixed`` (see the module docstring); never writes into ``base`` or ``taus``."""
    dtype = _work_dtype(base)
    if consensus is None:
        total = float(sum(weights))
        scale = lam / total if normalize and abs(total) >= 1e-8 else lam
        out = base.to(dtype, copy=True)
        for tau, sp, w in zip(taus, sparse, weights):
            out.add_(tau if sp.values is None else sp.values, alpha=scale * w * sp.scale)
        return out

    # v_t = w_t τ̂_t, in the sparsifier's buffer when there is one.
    votes = []
    for tau, sp, w in zip(taus, sparse, weights):
        if sp.values is None:
            votes.append(torch.mul(tau.to(dtype), w * sp.scale))
        else:
            votes.append(sp.values.mul_(w * sp.scale))
    if consensus == "sum":
        elected = votes[0].clone()
        for v in votes[1:]:
            elected.add_(v)
    elif consensus == "count":
        elected = torch.sign(votes[0])
        for v in votes[1:]:
            elected.add_(torch.sign(v))
    else:  # validated by the recipe; a bug if reached
        raise ValueError(f"unknown consensus {consensus!r}")
    sign = elected.ge_(0).mul_(2).sub_(1)  # γ = ±1, in place
    magnitude_sum = None
    divisor = None
    for v, w in zip(votes, weights):
        agreeing = v.mul_(sign).clamp_(min=0)  # |v_t| where sign(v_t) = γ, else 0
        if normalize:
            agree = torch.gt(agreeing, 0)
            if divisor is None:
                divisor = agree.to(dtype).mul_(w)
            else:
                divisor.add_(agree, alpha=w)
        if magnitude_sum is None:
            magnitude_sum = agreeing
        else:
            magnitude_sum.add_(agreeing)
    if divisor is not None:
        divisor.masked_fill_(divisor == 0, 1.0)
        magnitude_sum.div_(divisor)
    return magnitude_sum.mul_(sign).mul_(lam).add_(base)


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
        top = max(float(t.abs().max()) for t in tensors)
        if top == 0.0:
            out.append(0.0)
            continue
        counts = torch.zeros(bins, dtype=torch.float64)
        for t in tensors:
            counts += torch.histc(t.abs().float().reshape(-1), bins=bins, min=0.0, max=top).double().cpu()
        # walk bins from the top until k entries are covered
        from_top = torch.flip(torch.cumsum(torch.flip(counts, [0]), 0), [0])
        b = int(torch.nonzero(from_top >= k).max())
        above = int(from_top[b + 1]) if b + 1 < bins else 0
        width = top / bins
        lo = b * width
        hi = (b + 1) * width if b + 1 < bins else math.inf
        in_bin = torch.cat(
            [
                (a := t.abs().float().reshape(-1))[(a >= lo) & (a < hi) if b + 1 < bins else (a >= lo)].cpu()
                for t in tensors
            ]
        )
        need = k - above
        if need < 1 or need > in_bin.numel():  # histc's edge rounding: fall back to an exact select
            everything = torch.cat([t.abs().float().reshape(-1).cpu() for t in tensors])
            out.append(float(kth_largest(everything, k)))
            continue
        out.append(float(kth_largest(in_bin, need)))
    return out
