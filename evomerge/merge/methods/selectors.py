"""Selectors: how one expert's task vector is sparsified, chunk by chunk, inside the fused merge.

A selector is known before the merge's pass (:mod:`evomerge.merge.methods.fused`): ``fill(a, b,
τ[a:b], out, scratch)`` writes ``m ⊙ τ`` for the flat chunk ``[a, b)``. The magnitude selectors take
their sets as :class:`Cut` values (a threshold, and how many of the entries equal to it belong to
the set, ties going to earlier positions); DARE's and DELLA's compare per-entry uniforms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

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


def _below(threshold: float, dtype: torch.dtype) -> float:
    """The largest value of ``dtype`` below ``threshold``: ``|x| > _below(h)`` ⟺ ``|x| ≥ h``."""
    t = torch.tensor(threshold, dtype=dtype)
    return float(torch.nextafter(t, torch.tensor(-math.inf, dtype=dtype)))


def _shrink(tau: torch.Tensor, threshold: float, out: torch.Tensor, strict: bool = False) -> torch.Tensor:
    """``out = τ · [|τ| ≥ threshold]`` (``> threshold`` if ``strict``) in one pass (``hardshrink``
    keeps ``|x| > λ``; λ is the float just below the threshold, so the kept set is exactly the
    reference's ``|τ| ≥ h``)."""
    if tau.dtype != out.dtype:
        tau = out.copy_(tau)
    lam = threshold if strict else _below(threshold, out.dtype)
    return torch.ops.aten.hardshrink.out(tau, lam, out=out)


class _TieSplit:
    """Where a :class:`Cut` that splits its ties stops keeping them: entries equal to the threshold
    are kept before ``position`` and dropped from it on (``position`` = one past the ``kept``-th
    tie). Found lazily while the merge sweeps the tensor in order (one compare per chunk until
    the position is passed; no pass of its own), or by one scan of ``flat`` if asked out of order."""

    def __init__(self, cut: Cut, flat: torch.Tensor | None):
        self.cut, self.flat = cut, flat
        self.position: int | None = cut.position
        self._scanned = 0  # entries [0, _scanned) counted
        self._seen = 0  # ties among them

    def _ties(self, x: torch.Tensor) -> torch.Tensor:
        ws = workspace()
        magnitude = torch.abs(x, out=ws.get("tie_abs", x.shape, x.dtype, x.device))
        return torch.eq(magnitude, self.cut.threshold, out=ws.get("tie_eq", x.shape, torch.bool, x.device))

    def _count(self, a: int, x: torch.Tensor) -> None:
        equal = self._ties(x)
        here = int(torch.count_nonzero(equal))
        need = self.cut.kept - self._seen
        if here >= need:
            self.position = a + int(torch.nonzero(equal)[need - 1]) + 1
        self._seen += here
        self._scanned = a + x.numel()

    def split(self, a: int, tau: torch.Tensor) -> int:
        """Where, in ``[a, a + len(tau))``, the kept ties end (``tau``: the chunk at ``a``)."""
        if self.position is None:
            if a != self._scanned:  # not a sweep in order: count up to here first
                step = chunk_size(self.flat.device, self.flat.numel())
                while self.position is None and self._scanned < a:
                    lo = self._scanned
                    self._count(lo, self.flat[lo : min(a, lo + step)])
            if self.position is None:
                self._count(a, tau)
        return min(max(self.position if self.position is not None else a + tau.numel(), a), a + tau.numel())


def _keep(cut: Cut, split: _TieSplit | None, a: int, tau: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = τ · [entry in the cut's set]`` for the chunk ``tau`` at flat position ``a``."""
    if split is None:
        return _shrink(tau, cut.threshold, out, strict=cut.kept == 0 and cut.threshold > 0.0)
    c = split.split(a, tau) - a
    if c > 0:
        _shrink(tau[:c], cut.threshold, out[:c])
    if c < tau.numel():
        _shrink(tau[c:], cut.threshold, out[c:], strict=True)
    return out


class Magnitude(Selector):
    """Keep the ``lo`` cut of ``|τ|`` minus the ``hi`` cut (TIES: ``hi`` None; Breadcrumbs: the
    outliers): ``τ · [|τ| ∈ lo] − τ · [|τ| ∈ hi]`` (the reference's ``(mask_lo − mask_hi) · τ``,
    entry for entry: both are τ or 0). ``flat``: the whole flattened task vector the chunks come
    from (where a cut splits its ties, the position where it stops keeping them is found on it)."""

    def __init__(self, lo: Cut, hi: Cut | None = None, rescale: str | None = None, flat: torch.Tensor | None = None):
        self.lo, self.hi, self.rescale = lo, hi, rescale
        self._splits = {
            which: _TieSplit(cut, flat)
            for which, cut in (("lo", lo), ("hi", hi))
            if cut is not None and cut.splits_ties
        }
        if any(t.position is None for t in self._splits.values()) and flat is None:
            raise ValueError("a cut that splits its ties needs the flat task vector")  # a bug in the caller

    def fill(self, a, b, tau, out, scratch):
        lo, hi = self.lo, self.hi
        if lo.kind == "all":
            out.copy_(tau)
        elif lo.kind == "none":
            return out.zero_()
        else:
            _keep(lo, self._splits.get("lo"), a, tau, out)
        if hi is not None and hi.kind != "none":
            if hi.kind == "all":
                return out.zero_()
            _keep(hi, self._splits.get("hi"), a, tau, scratch)
            out.sub_(scratch)
        return out


class Uniform(Selector):
    """DARE: keep where ``u < density``; ``u`` the flat block of uniforms this expert draws."""

    def __init__(self, u: torch.Tensor, density: float, rescale: str | float | None):
        self.u, self.density, self.rescale = u, density, rescale

    def fill(self, a, b, tau, out, scratch):
        torch.lt(self.u[a:b], self.density, out=out)
        return out.mul_(tau)


class RankProbability(Selector):
    """DELLA MagPrune: keep where ``u < p``, ``p = ramp[rank]`` (rank of ``|τ|`` within its row);
    ``inverse_p`` divides each survivor by its ``p`` (the paper's rescale)."""

    def __init__(self, u: torch.Tensor, ranks: torch.Tensor, ramp: torch.Tensor, inverse_p: bool, rescale):
        self.u, self.ranks, self.ramp, self.inverse_p, self.rescale = u, ranks, ramp, inverse_p, rescale
        self._index: torch.Tensor | None = None

    def fill(self, a, b, tau, out, scratch):
        idx = self.ranks[a:b]
        if idx.dtype not in (torch.int32, torch.int64):
            if self._index is None or self._index.numel() < b - a:
                self._index = torch.empty(max(b - a, 1), dtype=torch.int32, device=idx.device)
            idx = self._index[: b - a].copy_(idx)
        torch.index_select(self.ramp, 0, idx, out=scratch)
        torch.lt(self.u[a:b], scratch, out=out)
        if self.inverse_p:
            out.div_(scratch)
        return out.mul_(tau)
