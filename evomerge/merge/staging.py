"""Bringing one tensor's merge inputs from where the pool keeps them to the device that merges.

A resident pool (everything on the merging device) needs nothing: the merge reads the pool's own
tensors. An offloaded pool keeps the base and the task vectors in (pinned) CPU memory; before each
tensor is merged its inputs are copied into reused device buffers — on a CUDA device on a side
stream, one tensor ahead, so the copy of tensor i + 1 overlaps the merge of tensor i (two buffer
sets, alternating). The copies are exact, so a streamed merge computes on the same values with
the same kernels as a resident one: the results are equal bit for bit.

``always=True`` streams even sources already on the device — the path an offloaded run takes, on
any device (tests run it on a CPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class Staging:
    """Device buffers for the inputs of one tensor's merge; see the module docstring.

    ``capacity``: entries of the largest tensor (the first buffer set is allocated at that size,
    per input slot); ``second``: of the second set, which a side stream prefetches into (default
    the same): a model's few vocabulary-sized tensors are then copied when their turn comes, and
    the second set costs what the next-largest tensor needs."""

    def __init__(self, device: str | torch.device, capacity: int, *, second: int | None = None, always: bool = False):
        self.device = torch.device(device)
        self.capacity = max(int(capacity), 1)
        self.capacities = (self.capacity, max(int(second if second is not None else capacity), 1))
        self.always = always
        self._buffers: dict[tuple[int, int, torch.dtype], torch.Tensor] = {}
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._ready: dict[str, tuple[int, list[torch.Tensor | None], object]] = {}  # name -> (set, tensors, event)
        self._free: list[object | None] = [None, None]  # event: set i's last reader is done
        self._next = 0  # the buffer set the next take uses
        self._in_use: int | None = None

    def _moves(self, t: torch.Tensor | None) -> bool:
        return t is not None and (self.always or t.device != self.device)

    def _buffer(self, which: int, slot: int, t: torch.Tensor) -> torch.Tensor:
        key = (which, slot, t.dtype)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < t.numel():  # larger only for a tensor beyond the capacity given
            size = max(self.capacities[which], t.numel())
            buf = self._buffers[key] = torch.empty(size, dtype=t.dtype, device=self.device)
        return buf[: t.numel()].view(t.shape)

    def _fits(self, which: int, sources: Sequence[torch.Tensor | None]) -> bool:
        return all(s is None or s.numel() <= self.capacities[which] for s in sources)

    def _copy(self, which: int, sources: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        return [
            self._buffer(which, k, s).copy_(s, non_blocking=True) if self._moves(s) else s
            for k, s in enumerate(sources)
        ]

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._buffers.values())

    def take(self, name: str, sources: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """``sources`` (store tensors, None kept) on the device: prefetched copies or copies now."""
        ready = self._ready.pop(name, None)
        if ready is not None:
            which, tensors, event = ready
            torch.cuda.current_stream(self.device).wait_event(event)
        else:
            if self._ready:  # a prefetch for another tensor may be writing into these buffers
                self.reset()
            which = self._next if self._fits(self._next, sources) else 0
            tensors = self._copy(which, sources)
        self._in_use = which
        self._next = 1 - which
        return tensors

    def prefetch(self, name: str, sources: Sequence[torch.Tensor | None]) -> None:
        """Start copying the next tensor's inputs on the side stream (CUDA only; else nothing)."""
        if self._stream is None or name in self._ready or not any(self._moves(s) for s in sources):
            return
        which = self._next
        if not self._fits(which, sources):  # too large for the other set: copied at its turn
            return
        for k, s in enumerate(sources):  # allocate on the main stream, before the side stream writes
            if self._moves(s):
                self._buffer(which, k, s)
        with torch.cuda.stream(self._stream):
            if self._free[which] is not None:
                self._stream.wait_event(self._free[which])
            tensors = self._copy(which, sources)
            event = torch.cuda.Event()
            event.record(self._stream)
        self._ready[name] = (which, tensors, event)

    def release(self) -> None:
        """The merge that read the last taken inputs is queued: their buffers may be refilled after it."""
        if self._stream is not None and self._in_use is not None:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self.device))
            self._free[self._in_use] = event
        self._in_use = None

    def reset(self) -> None:
        """Drop prefetched copies (after a failed merge)."""
        if self._stream is not None:
            self._stream.synchronize()
        self._ready.clear()
