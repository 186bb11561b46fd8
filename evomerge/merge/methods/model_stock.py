"""Model Stock (Jang et al. 2024), mergekit's per-tensor form.

With offsets ``τ_t = θ_t − θ_0`` of ``N ≥ 2`` experts, ``cos φ`` the mean of the pairwise cosines
``⟨τ_i, τ_j⟩ / max(‖τ_i‖‖τ_j‖, 1e-6)`` (each clamped to [−1, 1]) and
``t = N cos φ / (1 + (N − 1) cos φ)``:

    θ = t · mean_t(θ_t) + (1 − t) · θ_0  =  θ_0 + t · mean_t(τ_t).

``filter_wise: true`` computes ``t`` per row (last dimension) instead of per tensor.
"""

from __future__ import annotations

import torch

from evomerge.merge.methods.registry import MethodSpec, register
from evomerge.merge.methods.workspace import output_buffer


def model_stock(base, tensors, model_params, params, generator=None) -> torch.Tensor:
    dtype = base.dtype if base.dtype in (torch.float32, torch.float64) else torch.float32
    n = len(tensors)
    if params.get("filter_wise", False):
        offsets = [(d.unsqueeze(0) if d.dim() == 1 else d).to(dtype) for d in tensors]
    else:
        offsets = [d.reshape(-1).to(dtype) for d in tensors]
    norms = [torch.linalg.vector_norm(o, dim=-1) for o in offsets]
    cos_sum = None
    pairs = 0
    for i in range(n):
        for j in range(i + 1, n):
            cos = ((offsets[i] * offsets[j]).sum(dim=-1) / (norms[i] * norms[j]).clamp(min=1e-6)).clamp(-1, 1)
            cos_sum = cos if cos_sum is None else cos_sum + cos
            pairs += 1
    cos = (cos_sum / pairs).unsqueeze(-1)
    t = (n * cos) / (1 + (n - 1) * cos)
    mean = torch.zeros_like(offsets[0])
    for o in offsets:
        mean.add_(o)
    mean.div_(n)
    out = output_buffer(params, base)
    torch.addcmul(base.to(dtype).reshape(mean.shape), t, mean, out=out.view(mean.shape))
    return out


register(
    MethodSpec(
        name="model_stock",
        fn=model_stock,
        needs_base=True,
        uses_deltas=True,
        params=("filter_wise",),
        min_models=2,
        doc="Interpolate towards the experts' mean by the angle between their offsets.",
    )
)
