"""Compiled CPU kernels of the fused merge (numba, optional: ``pip install evomerge[fast]``).

:func:`evomerge.merge.methods.fused.merge` runs every step of a tensor's merge on one chunk at a
time, but each step is still one torch call over the chunk: TIES is about 30 calls per chunk for
three experts, task arithmetic about 8, so on a CPU TIES costs 3–4× task arithmetic. Here the
whole merge of a block of ``_BLOCK`` entries runs as compiled loops over the block (widen, mask,
elect, mean, store), with no call per step, so every method costs about what reading its inputs
costs.

The kernels compute *the same bits* as the torch path, operation for operation (the tests compare
them on every method, dtype and selector kind):

- bf16 operands are widened exactly (``bits << 16``); all arithmetic is float32;
- ``o + α·x`` is a fused multiply-add (what torch's vectorised ``add(alpha=)`` computes), and so
  is the final ``θ_0 + (λγ)·m`` (``addcmul``); every other step is one IEEE operation;
- a magnitude cut keeps ``|x| > λ`` (``hardshrink``), and where it splits its ties it keeps the
  first ``kept`` entries equal to the threshold, counted in order — the torch path's rule;
- DARE's uniforms are :mod:`evomerge.merge.methods.draws`' words, computed in the loop;
- the L1 norms are the row partials of :mod:`evomerge.merge.methods.fused` (32 float64 lanes
  per row of 1024, each summed in order);
- a bf16 result is rounded to nearest even (``c10::BFloat16``'s rule).

One thread per merge; the kernels are compiled on first use (a few seconds per number of experts,
cached on disk by numba) — :func:`warm_up` compiles the common ones ahead of a search.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch

from evomerge.merge.methods import fused
from evomerge.merge.methods import selectors as sel

try:  # optional dependency
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

_BLOCK = 8192  # entries per block: the block's float32 scratch (N + 4 rows) stays in L1/L2
_ROW = 1024  # = fused._ROW (rows of the L1 partial sums)
_LANES = 32  # = fused._LANES
_SUPPORTED_IN = (torch.float32, torch.bfloat16)

# selector kinds
_KEEP, _ZERO, _MAG, _UNIFORM = 0, 1, 2, 3
# cut kinds: none (nothing kept), all, threshold
_CUT_NONE, _CUT_ALL, _CUT_THRESHOLD = 0, 1, 2


def available() -> bool:
    """Whether the compiled kernels can run (numba importable, not switched off by
    ``EVOMERGE_KERNELS=torch``)."""
    return numba is not None and os.environ.get("EVOMERGE_KERNELS", "") != "torch"


# --------------------------------------------------------------------------- selectors as arrays


def _cut_row(cut: sel.Cut | None, keep: sel._Keep | None) -> list[float]:
    """``[kind, ge, h, strict, kept]`` of one cut (``kept`` −1: no tie split)."""
    if cut is None:
        return [-1.0, 0.0, 0.0, 0.0, -1.0]
    if cut.kind == "all":
        return [_CUT_ALL, 0.0, 0.0, 0.0, -1.0]
    if cut.kind == "none":
        return [_CUT_NONE, 0.0, 0.0, 0.0, -1.0]
    kept = float(cut.kept) if keep.splits else -1.0
    return [_CUT_THRESHOLD, keep.ge, keep.h, 1.0 if keep.strict else 0.0, kept]


def _encode(selectors: Sequence[sel.Selector]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per expert ``[kind, key, below]`` (int64) and the lo / hi cut rows (float64); None when a
    selector has no kernel (DELLA's rank sampling: the torch path runs)."""
    ints, lo, hi = [], [], []
    for s in selectors:
        if isinstance(s, sel.KeepAll):
            ints.append([_KEEP, 0, 0])
            lo.append(_cut_row(None, None))
            hi.append(_cut_row(None, None))
        elif isinstance(s, sel.Zero):
            ints.append([_ZERO, 0, 0])
            lo.append(_cut_row(None, None))
            hi.append(_cut_row(None, None))
        elif isinstance(s, sel.Magnitude):
            ints.append([_MAG, 0, 0])
            lo.append(_cut_row(s.lo, s._lo))
            hi.append(_cut_row(s.hi, s._hi))
        elif isinstance(s, sel.Uniform):
            ints.append([_UNIFORM, s.key, s.below])
            lo.append(_cut_row(None, None))
            hi.append(_cut_row(None, None))
        else:
            return None
    return (
        np.asarray(ints, dtype=np.int64).reshape(-1, 3),
        np.asarray(lo, dtype=np.float64).reshape(-1, 5),
        np.asarray(hi, dtype=np.float64).reshape(-1, 5),
    )


