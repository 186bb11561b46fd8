"""Selectors: how one expert's task vector is sparsified, chunk by chunk, inside the fused merge.

A selector is known before the merge's pass (:mod:`evomerge.merge.methods.fused`): ``fill(a, b,
τ[a:b], out, scratch)`` writes ``m ⊙ τ`` for the flat chunk ``[a, b)``. The magnitude selectors take
their sets as :class:`Cut` values (a threshold, and how many of the entries equal to it belong to
the set, ties going to earlier positions); DARE's and DELLA's compare per-entry uniforms, computed
chunk by chunk from their positions (:mod:`evomerge.merge.methods.draws`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from evomerge.merge.methods import draws
from evomerge.merge.methods.fused import chunk_size
from evomerge.merge.methods.workspace import workspace


@dataclass(frozen=True)
class Cut:
    """The top-``k`` set of ``|τ|`` as a threshold: ``|τ| ≥ threshold``, where of the ``tied``
    entries equal to the threshold only the first ``kept`` (by position) belong to the set (ties go
    to earlier positions; ``kept is None``: all of them). ``position``, when known: one past the
    ``kept``-th tie (else the merge finds it while it sweeps). ``kind``: ``"all"`` (k ≥ n),
    ``"none"`` (k ≤ 0) or ``"threshold"``."""

    kind: str
    threshold: float = 0.0
    kept: int | None = None
    tied: int = 0
    position: int | None = None

    @staticmethod
    def everything() -> Cut:
        return Cut("all")

    @staticmethod
    def nothing() -> Cut:
        return Cut("none")

    @property
    def splits_ties(self) -> bool:
        """Some entries equal to the threshold are in the set and some are not."""
        return self.kept is not None and 0 < self.kept < self.tied and self.threshold > 0.0


class Selector:
    """How one expert's task vector is sparsified: ``fill`` writes ``m ⊙ τ`` for the flat chunk
    ``[a, b)`` into ``out``. ``keep_all``: ``τ̂ = τ`` (no buffer needed). ``rescale``: ``None``,
    ``"l1"`` (mergekit's norm match, needs a pre-sweep) or a float factor."""

    keep_all = False
    rescale: str | float | None = None

    def fill(self, a: int, b: int, tau: torch.Tensor, out: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class KeepAll(Selector):
    keep_all = True

    def fill(self, a, b, tau, out, scratch):
        return out.copy_(tau)


class Zero(Selector):
    """Nothing survives (density 0)."""

    def fill(self, a, b, tau, out, scratch):
        return out.zero_()


_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def _rounded(value: float, dtype: torch.dtype) -> float:
    """``value`` rounded to ``dtype`` (the work dtype: float32 or float64)."""
    return float(_NUMPY[dtype](value)) if dtype in _NUMPY else float(torch.tensor(value, dtype=dtype))


def _below(threshold: float, dtype: torch.dtype) -> float:
    """The largest value of ``dtype`` below ``threshold``: ``|x| > _below(h)`` ⟺ ``|x| ≥ h``."""
    if dtype in _NUMPY:
        t = _NUMPY[dtype](threshold)
        return float(np.nextafter(t, _NUMPY[dtype](-np.inf)))
    t = torch.tensor(threshold, dtype=dtype)
    return float(torch.nextafter(t, torch.tensor(-math.inf, dtype=dtype)))


def _shrink(tau: torch.Tensor, lam: float, out: torch.Tensor) -> torch.Tensor:
    """``out = τ · [|τ| > λ]`` in one pass (``hardshrink``; into ``out``'s dtype)."""
    if tau.dtype != out.dtype:
        tau = out.copy_(tau)
    return torch.ops.aten.hardshrink.out(tau, lam, out=out)


def _ties_in(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """1.0 where ``|x| == threshold``, else 0.0 (float32 ops: a bool or integer result, and
    ``count_nonzero``, cost several times more on a CPU)."""
    flags = workspace().get("tie_flags", x.shape, x.dtype, x.device)
    return torch.eq(torch.abs(x, out=flags), threshold, out=flags)


class _Keep:
    """``out = τ · [entry in the cut's set]``, chunk by chunk. The cut keeps ``|τ| > h`` and the
    first ``kept`` entries equal to ``h``; where it splits its ties, ``position`` (one past the
    ``kept``-th tie) is found while the merge sweeps the tensor in order — the ties of each filled
    chunk are counted until it is passed, no pass of its own — or, asked out of order, by a scan of
    ``flat`` up to there."""

    def __init__(self, cut: Cut, dtype: torch.dtype, flat: torch.Tensor | None):
        self.cut, self.flat = cut, flat
        self.h = _rounded(cut.threshold, dtype)
        self.ge = _below(cut.threshold, dtype)  # hardshrink's λ for |τ| ≥ h
        self.splits = cut.splits_ties
        self.strict = cut.kept == 0 and cut.threshold > 0.0
        self.position: int | None = cut.position
        if self.splits and self.position is None and flat is None:
            raise ValueError("a cut that splits its ties needs the flat task vector")  # a bug in the caller
        self._scanned = 0  # entries [0, _scanned) counted
        self._seen = 0  # ties among them

    def _count(self, a: int, filled: torch.Tensor) -> None:
        """Count the ties of ``filled`` (the chunk at ``a``, shrunk at ``≥ h``); find the position."""
        flags = _ties_in(filled, self.h)
        here = int(flags.sum())
        need = self.cut.kept - self._seen
        if here >= need:
            self.position = a + int(torch.nonzero(flags)[need - 1]) + 1
        self._seen += here
        self._scanned = a + filled.numel()

    def _catch_up(self, a: int, like: torch.Tensor) -> None:
        step = chunk_size(self.flat.device, self.flat.numel())
        while self.position is None and self._scanned < a:
            lo = self._scanned
            hi = min(a, lo + step)
            buf = workspace().get("tie_fill", (hi - lo,), like.dtype, like.device)
            self._count(lo, _shrink(self.flat[lo:hi], self.ge, buf))

    def __call__(self, a: int, tau: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if not self.splits:
            return _shrink(tau, self.h if self.strict else self.ge, out)
        n = tau.numel()
        if self.position is None:
            if a != self._scanned:
                self._catch_up(a, out)
            if self.position is None:
                _shrink(tau, self.ge, out)
                self._count(a, out)
                c = self.position - a if self.position is not None else n
                if c < n:
                    _shrink(tau[c:], self.h, out[c:])  # the ties after the position drop out
                return out
        c = min(max(self.position - a, 0), n)
        if c > 0:
            _shrink(tau[:c], self.ge, out[:c])
        if c < n:
            _shrink(tau[c:], self.h, out[c:])
        return out


class Magnitude(Selector):
    """Keep the ``lo`` cut of ``|τ|`` minus the ``hi`` cut (TIES: ``hi`` None; Breadcrumbs: the
    outliers): ``τ · [|τ| ∈ lo] − τ · [|τ| ∈ hi]`` (the reference's ``(mask_lo − mask_hi) · τ``,
    entry for entry: both are τ or 0). ``flat``: the whole flattened task vector the chunks come
    from (where a cut splits its ties, the position where it stops keeping them is found on it);
    ``dtype``: the work dtype the chunks are computed in."""

    def __init__(
        self,
        lo: Cut,
        hi: Cut | None = None,
        rescale: str | None = None,
        flat: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        self.lo, self.hi, self.rescale = lo, hi, rescale
        self._lo = _Keep(lo, dtype, flat) if lo.kind == "threshold" else None
        self._hi = _Keep(hi, dtype, flat) if hi is not None and hi.kind == "threshold" else None

    def fill(self, a, b, tau, out, scratch):
        lo, hi = self.lo, self.hi
        if lo.kind == "all":
            out.copy_(tau)
        elif lo.kind == "none":
            return out.zero_()
        else:
            self._lo(a, tau, out)
        if hi is not None and hi.kind != "none":
            if hi.kind == "all":
                return out.zero_()
            self._hi(a, tau, scratch)
            out.sub_(scratch)
        return out


def _times(out: torch.Tensor, tau: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """``out *= τ`` (a 0/1 or 1/p factor: exact whatever the order; τ made float32 first, which
    a CPU multiplies several times faster than a mixed-dtype product)."""
    if tau.dtype != out.dtype:
        tau = scratch.copy_(tau)
    return out.mul_(tau)


def _draw(key: int, a: int, n: int, device) -> torch.Tensor:
    """This chunk's 16-bit uniforms (int32 in [0, 65536); :mod:`evomerge.merge.methods.draws`)."""
    ws = workspace()
    out = ws.get("u16", (n,), torch.int32, device)
    return draws.u16_into(key, a, out, ws.get("u16_tmp", (n,), torch.int32, device))


class Uniform(Selector):
    """DARE: keep where ``u < density`` (``u16 < ⌈65536·d⌉``); ``key``: the expert's block key."""

    def __init__(self, key: int, density: float, rescale: str | float | None):
        self.key, self.rescale = key, rescale
        self.below = draws.keep_below(density)

    def fill(self, a, b, tau, out, scratch):
        torch.lt(_draw(self.key, a, b - a, out.device), self.below, out=out)
        return _times(out, tau, scratch)


class RankProbability(Selector):
    """DELLA MagPrune: keep where ``u < p``, ``p = ramp[rank]`` (rank of ``|τ|`` within its row);
    ``inverse_p`` divides each survivor by its ``p`` (the paper's rescale)."""

    def __init__(self, key: int, ranks: torch.Tensor, ramp: torch.Tensor, inverse_p: bool, rescale):
        self.key, self.ranks, self.ramp, self.inverse_p, self.rescale = key, ranks, ramp, inverse_p, rescale
        self._index: torch.Tensor | None = None

    def fill(self, a, b, tau, out, scratch):
        idx = self.ranks[a:b]
        if idx.dtype not in (torch.int32, torch.int64):
            if self._index is None or self._index.numel() < b - a:
                self._index = torch.empty(max(b - a, 1), dtype=torch.int32, device=idx.device)
            idx = self._index[: b - a].copy_(idx)
        torch.index_select(self.ramp, 0, idx, out=scratch)
        torch.mul(_draw(self.key, a, b - a, out.device), draws.SCALE, out=out)  # u = u16 / 65536, exact
        out.lt_(scratch)
        if self.inverse_p:
            out.div_(scratch)
        return _times(out, tau, scratch)
