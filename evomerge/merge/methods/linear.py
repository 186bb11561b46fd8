"""Linear (weighted average) merge: ``θ = Σ_t w_t θ_t / Σ_t w_t`` (``normalize: true``, default) or
``Σ_t w_t θ_t``. Uses the raw expert tensors; the base model, if any, takes no part unless it is
listed among ``models`` (mergekit's rule). Where ``Σ w`` is 0 the sum is left unnormalised
(mergekit would divide by zero)."""

from __future__ import annotations

import torch

from evomerge.merge.methods.registry import MethodSpec, register
from evomerge.merge.methods.workspace import output_buffer


def linear(base, tensors, model_params, params, generator=None) -> torch.Tensor:
    out = output_buffer(params, tensors[0])
    weights = [float(mp["weight"]) for mp in model_params]
    # The first product is written, not added to a zeroed buffer (0 + w·x = w·x, same bits): one
    # pass fewer than zero-fill + N adds. Whole-tensor passes: at 2–4 streaming ops, cache-sized
    # chunks measured slower here (per-op overhead) than the hardware prefetcher's full passes.
    first = tensors[0]
    if first.dtype == out.dtype:
        torch.mul(first, weights[0], out=out)
    else:  # bf16/fp16 inputs: multiply in float32, not in the input dtype
        out.copy_(first).mul_(weights[0])
    for tensor, w in zip(tensors[1:], weights[1:]):
        out.add_(tensor, alpha=w)
    total = sum(weights)
    if params.get("normalize", True) and abs(total) >= 1e-8:
        out.div_(total)
    return out


register(
    MethodSpec(
        name="linear",
        fn=linear,
        needs_base=False,
        uses_deltas=False,
        params=("weight", "normalize"),
        defaults={"normalize": True},
        doc="Weighted average of the models' tensors.",
    )
)
