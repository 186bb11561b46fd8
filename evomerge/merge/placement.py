"""Where a run keeps the base, the task vectors and the live model — decided before anything is loaded.

A worker merging N experts into a live model holds, for a model of ``P`` float entries in a dtype
of ``b`` bytes (largest tensor ``L`` entries):

===============  ==================================  ==========================================
what             bytes                               where
===============  ==================================  ==========================================
live model       ``P·b``                             the device (it is what is evaluated)
base + τ_1…τ_N   ``(N + 1)·P·b``                     the device (``gpu``), or pinned host
                                                     memory, streamed per tensor (``offload``)
staging          ``(N + 1)·(L + L₂)·b``              the device, ``offload`` only: each tensor's
                                                     inputs, one tensor ahead (``L₂``: the largest
                                                     tensor of half ``L`` or less)
merge scratch    ``L·4 + (N + 11)·C·4``              the device: one output buffer (methods
                                                     outside the fused family) and ``C``-entry
                                                     chunks (DARE and DELLA draw their uniforms
                                                     chunk by chunk: nothing tensor-sized)
reserve          ``max(2 GiB, 10 %)`` of a GPU,      evaluation (activations, KV cache, logits)
                 1 GiB of a host                     and allocator slack
search cache     what is left, halved, capped        beside the merge (:mod:`evomerge.merge.cache`)
===============  ==================================  ==========================================

``memory: auto`` picks ``gpu`` when everything fits on the device, else ``offload`` when the live
model, the staging and the scratch fit on the device and the base and task vectors fit in host
memory; when neither fits, :func:`plan_placement` raises one line saying what each mode needs and
what is free. ``gpu`` and ``offload`` force a mode (and refuse with the same line if it does not
fit). On a CPU device there is one memory: ``gpu`` means resident, and ``offload`` runs the
streaming path with no saving (what the tests use to check that it equals the resident one).

The base is kept beside the live model only because the methods need it (θ_0 + …); a method on raw
weights (linear) never reads it. The search cache gets half of what the plan leaves free (at most
``search_cache`` bytes; ``off``: none), and every entry it keeps is checked against the memory
actually free at that moment (:class:`MemoryGuard`), so it never causes an out-of-memory.

:func:`plan_placement` is pure (sizes and free memory in, decision out: unit-tested on fake sizes);
:func:`free_memory` reads the machine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from evomerge.errors import ModelError

GiB = 1 << 30
_CPU_CHUNK = 1 << 16  # entries per merge chunk on CPU (evomerge.merge.methods.fused)
_DEVICE_CHUNK = 1 << 24  # on accelerators
Mode = Literal["gpu", "offload"]


@dataclass(frozen=True)
class ModelSize:
    """Float entries of one model (``params``), of its largest tensor (``largest``) and of the
    largest of half that size or less (``second``: the vocabulary-sized tensors excluded; None:
    ``largest``)."""

    params: int
    largest: int
    second: int | None = None

    @classmethod
    def of(cls, pool) -> ModelSize:
        """From a :class:`~evomerge.pool.ModelPool`'s headers (no weight is read)."""
        sizes = [_numel(pool.shape(n)) for n in pool.tensor_names if pool.stored_dtype(n).is_floating_point]
        largest = max(sizes, default=0)
        return cls(sum(sizes), largest, max((s for s in sizes if 2 * s <= largest), default=largest))


@dataclass(frozen=True)
class Memory:
    """Free (and total) bytes of the device and of the host; None: unknown (taken as unlimited).
    For a CPU device the device *is* the host: ``device_free`` is ignored."""

    host_free: int | None
    device_free: int | None = None
    device_total: int | None = None


