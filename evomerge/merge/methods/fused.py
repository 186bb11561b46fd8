"""Fused, cache-blocked evaluation of the generalized task-arithmetic family.

The textbook way (the unfused reference the tests compare against, ``tests/merge/sparsify_reference.py``)
sparsifies whole tensors and then combines them: a dozen passes over every tensor, each through main
memory. Here each expert's
sparsification is described by a selector (:mod:`evomerge.merge.methods.selectors`: a magnitude
cut, a uniform-draw comparison, a rank-probability comparison — all *known before* the pass), and
the whole merge of one tensor runs
over chunks of ``chunk_size(device)`` entries: every step of the merge is done on one chunk while it
is in the CPU cache, then the next chunk. Elementwise arithmetic is unchanged, op for op, so the
result is bit-identical to the reference's ``combine`` on its sparsifiers' outputs (up to the sign
of zeros, which ``torch.equal`` and every later use ignore). The formulas: docs/merge-methods.md.

Notation: per expert t a selector gives ``τ̂_t = s_t · m_t ⊙ τ_t`` with
``m_t`` the 0/1 mask (``1/p_i`` for DELLA's paper rescale) and ``s_t`` the rescale factor.

Costs per chunk for N experts: a magnitude mask is 3 elementwise ops (``|τ|``, ``≥ h``, ``· τ``), a
DARE mask 2 (``u < d``, ``· τ``) given the cached uniforms ``u``, DELLA 3–4 (gather ``p``,
``u < p``, [``/p``], ``· τ``). mergekit's L1 rescale ``s_t = ‖τ_t‖₁ / ‖m_t ⊙ τ_t‖₁`` needs the
norm of every masked task vector before the first output entry: one extra sweep (mask + norm).

**L1 norms.** ``‖x‖₁`` is defined here, for every path, as the exactly rounded (``math.fsum``) sum
of partial sums over consecutive rows of ``_ROW`` = 1024 entries of the flattened tensor (the last
one padded with zeros). A row's partial, on a CPU: view it as 32 × 32 entries ``x[32k + l]``; sum
each lane ``l`` over ``k`` in order, then the 32 lane sums in order, all in float64 (32
independent sums vectorise; one serial sum of 1024 would not). An accelerator sums its rows in
float64 its own way. So the value does not depend on the number of threads or on how the tensor is
chunked, and the compiled CPU kernels (:mod:`evomerge.merge.methods.kernels`) compute the same
bits — a prerequisite for every path to agree bit for bit.

**Arithmetic.** Every operand is widened to float32 (exact) before any arithmetic, so a bf16 merge
rounds once, when its result is written. A weighted add ``o + α·x`` is one fused multiply-add
(torch's vectorised ``add(alpha=)``), the final ``θ_0 + λ·γ·m`` too (``addcmul``).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from evomerge.merge.methods.workspace import work_dtype, workspace

if TYPE_CHECKING:
    from evomerge.merge.methods.selectors import Selector

_CPU_CHUNK = 1 << 16  # entries; ~8 chunk-sized buffers (2–4 MB) stay in L2/L3 between the ops
_DEVICE_CHUNK = 1 << 24  # entries; bounds an accelerator's scratch to 64 MB per float32 buffer
_ROW = 1024  # entries per partial sum of an L1 norm (a multiple of every chunk size)
_EPS_RESCALE = 1e-7


def chunk_size(device: torch.device, n: int) -> int:
    """Entries per chunk: cache-sized on CPU; on accelerators 16M entries (their kernels are
    bandwidth-bound at that size already, a launch per 64 MB costs nothing, and the scratch of a
    7B model's 131M-entry embedding stays at 64 MB per buffer). A multiple of ``_ROW``."""
    return _CPU_CHUNK if device.type == "cpu" else max(min(n, _DEVICE_CHUNK), 1)


# --------------------------------------------------------------------------- L1 norm


def abs_into(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = |x|`` (``torch.abs`` refuses an output of another dtype, e.g. bf16 → float32)."""
    if x.dtype == out.dtype:
        return torch.abs(x, out=out)
    return out.copy_(x).abs_()


_LANES = 32  # _ROW = _LANES²


def _row_sums(rows: torch.Tensor) -> torch.Tensor:
    """Float64 partials of the rows of ``rows`` (``_ROW`` wide, or fewer: zero-padded), as the
    module docstring defines them; on a CPU a float64 ``cumsum`` along a dimension is that
    dimension's serial sum (``sum`` reduces pairwise)."""
    wide = rows.double()
    if rows.device.type != "cpu":
        return wide.sum(1)
    if wide.shape[1] < _ROW:
        wide = torch.nn.functional.pad(wide, (0, _ROW - wide.shape[1]))
    lanes = wide.view(-1, _LANES, _LANES).cumsum(1)[:, -1, :]  # lane l: Σ_k x[32k + l], in order
    return lanes.cumsum(1)[:, -1]


def _row_partials(x: torch.Tensor, scratch: torch.Tensor, into: list[torch.Tensor]) -> None:
    """Append the partial sums of ``|x|`` over rows of ``_ROW`` (x flat, starting at a row
    boundary of the tensor it belongs to); ``scratch`` holds ``|x|``."""
    abs_into(x, scratch)
    whole = x.numel() // _ROW * _ROW
    if whole:
        into.append(_row_sums(scratch[:whole].view(-1, _ROW)))
    if whole < x.numel():
        into.append(_row_sums(scratch[whole:].view(1, -1)))


def _fsum(partials: list[torch.Tensor]) -> float:
    if not partials:
        return 0.0
    return math.fsum(torch.cat(partials).double().tolist())


def l1_norm(x: torch.Tensor) -> float:
    """``‖x‖₁`` as defined in the module docstring (thread-count and chunking independent)."""
    flat = x.reshape(-1)
    n = flat.numel()
    step = chunk_size(flat.device, n)
    scratch = torch.empty(min(step, n), dtype=work_dtype(flat), device=flat.device)
    partials: list[torch.Tensor] = []
    for a in range(0, n, step):
        b = min(n, a + step)
        _row_partials(flat[a:b], scratch[: b - a], partials)
    return _fsum(partials)


_L1_CACHE: dict[int, tuple[weakref.ref, int, int, float]] = {}


def cached_l1_norm(tau: torch.Tensor, compute=None) -> float:
    """:func:`l1_norm` of ``tau``, remembered per tensor (the pool keeps the task vectors; every
    candidate reuses them). Keyed on the tensor's identity (a weak reference) and checked against
    its version counter and storage, so a tensor written in place is measured again. ``compute``:
    what measures it (default :func:`l1_norm`; the compiled kernels' gives the same bits)."""
    stamp = (tau._version, tau.data_ptr())
    hit = _L1_CACHE.get(id(tau))
    if hit is not None and hit[0]() is tau and hit[1:3] == stamp:
        return hit[3]
    value = (compute or l1_norm)(tau)
    if len(_L1_CACHE) > 4096:  # drop entries of tensors that are gone
        for key in [k for k, v in _L1_CACHE.items() if v[0]() is None]:
            del _L1_CACHE[key]
    _L1_CACHE[id(tau)] = (weakref.ref(tau), *stamp, value)
    return value


def rescale_factor(before: float, after: float) -> float:
    """mergekit's L1 rescale ``‖τ‖₁ / ‖m ⊙ τ‖₁``; 1 when either norm is below 1e-7."""
    if before < _EPS_RESCALE or after < _EPS_RESCALE:
        return 1.0
    return before / after


# --------------------------------------------------------------------------- the merge


def merge(
    base: torch.Tensor,
    taus: Sequence[torch.Tensor],
    selectors: Sequence[Selector],
    weights: Sequence[float],
    *,
    consensus: str | None,
    normalize: bool,
    lam: float,
    out: torch.Tensor,
    tau_l1: Sequence[float | None] | None = None,
    ws=None,
    keep_masked: bool | None = None,
) -> torch.Tensor:
    """``θ_0 + λ · mixed`` (docs/merge-methods.md) written into ``out``, chunk by chunk.

    ``out``: a float tensor of ``base``'s shape, in the work dtype or any other float dtype (a
    bf16 weight is written chunk by chunk, each chunk cast once). ``tau_l1[t]``: ``‖τ_t‖₁`` when
    known (computed with :func:`l1_norm` otherwise; only selectors with ``rescale == "l1"`` need
    it). ``keep_masked``: keep the L1 sweep's masked values in tensor-sized buffers for the merge
    sweep instead of computing them again (default: no; the same result either way). Never writes
    into ``base`` or ``taus``.
    """
    ws = ws or workspace()
    n = base.numel()
    dtype = work_dtype(base)
    device = base.device
    step = min(chunk_size(device, n), max(n, 1))
    flat_base = base.reshape(-1)
    flat_taus = [t.reshape(-1) for t in taus]
    flat_out = out.view(-1)
    N = len(taus)

    def buf(slot):
        return ws.get(("fused", slot), (step,), dtype, device)

    # An output of another dtype (a bf16 weight): each chunk is computed in the work dtype in a
    # chunk-sized buffer and cast once into its slice — the same values as a whole float32 result
    # cast afterwards, without a tensor-sized temporary.
    direct = flat_out.dtype == dtype
    staged = None if direct else buf("out")

    def out_chunk(a: int, b: int) -> torch.Tensor:
        return flat_out[a:b] if direct else staged[: b - a]

    def store(a: int, b: int, o: torch.Tensor) -> None:
        if not direct:
            flat_out[a:b].copy_(o)

    scratch = buf("abs")
    values = [buf(("v", i)) for i in range(N)]

    # mergekit's L1 rescale: the norms of the masked task vectors, one sweep before the merge; the
    # merge sweep computes the masked values again (cheaper than a tensor-sized buffer per expert).
    scales = [1.0] * N
    kept: dict[int, torch.Tensor] = {}
    l1_experts = [i for i, s in enumerate(selectors) if s.rescale == "l1" and not s.keep_all]
    if l1_experts:
        partials: dict[int, list[torch.Tensor]] = {i: [] for i in l1_experts}
        if keep_masked:
            for i in l1_experts:
                kept[i] = ws.get(("fused_l1", i), (n,), dtype, device)
        for a in range(0, n, step):
            b = min(n, a + step)
            L = b - a
            for i in l1_experts:
                into = kept[i][a:b] if i in kept else values[i][:L]
                v = selectors[i].fill(a, b, flat_taus[i][a:b], into, scratch[:L])
                _row_partials(v, scratch[:L], partials[i])
        for i in l1_experts:
            before = tau_l1[i] if tau_l1 is not None and tau_l1[i] is not None else l1_norm(taus[i])
            scales[i] = rescale_factor(before, _fsum(partials[i]))
    for i, s in enumerate(selectors):
        if isinstance(s.rescale, float) and not s.keep_all:
            scales[i] = s.rescale

    def masked(i: int, a: int, b: int) -> torch.Tensor:
        if i in kept:
            return kept[i][a:b]
        return selectors[i].fill(a, b, flat_taus[i][a:b], values[i][: b - a], scratch[: b - a])

    # Every operand is widened to the work dtype first (exact; mixed-dtype arithmetic would also
    # run several times slower on a CPU), so all arithmetic is float32 and a bf16 result is
    # rounded once, when it is stored.
    widen = buf("widen")

    def widened(x: torch.Tensor, L: int) -> torch.Tensor:
        return x if x.dtype == dtype else widen[:L].copy_(x)

    def first(base_chunk: torch.Tensor, x: torch.Tensor, alpha: float, o: torch.Tensor) -> None:
        if x.dtype != dtype:  # the operand is widened into `o`, the base into the widening buffer
            x = o.copy_(x)
        torch.add(widened(base_chunk, x.numel()), x, alpha=alpha, out=o)

    if consensus is None:
        total = float(sum(weights))
        scale = lam / total if normalize and abs(total) >= 1e-8 else lam
        alphas = [scale * w * s for w, s in zip(weights, scales)]
        for a in range(0, n, step):
            b = min(n, a + step)
            o = out_chunk(a, b)
            for i, sel in enumerate(selectors):
                x = flat_taus[i][a:b] if sel.keep_all else masked(i, a, b)
                if i == 0:
                    first(flat_base[a:b], x, alphas[0], o)
                else:
                    o.add_(widened(x, b - a), alpha=alphas[i])
            if N == 0:
                o.copy_(flat_base[a:b])
            store(a, b, o)
        return out

    if consensus not in ("sum", "count"):  # validated by the recipe; a bug if reached
        raise ValueError(f"unknown consensus {consensus!r}")
    factors = [w * s for w, s in zip(weights, scales)]
    elected_buf, divisor_buf, tmp_buf = buf("elected"), buf("divisor"), buf("tmp")
    ones = buf("ones").fill_(1.0)
    nonneg = min(weights) >= 0
    for a in range(0, n, step):
        b = min(n, a + step)
        L = b - a
        votes = []  # v_t = w_t s_t · m_t ⊙ τ_t
        for i, sel in enumerate(selectors):
            if sel.keep_all:
                votes.append(values[i][:L].copy_(flat_taus[i][a:b]).mul_(factors[i]))
            else:
                votes.append(masked(i, a, b).mul_(factors[i]))
        elected, tmp = elected_buf[:L], tmp_buf[:L]
        if consensus == "sum":
            if N > 1:
                torch.add(votes[0], votes[1], out=elected)
            else:
                elected.copy_(votes[0])
            for v in votes[2:]:
                elected.add_(v)
        else:
            torch.sign(votes[0], out=elected)
            for v in votes[1:]:
                elected.add_(torch.sign(v, out=tmp))
        # γ = ±1: +1 where Σ ≥ 0. copysign gives −1 at a −0 sum too, which happens only where every
        # vote is a zero: there the output is θ_0 whatever γ is.
        sign = torch.copysign(ones[:L], elected, out=elected)
        magnitude_sum = votes[0]
        divisor = divisor_buf[:L] if normalize else None
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
            if nonneg:
                magnitude_sum.div_(divisor).nan_to_num_(nan=0.0)
            else:
                divisor.masked_fill_(divisor == 0, 1.0)
                magnitude_sum.div_(divisor)
        o = out_chunk(a, b)
        torch.addcmul(widened(flat_base[a:b], L), sign, magnitude_sum, value=lam, out=o)
        store(a, b, o)
    return out
