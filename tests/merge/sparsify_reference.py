"""Reference (unfused) sparsifiers and TIES combination: the test oracle of the fused engine path.

The engine merges the task-arithmetic family with :mod:`evomerge.merge.methods.fused` (one
cache-blocked pass, selectors from :mod:`evomerge.merge.methods.selection`); these functions do the
same the textbook way — sparsify each whole tensor, then combine — and the tests assert that both
agree bit for bit (tests/merge/test_cache.py). Import as ``import sparsify_reference`` from a test.

Notation: ``τ`` a task vector (one tensor of ``expert - base``), ``n = τ.numel()``, ``d`` the density
(fraction of entries kept). Every sparsifier returns a :class:`Sparse` ``(mask, scale)`` so that
the sparsified vector is ``τ̂ = scale · mask ⊙ τ`` without ever materialising ``τ̂`` when the
combination does not need it (``mask`` is a float 0/1 tensor, or ``None`` for "keep all"; a
DELLA mask with the paper's rescale carries ``1/p_i`` in its entries).

- magnitude (TIES trim): keep the ``k = int(d · n)`` entries of largest ``|τ|`` (ties at the
  threshold broken by position: earlier entries first, so the result is deterministic).
- random (DARE): keep each entry with probability ``d`` (``u < d``, with ``u`` block ``j`` of the
  tensor's stream: :class:`Stream`, an independent int64 implementation of
  :mod:`evomerge.merge.methods.draws`' definition).
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
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from evomerge.merge.methods.fused import cached_l1_norm, l1_norm, rescale_factor
from evomerge.merge.methods.thresholds import top_k_mask_
from evomerge.merge.methods.workspace import work_dtype, workspace


class Stream:
    """The uniforms of one tensor's stream, block after block (``generator``: the tensor's
    ``tensor_generator``; its ``initial_seed()`` seeds the stream). Written from the definition in
    :mod:`evomerge.merge.methods.draws` with int64 words, not with the engine's int32 code."""

    def __init__(self, generator: torch.Generator | None):
        self.seed = int(generator.initial_seed()) if generator is not None else 0
        self.block = 0

    def next(self, n: int, device=None) -> torch.Tensor:
        from evomerge.merge.methods.draws import block_key

        key = block_key(self.seed, self.block)
        self.block += 1
        m = 0xFFFFFFFF
        x = (torch.arange(n, dtype=torch.int64, device=device) * 0x9E3779B9 + key) & m
        x ^= x >> 16
        x = (x * 0x7FEB352D) & m  # int64 products wrap; their low 32 bits are the word's
        x ^= x >> 15
        x = (x * 0x846CA68B) & m
        x ^= x >> 16
        return (x >> 16).double() / 65536.0


def _stream(generator) -> Stream:
    return generator if isinstance(generator, Stream) else Stream(generator)


@dataclass
class Sparse:
    """``τ̂ = scale · values``; ``values`` is ``mask ⊙ τ`` in a scratch buffer, or None for
    "keep every entry" (``τ̂ = scale · τ``, and ``τ`` is not ours to write)."""

    values: torch.Tensor | None
    scale: float = 1.0


def _rescaled(tau: torch.Tensor, values: torch.Tensor) -> Sparse:
    """mergekit's L1 rescale: ``‖τ‖₁ / ‖mask ⊙ τ‖₁`` (none when either is below 1e-7). Norms as
    :func:`evomerge.merge.methods.fused.l1_norm` defines them, so the fused path agrees bit for bit."""
    return Sparse(values, rescale_factor(cached_l1_norm(tau), l1_norm(values)))


def _buffer(tau: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    return out if out is not None else torch.empty(tau.shape, dtype=work_dtype(tau), device=tau.device)


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
    u = _stream(generator).next(tau.numel(), tau.device).view(tau.shape)
    values = buf.copy_(u < density).mul_(tau)  # 1.0 where kept, then τ there
    if not rescale:
        return Sparse(values)
    if mode == "inverse_p":
        return Sparse(values, 1.0 / density)
    if tau.device.type != "cpu" or tau.numel() < 1 << 16:
        return _rescaled(tau, values)
    # on a CPU, from 65536 entries, ‖m ⊙ τ‖₁ is read from the table of |τ| per 16-bit word
    import numpy as np

    words = (u.reshape(-1).double() * 65536).long().numpy()
    table = np.zeros(65536)
    np.add.at(table, words, tau.reshape(-1).abs().double().numpy())
    below = min(65536, math.ceil(density * 65536))
    after = float(np.cumsum(table)[below - 1]) if below > 0 else 0.0
    return Sparse(values, rescale_factor(cached_l1_norm(tau), after))


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
    u = _stream(generator).next(tau.numel(), tau.device).to(dtype)  # exact: 16-bit values
    mask = buf.view(rows.shape).copy_(u.view(rows.shape)).lt_(probs)
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
    out = out if out is not None else torch.empty(base.shape, dtype=work_dtype(base), device=base.device)
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
            votes.append(ws.like(("vote", i), tau).copy_(tau).mul_(w * sp.scale))  # widened first
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
