"""NaN or inf in a source checkpoint's weights: one line naming the model and the tensor.

A merge of a damaged checkpoint is NaN everywhere it touches, and a search over it fails every
candidate; both are caught here, before any merge. Each floating tensor is read as stored (memory
mapped, in its file dtype) and reduced to its minimum and maximum (``torch.aminmax``, which
propagates NaN, and ±inf are their own extremes): finite exactly when both are. No copy in another
dtype, no mask the size of a tensor; only a damaged tensor is scanned again to say where. 0.07 s
for a 135M-parameter bfloat16 model on one CPU core, where ``isfinite(t).all()`` per tensor takes
1.4 s (``benchmarks/finite_check.py``). A checkpoint already found clean in this process
(same files, sizes and mtimes) is not read again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from evomerge.errors import ModelError

_clean: set[tuple] = set()


def _stamp(directory: Path | None) -> tuple | None:
    if directory is None or not Path(directory).is_dir():
        return None
    files = sorted(p for p in Path(directory).iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    return (str(Path(directory).resolve()), tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))


def check_finite(
    label: str, names: Iterable[str], get: Callable[[str], torch.Tensor], directory: Path | None = None
) -> None:
    """Every floating tensor ``get(name)`` of the model ``label`` is finite; else a ModelError.
    ``directory``: where its files are (a clean result is remembered for them)."""
    stamp = _stamp(directory)
    if stamp is not None and stamp in _clean:
        return
    for name in names:
        t = get(name)
        if not t.is_floating_point() or t.numel() == 0:
            continue
        low, high = torch.aminmax(t.reshape(-1))
        if bool(torch.isfinite(low)) and bool(torch.isfinite(high)):
            continue
        bad = ~torch.isfinite(t.reshape(-1))
        first = int(bad.nonzero()[0, 0])
        raise ModelError(
            f"model '{label}': tensor '{name}' holds {int(bad.sum())} NaN or inf value(s) "
            f"(the first at index {list(_unravel(first, tuple(t.shape)))}); the checkpoint is damaged"
        )
    if stamp is not None:
        _clean.add(stamp)


def check_pool_finite(pool) -> None:
    """:func:`check_finite` for every model of a :class:`~evomerge.pool.ModelPool`."""
    for model_id in pool.ids:
        check_finite(model_id, pool.tensor_names, lambda n, m=model_id: pool.stored(m, n), pool.dirs.get(model_id))


def _unravel(i: int, shape: tuple[int, ...]):
    out = []
    for size in reversed(shape):
        out.append(i % size)
        i //= size
    return reversed(out)


__all__ = ["check_finite", "check_pool_finite"]
