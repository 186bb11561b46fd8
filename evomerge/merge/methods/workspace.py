"""Scratch and output buffers of the merge functions.

On CPU the first touch of a freshly allocated 64 MB tensor costs a page fault per 4 KiB — several
memcpys of the same bytes — and a TIES merge needs half a dozen such temporaries per tensor;
reusing them makes the passes run at memory speed. Accelerators keep their own caching allocator,
so there the workspace just allocates.
"""

from __future__ import annotations

import math
import threading

import torch

_MAX_SCRATCH = 1 << 27  # entries; larger tensors get fresh buffers instead of cached ones


def work_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype a merge computes in for inputs of ``t``'s dtype: float32, or float64 when given."""
    return t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32


class Workspace:
    """Scratch buffers reused across merges, one flat buffer per (slot, dtype, device).

    Buffers grow to the largest tensor merged (up to ``_MAX_SCRATCH`` entries); on accelerators
    and above that size :meth:`get` allocates a fresh tensor.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple, torch.Tensor] = {}

    def get(self, slot: object, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        numel = math.prod(shape)
        if device.type != "cpu" or numel > _MAX_SCRATCH:
            return torch.empty(shape, dtype=dtype, device=device)
        key = (slot, dtype, device)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=dtype, device=device)
            self._buffers[key] = buf
        return buf[:numel].view(shape)

    def like(self, slot: object, t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        return self.get(slot, t.shape, dtype or work_dtype(t), t.device)

    def clear(self) -> None:
        self._buffers.clear()


_local = threading.local()


def workspace() -> Workspace:
    """This thread's workspace (merge functions on different threads never share buffers)."""
    ws = getattr(_local, "workspace", None)
    if ws is None:
        ws = _local.workspace = Workspace()
    return ws


def release_workspace() -> None:
    """Free this thread's scratch buffers (e.g. after the last merge of a run)."""
    workspace().clear()


def output_buffer(params: dict, like: torch.Tensor, *, any_float: bool = False) -> torch.Tensor:
    """Where a method writes its result: ``params['_out']`` when the caller supplies a tensor of
    the right shape in the work dtype (or, ``any_float``, of any float dtype: a method that casts
    as it writes), e.g. the live parameter's storage; else a fresh tensor."""
    out = params.get("_out")
    dtype = work_dtype(like)
    if (
        isinstance(out, torch.Tensor)
        and out.shape == like.shape
        and out.device == like.device
        and (out.dtype == dtype or (any_float and out.dtype.is_floating_point))
    ):
        return out
    return torch.empty(like.shape, dtype=dtype, device=like.device)