@dataclass(frozen=True)
class Placement:
    """The decision: ``device`` holds the live model and runs the merges; ``store`` holds the base
    and the task vectors (``pin``: pinned host memory); ``stream``: inputs are copied to the
    device per tensor. ``device_bytes`` / ``host_bytes``: what the plan puts there (for a CPU
    device everything is in ``device_bytes``); ``search_cache_bytes``: the cache's budget (0: off)."""

    mode: Mode
    device: str
    store: str
    pin: bool
    stream: bool
    device_bytes: int
    host_bytes: int
    search_cache_bytes: int
    reserve_bytes: int

    def describe(self) -> str:
        where = "on the device" if not self.stream else f"in {'pinned ' if self.pin else ''}host memory, streamed"
        cache = f"search cache up to {_gib(self.search_cache_bytes)}" if self.search_cache_bytes else "no search cache"
        host = f", {_gib(self.host_bytes)} host" if self.host_bytes else ""
        return (
            f"memory plan: {self.mode} — live model on {self.device}, base and task vectors {where}; "
            f"{_gib(self.device_bytes)} on {self.device}{host}; {cache}"
        )


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def _needs(size: ModelSize, experts: int, dtype_bytes: int, on_cpu: bool, sampling: bool) -> dict[str, int]:
    P, L, N, b = size.params, size.largest, experts, dtype_bytes
    chunk = min(L, _CPU_CHUNK if on_cpu else _DEVICE_CHUNK)
    chunks = N + 8 + (3 if sampling else 0)  # per expert, the merge's own; the draws' int32 buffers
    return {
        "live": P * b,
        "inputs": (N + 1) * P * b,
        "staging": (N + 1) * (L + (size.second if size.second is not None else L)) * b,
        "scratch": L * 4 + chunks * chunk * 4,
    }


