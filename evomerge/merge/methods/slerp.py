"""Spherical linear interpolation between the base (``t = 0``) and one other model (``t = 1``).

With ``a`` the base tensor, ``b`` the other, both flattened, and
``cos Ω = ⟨a/‖a‖, b/‖b‖⟩`` (a vector of norm ≤ 1e-8 is left unnormalised):

    θ = sin((1−t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b,   or   (1−t) a + t b   when |cos Ω| > 0.9995.

mergekit's rule, including the threshold; ``t`` is a global parameter (it may be a gradient).
"""

from __future__ import annotations

import math

import torch

from evomerge.merge.methods.registry import MethodSpec, register
from evomerge.merge.methods.workspace import output_buffer

DOT_THRESHOLD = 0.9995
_NORM_EPS = 1e-8


def slerp(base, tensors, model_params, params, generator=None) -> torch.Tensor:
    t = float(params["t"])
    a = base if base.dtype in (torch.float32, torch.float64) else base.float()
    b = tensors[0].to(a.dtype)
    af, bf = a.reshape(-1), b.reshape(-1)
    na = float(torch.linalg.vector_norm(af, dtype=torch.float64))
    nb = float(torch.linalg.vector_norm(bf, dtype=torch.float64))
    dot = float(torch.dot(af, bf))
    dot /= (na if na > _NORM_EPS else 1.0) * (nb if nb > _NORM_EPS else 1.0)
    out = output_buffer(params, a)
    if abs(dot) > DOT_THRESHOLD:
        return torch.mul(a, 1.0 - t, out=out).add_(b, alpha=t)
    omega = math.acos(max(-1.0, min(1.0, dot)))
    sin_omega = math.sin(omega)
    s0 = math.sin(omega - t * omega) / sin_omega
    s1 = math.sin(t * omega) / sin_omega
    return torch.mul(a, s0, out=out).add_(b, alpha=s1)


register(
    MethodSpec(
        name="slerp",
        fn=slerp,
        needs_base=True,
        uses_deltas=False,
        params=("t",),
        min_models=1,
        max_models=1,
        doc="Spherical interpolation from the base (t=0) to the other model (t=1).",
    )
)