def _array(t: torch.Tensor) -> np.ndarray:
    """A flat numpy view: float32 as is, bf16 as its uint16 words."""
    flat = t.reshape(-1)
    if flat.dtype == torch.bfloat16:
        return flat.view(torch.int16).numpy().view(np.uint16)
    return flat.numpy()


def l1_norm(tau: torch.Tensor) -> float:
    """:func:`evomerge.merge.methods.fused.l1_norm` of ``tau``, compiled where the kernels run
    (the same bits; 5–10× faster than the torch path's float64 lanes on a CPU)."""
    flat = tau.reshape(-1)
    if not (available() and flat.device.type == "cpu" and flat.dtype in _SUPPORTED_IN and flat.is_contiguous()):
        return fused.l1_norm(tau)
    ints, lo, hi = _encode([sel.KeepAll()])
    return math.fsum(_l1(_array(flat), ints[0], lo[0], hi[0]).tolist())


def warm_up(dtype: torch.dtype, experts: int, out_dtype: torch.dtype | None = None) -> None:
    """Compile (or load from numba's disk cache) the kernels a merge of ``experts`` task vectors of
    ``dtype`` into ``out_dtype`` weights will call, on a tiny input: the in-place merger runs this
    on a background thread while the checkpoints load, so a first candidate does not wait for it."""
    if not available() or dtype not in _SUPPORTED_IN or experts < 1:
        return
    out_dtype = out_dtype if out_dtype in _SUPPORTED_IN else dtype
    base = torch.zeros(8, dtype=dtype)
    taus = [torch.zeros(8, dtype=dtype) for _ in range(experts)]
    out = torch.zeros(8, dtype=out_dtype)
    keep = [sel.KeepAll()] * experts
    merge(base, taus, keep, [1.0] * experts, consensus=None, normalize=False, lam=1.0, out=out, tau_l1=None)
    l1_norm(taus[0])
    _table(_array(taus[0]), np.uint64(1))


def eligible(base: torch.Tensor, taus: Sequence[torch.Tensor], out: torch.Tensor) -> bool:
    if not available() or base.device.type != "cpu" or out.device.type != "cpu":
        return False
    tensors = [base, *taus, out]
    if any(t.dtype not in _SUPPORTED_IN or not t.is_contiguous() for t in tensors):
        return False
    return len({t.dtype for t in taus}) <= 1


# --------------------------------------------------------------------------- the merge


def merge(
    base: torch.Tensor,
    taus: Sequence[torch.Tensor],
    selectors: Sequence[sel.Selector],
    weights: Sequence[float],
    *,
    consensus: str | None,
    normalize: bool,
    lam: float,
    out: torch.Tensor,
    tau_l1: Sequence[float | None] | None,
) -> bool:
    """The fused merge by the compiled kernels; False (nothing written) when they do not apply.
    Arguments as :func:`evomerge.merge.methods.fused.merge`."""
    if not eligible(base, taus, out):
        return False
    encoded = _encode(selectors)
    if encoded is None:
        return False
    ints, lo, hi = encoded
    N = len(taus)
    n = base.numel()
    base_a, out_a = _array(base), _array(out)
    taus_a = tuple(_array(t) for t in taus)
    scales = [1.0] * N
    for i, s in enumerate(selectors):
        if s.keep_all:
            continue
        if s.rescale == "l1":
            partials = _l1(taus_a[i], ints[i], lo[i], hi[i])
            before = tau_l1[i] if tau_l1 is not None and tau_l1[i] is not None else l1_norm(taus[i])
            scales[i] = fused.rescale_factor(before, math.fsum(partials.tolist()))
        elif isinstance(s.rescale, float):
            scales[i] = s.rescale
    if consensus is None:
        total = float(sum(weights))
        scale = lam / total if normalize and abs(total) >= 1e-8 else lam
        factors = np.asarray([scale * w * s for w, s in zip(weights, scales)], dtype=np.float32)
        mode = 0
    else:
        if consensus not in ("sum", "count"):  # validated by the recipe; a bug if reached
            raise ValueError(f"unknown consensus {consensus!r}")
        factors = np.asarray([w * s for w, s in zip(weights, scales)], dtype=np.float32)
        mode = 1 if consensus == "sum" else 2
    w32 = np.asarray(list(weights), dtype=np.float32)
    nonneg = bool(min(weights) >= 0) if N else True
    if N == 0:
        _copy(base_a, out_a)
        return True
    _merge(base_a, taus_a, out_a, ints, lo, hi, factors, w32, np.float32(lam), mode, bool(normalize), nonneg, n)
    return True


