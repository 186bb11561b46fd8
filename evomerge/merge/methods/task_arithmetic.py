"""Task arithmetic and the generalized task-arithmetic family builder.

Task arithmetic: ``θ = θ_0 + λ · Σ_t w_t τ_t`` (``/ Σ_t w_t`` when ``normalize: true``; default
false). The other family members (TIES, DARE, Breadcrumbs, DELLA) sparsify each ``τ_t`` first and
optionally elect signs; :func:`gta_method` builds their functions and specs from those two choices,
exactly as mergekit's generalized task arithmetic does.
"""

from __future__ import annotations

from typing import Any

import torch

from evomerge.merge.methods import sparsify as sp
from evomerge.merge.methods.registry import MethodSpec, register

_GTA_GLOBALS_INERT = frozenset({"int8_mask"})


def _sparsify(
    kind: str | None, tau: torch.Tensor, mp: dict[str, Any], params: dict[str, Any], generator, buf
) -> sp.Sparse:
    density = float(mp.get("density", 1.0))
    rescale = bool(params.get("rescale", False))
    mode = params.get("rescale_mode", "l1")
    if kind is None:
        return sp.Sparse(None)
    if kind == "magnitude":
        threshold = None
        if params.get("ties_scope", "tensor") == "model":
            threshold = mp.get("_threshold")
            if threshold is None:
                raise ValueError(
                    "options.ties_scope=model needs model_params[i]['_threshold'] "
                    "(evomerge.merge.methods.sparsify.global_trim_thresholds)"
                )
        return sp.magnitude(tau, density, rescale=rescale, threshold=threshold, out=buf)
    if kind == "random":
        return sp.random_drop(tau, density, generator, rescale=rescale, mode=mode, out=buf)
    if kind == "band":
        return sp.magnitude_band(tau, density, float(mp.get("gamma", 0.01)), rescale=rescale, out=buf)
    if kind == "rank":
        return sp.rank_sampling(
            tau, density, float(mp.get("epsilon", 0.15)), generator, rescale=rescale, mode=mode, out=buf
        )
    raise ValueError(f"unknown sparsification {kind!r}")


def gta_method(
    name: str,
    *,
    sparsification: str | None,
    consensus: bool,
    normalize: bool,
    rescale: bool,
    extra_model_params: dict[str, float] | None = None,
    options: dict[str, tuple[str, ...]] | None = None,
    doc: str = "",
) -> MethodSpec:
    """Register one member of the family; ``sparsification`` ∈ {None, magnitude, random, band, rank}."""

    def fn(base, tensors, model_params, params, generator=None) -> torch.Tensor:
        ws = sp.workspace()
        out = sp.output_buffer(params, base)
        weights = [float(mp["weight"]) for mp in model_params]
        normalize_ = bool(params.get("normalize", normalize))
        lam = float(params.get("lambda", 1.0))
        if not consensus:
            # stream: sparsify one task vector at a time into one scratch buffer
            total = sum(weights)
            scale = lam / total if normalize_ and abs(total) >= 1e-8 else lam
            out.copy_(base)
            for tau, mp, w in zip(tensors, model_params, weights):
                s = _sparsify(sparsification, tau, mp, params, generator, ws.like("sparse", tau))
                out.add_(tau if s.values is None else s.values, alpha=scale * w * s.scale)
            return out
        sparse = [
            _sparsify(sparsification, tau, mp, params, generator, ws.like(("vote", i), tau))
            for i, (tau, mp) in enumerate(zip(tensors, model_params))
        ]
        return sp.combine(
            base,
            tensors,
            sparse,
            weights,
            consensus=params.get("consensus", "sum"),
            normalize=normalize_,
            lam=lam,
            out=out,
        )

    fn.__name__ = name
    fn.__qualname__ = name
    all_options = dict(options or {})
    if consensus:
        all_options.setdefault("consensus", ("sum", "count"))
    inert = set(_GTA_GLOBALS_INERT)
    if sparsification is None:
        inert |= {"density", "rescale"}  # accepted by mergekit for every member, no effect here
    return register(
        MethodSpec(
            name=name,
            fn=fn,
            needs_base=True,
            uses_deltas=True,
            model_params={"weight": None, "density": 1.0, **(extra_model_params or {})},
            global_params={"normalize": normalize, "rescale": rescale, "lambda": 1.0, "int8_mask": False},
            randomized=sparsification in ("random", "rank"),
            options=all_options,
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