def _reserve(device_type: str, total: int | None) -> int:
    if device_type == "cpu":
        return GiB
    return max(2 * GiB, (total or 0) // 10)


def plan_placement(
    size: ModelSize,
    *,
    experts: int,
    dtype_bytes: int,
    device: str,
    memory: str = "auto",
    search_cache: int | str = "auto",
    free: Memory,
    sampling: bool = True,
) -> Placement:
    """The placement for ``experts`` task vectors of a model of ``size`` (see the module
    docstring); ``device``: ``cpu``, ``cuda``, ``cuda:N``, …; ``memory``: ``auto | gpu | offload``;
    ``search_cache``: ``auto`` (no cap), ``off`` or a byte cap; ``sampling``: a method that draws
    masks (DARE, DELLA) may run — its uniforms take three more chunk buffers (the default: the
    run's methods are not known here). Raises one-line :class:`~evomerge.errors.ModelError`
    when the requested (or, for auto, every) mode does not fit."""
    if memory not in ("auto", "gpu", "offload"):
        raise ModelError(f"evaluator.memory: expected auto, gpu or offload, got {memory!r}")
    on_cpu = device.split(":")[0] == "cpu"
    need = _needs(size, experts, dtype_bytes, on_cpu, sampling)
    reserve = _reserve("cpu" if on_cpu else "cuda", free.host_free if on_cpu else free.device_total)
    resident = need["live"] + need["inputs"] + need["scratch"] + reserve
    if on_cpu:
        mode: Mode = "offload" if memory == "offload" else "gpu"
        dev = resident + (need["staging"] if mode == "offload" else 0)
        if free.host_free is not None and dev > free.host_free:
            raise ModelError(
                f"evaluator.memory: {_what(size, experts, dtype_bytes)} needs {_gib(dev)} of memory on {device} "
                f"(live model {_gib(need['live'])}, base and task vectors {_gib(need['inputs'])}, merge scratch and "
                f"reserve {_gib(need['scratch'] + reserve)}); {_gib(free.host_free)} is free"
            )
        left = None if free.host_free is None else free.host_free - dev
        return _placement(mode, device, "cpu", False, mode == "offload", dev, 0, left, search_cache, reserve)

    streamed_dev = need["live"] + need["staging"] + need["scratch"] + reserve
    host = need["inputs"] + GiB
    fits_gpu = free.device_free is None or resident <= free.device_free
    fits_offload = (free.device_free is None or streamed_dev <= free.device_free) and (
        free.host_free is None or host <= free.host_free
    )
    if memory == "gpu" or (memory == "auto" and fits_gpu):
        if fits_gpu:
            left = None if free.device_free is None else free.device_free - resident
            return _placement("gpu", device, device, False, False, resident, 0, left, search_cache, reserve)
    elif fits_offload:
        left = None if free.device_free is None else free.device_free - streamed_dev
        return _placement("offload", device, "cpu", True, True, streamed_dev, host, left, search_cache, reserve)
    what = _what(size, experts, dtype_bytes)
    on_gpu = f"on the GPU it needs {_gib(resident)} on {device}"
    offload = f"offloaded {_gib(streamed_dev)} on {device} and {_gib(host)} of host memory"
    has = f"{device} has {_fmt(free.device_free)} free, the host {_fmt(free.host_free)}"
    if memory == "gpu":
        hint = " (evaluator.memory: offload would fit)" if fits_offload else ""
        raise ModelError(f"evaluator.memory: gpu: {what} does not fit: {on_gpu}; {has}{hint}")
    if memory == "offload":
        raise ModelError(f"evaluator.memory: offload: {what} does not fit: {offload}; {has}")
    raise ModelError(f"evaluator.memory: auto: {what} fits neither way: {on_gpu}; {offload}; {has}")


def _what(size: ModelSize, experts: int, dtype_bytes: int) -> str:
    name = {2: "16-bit", 4: "float32", 8: "float64"}.get(dtype_bytes, f"{dtype_bytes}-byte")
    return f"a model of {size.params / 1e9:.2f}B parameters with {experts} expert(s) in {name} weights"


def _fmt(n: int | None) -> str:
    return "an unknown amount" if n is None else _gib(n)


def _placement(mode, device, store, pin, stream, dev, host, left, search_cache, reserve) -> Placement:
    if search_cache == "off":
        budget = 0
    else:
        budget = max(0, left // 2) if left is not None else 1 << 62
        if isinstance(search_cache, int):
            budget = min(budget, search_cache)
    return Placement(mode, device, store, pin, stream, dev, host, int(budget), reserve)


def plan_for_pool(
    pool,
    *,
    device: str,
    dtype_bytes: int,
    memory: str = "auto",
    search_cache: int | str = "auto",
    methods: Sequence[str] | None = None,
):
    """The placement of ``pool``'s models (headers only) on ``device`` with what is free now;
    ``methods``: the merge methods the run may use (None: any)."""
    from evomerge.merge.methods import get_method

    sampling = methods is None or any(get_method(m).randomized for m in methods)
    return plan_placement(
        ModelSize.of(pool),
        experts=len(pool.models),
        dtype_bytes=dtype_bytes,
        device=device,
        memory=memory,
        search_cache=search_cache,
        free=free_memory(device),
        sampling=sampling,
    )


# --------------------------------------------------------------------------- the machine


def host_free_bytes() -> int | None:
    """Memory this process may still take: ``MemAvailable``, bounded by a cgroup limit (what a
    scheduler enforces) minus the cgroup's non-reclaimable use. None where neither is readable."""
    values = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                values.append(int(line.split()[1]) * 1024)
    except OSError:
        try:
            values.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            pass
    cgroup = _cgroup_free()
    if cgroup is not None:
        values.append(cgroup)
    return min(values) if values else None


def _cgroup_free() -> int | None:
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit != "max":
            stat = dict(line.split() for line in (root / "memory.stat").read_text().splitlines())
            used = int((root / "memory.current").read_text()) - int(stat.get("file", 0))
            return max(0, int(limit) - used)
        return None
    except (OSError, ValueError):
        pass
    try:
        limit = int((root / "memory" / "memory.limit_in_bytes").read_text())
        if limit >= 1 << 60:
            return None
        stat = dict(line.split() for line in (root / "memory" / "memory.stat").read_text().splitlines())
        used = int((root / "memory" / "memory.usage_in_bytes").read_text()) - int(stat.get("cache", 0))
        return max(0, limit - used)
    except (OSError, ValueError):
        return None


def device_free_bytes(device: str) -> tuple[int | None, int | None]:
    """(free, total) bytes of a CUDA device, counting memory torch holds but does not use as free."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return None, None
    free, total = torch.cuda.mem_get_info(dev)
    slack = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
    return int(free + slack), int(total)


def free_memory(device: str) -> Memory:
    """What is free now for a worker on ``device``."""
    free, total = device_free_bytes(device)
    return Memory(host_free_bytes(), free, total)


class MemoryGuard:
    """``guard(extra)``: whether ``extra`` more bytes leave at least ``floor`` free where ``device``
    keeps them (the host for a CPU device) — asked by the search cache before each entry."""

    def __init__(self, device: str, floor: int):
        self.device, self.floor = device, int(floor)

    def __call__(self, extra: int) -> bool:
        if self.device.split(":")[0] == "cpu":
            free = host_free_bytes()
        else:
            free = device_free_bytes(self.device)[0]
        return free is None or free - extra >= self.floor