# --------------------------------------------------------------------------- compiled code

if numba is not None:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic, overload

    njit = numba.njit(cache=True, nogil=True, error_model="numpy")

    @intrinsic
    def fma32(typingctx, a, b, c):
        """LLVM's ``llvm.fma.f32``: ``a·b + c`` rounded once (float32 operands)."""
        sig = types.float32(types.float32, types.float32, types.float32)

        def codegen(context, builder, signature, args):
            fn_type = ir.FunctionType(ir.FloatType(), [ir.FloatType()] * 3)
            fn = cgutils.get_or_insert_function(builder.module, fn_type, "llvm.fma.f32")
            return builder.call(fn, args)

        return sig, codegen

    @intrinsic
    def copysign32(typingctx, a, b):
        """LLVM's ``llvm.copysign.f32``: ``|a|`` with the sign of ``b`` (torch.copysign)."""
        sig = types.float32(types.float32, types.float32)

        def codegen(context, builder, signature, args):
            fn_type = ir.FunctionType(ir.FloatType(), [ir.FloatType()] * 2)
            fn = cgutils.get_or_insert_function(builder.module, fn_type, "llvm.copysign.f32")
            return builder.call(fn, args)

        return sig, codegen

    @intrinsic
    def u16_word(typingctx, position, key):
        """:mod:`evomerge.merge.methods.draws`' word at ``position`` (uint64, used mod 2³²) of the
        block keyed ``key``, in 32-bit integer arithmetic (16 lanes per AVX-512 vector)."""
        sig = types.int64(types.uint64, types.uint64)

        def codegen(context, builder, signature, args):
            i32 = ir.IntType(32)
            p = builder.trunc(args[0], i32)
            k = builder.trunc(args[1], i32)
            x = builder.add(builder.mul(p, ir.Constant(i32, 0x9E3779B9)), k)
            x = builder.xor(x, builder.lshr(x, ir.Constant(i32, 16)))
            x = builder.mul(x, ir.Constant(i32, 0x7FEB352D))
            x = builder.xor(x, builder.lshr(x, ir.Constant(i32, 15)))
            x = builder.mul(x, ir.Constant(i32, 0x846CA68B))
            return builder.zext(builder.lshr(x, ir.Constant(i32, 16)), ir.IntType(64))

        return sig, codegen

    @intrinsic
    def bits_of_f32(typingctx, v):
        """The uint32 bits of the float32 ``v`` (a bitcast)."""
        sig = types.uint32(types.float32)

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(32))

        return sig, codegen

    @intrinsic
    def f32_from_bits(typingctx, u):
        """The float32 whose bits are the uint32 ``u`` (a bitcast)."""
        sig = types.float32(types.uint32)

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return sig, codegen

    def loadf(src, j):
        """``float32(src[j])``: a float32 entry, or a bf16 word widened exactly."""

    @overload(loadf)
    def _loadf(src, j):
        if src.dtype == types.uint16:

            def bf16(src, j):
                return f32_from_bits(np.uint32(np.uint32(src[j]) << np.uint32(16)))

            return bf16

        def f32(src, j):
            return src[j]

        return f32

    # (Loops index with their own counter only: an offset index ``x[a + j]`` makes numba check
    # for negative indices and the loop no longer vectorises — 8× slower.)

    def widen_into(src, dst, L):
        """dst[:L] = float32(src[:L]) (a bf16 word becomes the top half of a float32)."""

    @overload(widen_into)
    def _widen_into(src, dst, L):
        if src.dtype == types.uint16:

            def bf16(src, dst, L):
                bits = dst.view(np.uint32)
                for j in range(L):
                    bits[j] = np.uint32(src[j]) << np.uint32(16)

            return bf16

        def f32(src, dst, L):
            for j in range(L):
                dst[j] = src[j]

        return f32

    def put(dst, j, v):
        """``dst[j] = v``, rounded to nearest even for a bf16 destination."""

    @overload(put)
    def _put(dst, j, v):
        if dst.dtype == types.uint16:

            def bf16(dst, j, v):
                u = np.uint64(bits_of_f32(v))
                r = (u + np.uint64(0x7FFF) + ((u >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
                dst[j] = np.uint16(0x7FC0) if v != v else np.uint16(r & np.uint64(0xFFFF))

            return bf16

        def f32(dst, j, v):
            dst[j] = v

        return f32

    @njit
    def axpy(x, f, prev, dst, L):
        """``dst[j] = fma(x[j], f, prev[j])`` (torch's ``add(prev, x, alpha=f)``)."""
        for j in range(L):
            put(dst, j, fma32(loadf(x, j), f, loadf(prev, j)))

    @njit
    def ta_step(x, f, b, acc, o, k, N, L):
        """Expert ``k`` of a dense sum: from the base (first), into the output (last)."""
        if k == 0 and N == 1:
            axpy(x, f, b, o, L)
        elif k == 0:
            axpy(x, f, b, acc, L)
        elif k == N - 1:
            axpy(x, f, acc, o, L)
        else:
            axpy(x, f, acc, acc, L)

    @njit
    def cut_into(src, dst, L, cut, seen):
        """``dst[j] = src[j]`` where the cut ``cut`` (a ``_cut_row``) keeps it, else 0; returns the
        ties counted so far (``seen`` before the block)."""
        zero = np.float32(0.0)
        kind = cut[0]
        if kind == 1.0:  # all
            for j in range(L):
                dst[j] = src[j]
        elif kind == 0.0:  # none
            for j in range(L):
                dst[j] = zero
        elif cut[4] < 0.0:  # no tie split: hardshrink's |x| > λ, λ = h (strict) or the float below h
            lam = np.float32(cut[2]) if cut[3] == 1.0 else np.float32(cut[1])
            for j in range(L):
                x = src[j]
                dst[j] = x if abs(x) > lam else zero
        else:  # |x| > h, and the first `kept` entries equal to h in order
            h = np.float32(cut[2])
            kept = np.int64(cut[4])
            ties = 0
            for j in range(L):
                ties += 1 if abs(src[j]) == h else 0
            if seen + ties <= kept or seen >= kept:  # every tie of the block is in (or out): no order
                lam = np.float32(cut[1]) if seen + ties <= kept else h
                for j in range(L):
                    x = src[j]
                    dst[j] = x if abs(x) > lam else zero
                return seen + ties
            for j in range(L):  # the block where the kept ties end: in order
                x = src[j]
                ax = abs(x)
                if ax > h:
                    dst[j] = x
                elif ax == h:
                    seen += 1
                    dst[j] = x if seen <= kept else zero
                else:
                    dst[j] = zero
        return seen

    @njit
    def magnitude_row(row, tmp, L, lo, hi, seen, k):
        """``row[:L] = m ⊙ row[:L]`` for expert ``k``'s magnitude cuts, in order (a cut that splits its
        ties, or Breadcrumbs' outliers ``m_lo ⊙ x − m_hi ⊙ x``); ``seen[k]``: its tie counts."""
        if hi[0] < 0.0:  # magnitude cut only
            seen[k, 0] = cut_into(row, row, L, lo, seen[k, 0])
            return
        for j in range(L):
            tmp[j] = row[j]
        seen[k, 0] = cut_into(tmp, row, L, lo, seen[k, 0])
        seen[k, 1] = cut_into(tmp, tmp, L, hi, seen[k, 1])
        for j in range(L):
            row[j] = row[j] - tmp[j]

    @njit
    def vote_row(row, tmp, x, a, L, kind, key, below, lo, hi, seen, k, f, scaled):
        """``row[:L] = m ⊙ x`` (``· f`` when ``scaled``) for expert ``k``'s block at ``a``, in one
        pass where the mask needs no order (kept whole, an unsplit magnitude cut)."""
        zero = np.float32(0.0)
        if kind == 0:
            if scaled:
                for j in range(L):
                    row[j] = loadf(x, j) * f
            else:
                widen_into(x, row, L)
            return
        if kind == 1:  # nothing survives
            for j in range(L):
                row[j] = zero
            return
        if kind == 3:  # DARE: u16 < below
            g = f if scaled else np.float32(1.0)
            for j in range(L):
                v = loadf(x, j)
                row[j] = (v if u16_word(np.uint64(a + j), np.uint64(key)) < below else zero) * g
            return
        if kind == 2 and hi[0] < 0.0 and lo[0] == 2.0 and lo[4] < 0.0:
            lam = np.float32(lo[2]) if lo[3] == 1.0 else np.float32(lo[1])
            if scaled:
                for j in range(L):
                    v = loadf(x, j)
                    row[j] = (v if abs(v) > lam else zero) * f
            else:
                for j in range(L):
                    v = loadf(x, j)
                    row[j] = v if abs(v) > lam else zero
            return
        if kind == 2 and hi[0] < 0.0 and lo[0] == 2.0:  # a cut splitting its ties
            h = np.float32(lo[2])
            kept = np.int64(lo[4])
            before = seen[k, 0]
            if before < kept:  # keep |x| ≥ h, counting the ties on the way
                ge = np.float32(lo[1])
                ties = 0
                for j in range(L):
                    v = loadf(x, j)
                    ties += 1 if abs(v) == h else 0
                    row[j] = (v if abs(v) > ge else zero) * (f if scaled else np.float32(1.0))
                if before + ties <= kept:
                    seen[k, 0] = before + ties
                    return
            else:  # past the last kept tie: |x| > h (no more counting)
                for j in range(L):
                    v = loadf(x, j)
                    row[j] = (v if abs(v) > h else zero) * (f if scaled else np.float32(1.0))
                return
            # the block where the kept ties end: in order (below), from the count before it
        widen_into(x, row, L)
        magnitude_row(row, tmp, L, lo, hi, seen, k)
        if scaled:
            for j in range(L):
                row[j] = row[j] * f

    @njit
    def elect(vals, j, N, weights, mode, normalize):
        """For entry ``j`` of the block's votes ``vals[:N]``: ``γ = copysign(1, Σ v_t)`` (``mode``
        1; 2: ``Σ sign(v_t)``), the agreeing magnitudes' sum ``m = Σ clamp(v_t γ, 0)`` and, when
        normalising, their weights' sum ``d`` — each sum in expert order, as the torch path adds."""
        zero, one = np.float32(0.0), np.float32(1.0)
        e = vals[0, j] if mode == 1 else np.sign(vals[0, j])
        for i in range(1, N):
            e = e + (vals[i, j] if mode == 1 else np.sign(vals[i, j]))
        gam = copysign32(one, e)
        m = zero
        d = zero
        for i in range(N):
            g = vals[i, j] * gam
            g = g if g > zero else zero
            m = g if i == 0 else m + g
            if normalize:
                s = one if g > zero else zero
                d = s * weights[i] if i == 0 else fma32(s, weights[i], d)
        return gam, m, d

    @njit
    def _copy(base, out):
        for j in range(base.size):
            put(out, j, loadf(base, j))

    @njit
    def lanes_of(x, a, kind, key, below, lam, lanes):
        """The partial of one full row ``x`` (_ROW entries at ``a``) of ``|m ⊙ τ|`` for a mask that
        needs no order (kept whole: ``lam`` < 0; DARE; a magnitude cut ``|x| > lam``), read in place."""
        zero = np.float32(0.0)
        for l_ in range(_LANES):
            lanes[l_] = 0.0
        for k in range(_LANES):  # lane l: Σ_k |x[32k + l]| in order; 32 independent sums
            xs = x[k * _LANES : (k + 1) * _LANES]
            if kind == 3:
                p = a + k * _LANES
                for l_ in range(_LANES):
                    v = loadf(xs, l_)
                    v = v if u16_word(np.uint64(p + l_), np.uint64(key)) < below else zero
                    lanes[l_] += np.float64(abs(v))
            else:
                for l_ in range(_LANES):
                    v = loadf(xs, l_)
                    v = v if abs(v) > lam else zero
                    lanes[l_] += np.float64(abs(v))
        acc = 0.0
        for l_ in range(_LANES):
            acc += lanes[l_]
        return acc

    @njit
    def _l1(tau, ints, lo, hi):
        """Row partials of ``|m ⊙ τ|`` (:mod:`evomerge.merge.methods.fused`'s definition)."""
        n = tau.size
        rows = (n + _ROW - 1) // _ROW
        partials = np.zeros(rows, dtype=np.float64)
        buf = np.zeros(_BLOCK, dtype=np.float32)
        tmp = np.empty(_BLOCK, dtype=np.float32)
        seen = np.zeros((1, 2), dtype=np.int64)
        lanes = np.zeros(_LANES, dtype=np.float64)
        one = np.float32(1.0)
        kind = ints[0]
        inplace = kind == 0 or kind == 3 or (kind == 2 and hi[0] < 0.0 and lo[0] == 2.0 and lo[4] < 0.0)
        lam = np.float32(-1.0)
        if kind == 2 and lo[0] == 2.0:
            lam = np.float32(lo[2]) if lo[3] == 1.0 else np.float32(lo[1])
        full = n // _ROW
        if inplace:  # no order: every full row read where it lies
            for r in range(full):
                a = r * _ROW
                partials[r] = lanes_of(tau[a : a + _ROW], a, kind, ints[1], ints[2], lam, lanes)
            start = full * _ROW
        else:
            start = 0
        for a in range(start, n, _BLOCK):  # _BLOCK is a multiple of _ROW
            L = min(_BLOCK, n - a)
            vote_row(buf, tmp, tau[a : a + L], a, L, kind, ints[1], ints[2], lo, hi, seen, 0, one, False)
            for j in range(L, _BLOCK):  # the last row is padded with zeros
                buf[j] = np.float32(0.0)
            for r in range((L + _ROW - 1) // _ROW):
                partials[a // _ROW + r] = lanes_of(buf[r * _ROW : (r + 1) * _ROW], 0, 0, 0, 0, np.float32(-1.0), lanes)
        return partials

    @njit
    def _table(tau, key):
        """DARE's L1 table: ``H[u] = Σ |τ_p|`` over the positions p whose word is ``u``, each bin
        summed in float64 in position order (:func:`evomerge.merge.methods.selection.dare_l1_table`)."""
        table = np.zeros(65536, dtype=np.float64)
        for j in range(tau.size):
            table[u16_word(np.uint64(j), np.uint64(key))] += np.float64(abs(loadf(tau, j)))
        return table

    @njit
    def _merge(base, taus, out, ints, lo, hi, factors, weights, lam, mode, normalize, nonneg, n):
        N = len(taus)
        vals = np.empty((N, _BLOCK), dtype=np.float32)
        acc = np.empty(_BLOCK, dtype=np.float32)
        tmp = np.empty(_BLOCK, dtype=np.float32)
        seen = np.zeros((N, 2), dtype=np.int64)
        fmax = np.float32(3.4028234663852886e38)
        zero, one = np.float32(0.0), np.float32(1.0)
        for a in range(0, n, _BLOCK):
            L = min(_BLOCK, n - a)
            b = base[a : a + L]
            k = 0
            for t in taus:  # masked experts (and every vote v_t = (w_t s_t)·x̂_t of an election): a row
                if mode != 0 or ints[k, 0] != 0:
                    vote_row(
                        vals[k],
                        tmp,
                        t[a : a + L],
                        a,
                        L,
                        ints[k, 0],
                        ints[k, 1],
                        ints[k, 2],
                        lo[k],
                        hi[k],
                        seen,
                        k,
                        factors[k],
                        mode != 0,
                    )
                k += 1
            o = out[a : a + L]
            if mode == 0:  # θ_0 + Σ α_t x̂_t: one fma per expert (torch's add(alpha=))
                k = 0
                for t in taus:
                    if ints[k, 0] == 0:  # kept whole: read where it lies
                        ta_step(t[a : a + L], factors[k], b, acc, o, k, N, L)
                    else:
                        ta_step(vals[k], factors[k], b, acc, o, k, N, L)
                    k += 1
                continue
            # one pass: elect, sum the agreeing, divide, θ_0 + (λγ)·m (addcmul)
            if normalize and nonneg:  # 0/0 → 0, ±inf → ±max (nan_to_num)
                for j in range(L):
                    g, m, d = elect(vals, j, N, weights, mode, True)
                    q = m / d
                    q = zero if q != q else min(max(q, -fmax), fmax)
                    put(o, j, fma32(lam * g, q, loadf(b, j)))
            elif normalize:  # cancelling weights: divide by 1 where the divisor is 0
                for j in range(L):
                    g, m, d = elect(vals, j, N, weights, mode, True)
                    put(o, j, fma32(lam * g, m / (one if d == zero else d), loadf(b, j)))
            else:
                for j in range(L):
                    g, m, d = elect(vals, j, N, weights, mode, False)
                    put(o, j, fma32(lam * g, m, loadf(b, j)))
