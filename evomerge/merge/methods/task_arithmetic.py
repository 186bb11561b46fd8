"""Task arithmetic and the generalized task-arithmetic family builder.

Task arithmetic: ``θ = θ_0 + λ · Σ_t w_t τ_t`` (``/ Σ_t w_t`` when ``normalize: true``; default
false). The other family members (TIES, DARE, Breadcrumbs, DELLA) sparsify each ``τ_t`` first and
optionally elect signs; :func:`gta_method` builds their functions and specs from those two choices,
exactly as mergekit's generalized task arithmetic does.
"""

from __future__ import annotations

from typing import Any

import torch

from evomerge.merge.methods import draws, fused, kernels
from evomerge.merge.methods import selectors as sel
from evomerge.merge.methods.registry import MethodSpec, register
from evomerge.merge.methods.selection import ScratchCache, TensorCache, della_ramp
from evomerge.merge.methods.workspace import output_buffer, work_dtype

_GTA_GLOBALS_INERT = frozenset({"int8_mask"})
TABLE_MIN = 1 << 16  # DARE on a CPU: tensors of this many entries or more read ‖m ⊙ τ‖₁ from a table


def _selectors(
    kind: str | None,
    tensors: list[torch.Tensor],
    model_params: list[dict[str, Any]],
    params: dict[str, Any],
    cache: TensorCache,
    seed: int = 0,
) -> list[sel.Selector]:
    """One selector per expert, with the reference sparsifiers' semantics (docs/merge-methods.md): the
    same cuts, the same uniform blocks in the same order (only experts with 0 < d < 1 draw; block
    ``j`` of stream ``seed``, :mod:`evomerge.merge.methods.draws`)."""
    rescale = bool(params.get("rescale", False))
    mode = params.get("rescale_mode", "l1")
    l1 = "l1" if rescale else None
    selectors: list[sel.Selector] = []
    block = 0  # uniform blocks drawn so far from this tensor's stream
    for i, (tau, mp) in enumerate(zip(tensors, model_params)):
        density = float(mp.get("density", 1.0))
        n = tau.numel()
        dtype = work_dtype(tau)
        if kind is None:
            selectors.append(sel.KeepAll())
        elif kind == "magnitude":
            if params.get("ties_scope", "tensor") == "model":
                threshold = mp.get("_threshold")
                if threshold is None:
                    raise ValueError(
                        "options.ties_scope=model needs model_params[i]['_threshold'] "
                        "(evomerge.merge.methods.thresholds.global_trim_thresholds)"
                    )
                selectors.append(sel.Magnitude(sel.Cut("threshold", float(threshold)), rescale=l1, dtype=dtype))
            elif density >= 1:
                selectors.append(sel.KeepAll())
            else:
                cut = cache.cut(i, tau, int(density * n))
                selectors.append(sel.Magnitude(cut, rescale=l1, flat=tau.reshape(-1), dtype=dtype))
        elif kind == "band":
            if density >= 1:
                selectors.append(sel.KeepAll())
                continue
            n_top = int(float(mp.get("gamma", 0.01)) * n)
            n_bot = n - int(density * n) - n_top
            if n_bot < 0:
                n_top += n_bot
                n_bot = 0
            hi = cache.cut(i, tau, n_top) if n_top > 0 else None
            cut = cache.cut(i, tau, n - n_bot)
            selectors.append(sel.Magnitude(cut, hi, rescale=l1, flat=tau.reshape(-1), dtype=dtype))
        elif kind in ("random", "rank"):
            if density >= 1:
                selectors.append(sel.KeepAll())
                continue
            if density <= 0:
                selectors.append(sel.Zero())
                continue
            key = draws.block_key(seed, block)
            block += 1
            if kind == "random":
                factor = (1.0 / density if mode == "inverse_p" else "l1") if rescale else None
                if factor == "l1" and tau.device.type == "cpu" and n >= TABLE_MIN:  # ‖m ⊙ τ‖₁ from its table
                    after = float(cache.l1_table(i, tau, key)[draws.keep_below(density)])
                    factor = fused.rescale_factor(cache.l1_norm(i, tau), after)
                selectors.append(sel.Uniform(key, density, factor))
            else:
                width = tau.shape[1] if tau.dim() >= 2 else n
                ramp = della_ramp(density, float(mp.get("epsilon", 0.15)), width, dtype, tau.device)
                inverse_p = rescale and mode == "inverse_p"
                selectors.append(
                    sel.RankProbability(
                        key, cache.ranks(i, tau), ramp, inverse_p, "l1" if rescale and not inverse_p else None
                    )
                )
        else:
            raise ValueError(f"unknown sparsification {kind!r}")
    return selectors


def gta_method(
    name: str,
    *,
    sparsification: str | None,
    consensus: bool,
    normalize: bool,
    rescale: bool,
    extra_params: tuple[str, ...] = (),
    options: tuple[str, ...] = (),
    doc: str = "",
) -> MethodSpec:
    """Register one member of the family; ``sparsification`` ∈ {None, magnitude, random, band, rank}.

    ``extra_params``: per-model parameters the sparsifier reads besides weight and density (gamma,
    epsilon); ``options``: the member's options (sign election adds ``consensus``). Parameters and
    options are defined in :mod:`evomerge.merge.parameters`."""

    def fn(base, tensors, model_params, params, generator=None) -> torch.Tensor:
        out = output_buffer(params, base, any_float=True)  # the fused merge casts chunk by chunk
        weights = [float(mp["weight"]) for mp in model_params]
        cache = params.get("_cache") or ScratchCache()
        selectors = _selectors(sparsification, tensors, model_params, params, cache, draws.stream_seed(generator))
        tau_l1 = [
            cache.l1_norm(i, t) if s.rescale == "l1" else None for i, (t, s) in enumerate(zip(tensors, selectors))
        ]
        how = dict(
            consensus=params.get("consensus", "sum") if consensus else None,
            normalize=bool(params.get("normalize", normalize)),
            lam=float(params.get("lambda", 1.0)),
            out=out,
            tau_l1=tau_l1,
        )
        if kernels.merge(base, tensors, selectors, weights, **how):  # compiled, on a CPU: the same bits
            return out
        return fused.merge(base, tensors, selectors, weights, **how)

    fn.__name__ = name
    fn.__qualname__ = name
    all_options = tuple(options) + (("consensus",) if consensus and "consensus" not in options else ())
    inert = set(_GTA_GLOBALS_INERT)
    if sparsification is None:
        inert |= {"density", "rescale"}  # accepted by mergekit for every member, no effect here
    return register(
        MethodSpec(
            name=name,
            fn=fn,
            needs_base=True,
            uses_deltas=True,
            params=("weight", "density", *extra_params, "normalize", "rescale", "lambda", "int8_mask"),
            defaults={"normalize": normalize, "rescale": rescale},
            randomized=sparsification in ("random", "rank"),
            writes_any_float=True,
            method_options=all_options,
            inert_params=frozenset(inert),
            doc=doc,
        )
    )


gta_method(
    "task_arithmetic",
    sparsification=None,
    consensus=False,
    normalize=False,
    rescale=False,
    doc="θ_0 + λ Σ w_t τ_t (Ilharco et al. 2023).",
)
