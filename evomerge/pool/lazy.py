"""Lazy, memory-mapped access to the tensors of one Hugging Face checkpoint directory.

Reading a tensor maps its bytes from the file (safetensors ``safe_open``, or ``torch.load(mmap=True)``
for the ``.bin`` fallback); nothing is read until asked, and the page cache — not this process —
holds the file. Shapes and dtypes come from the headers alone, so validating a pool of large models
reads no weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from evomerge.errors import ModelError

SAFE_INDEX = "model.safetensors.index.json"
SAFE_SINGLE = "model.safetensors"
BIN_INDEX = "pytorch_model.bin.index.json"
BIN_SINGLE = "pytorch_model.bin"

_SAFE_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


class LazyCheckpoint:
    """Tensor name → lazily read tensor, over single-file or sharded safetensors or ``.bin``.

    ``label`` names the model in error messages (the id the user wrote).
    """

    def __init__(self, directory: str | Path, label: str | None = None):
        self.directory = Path(directory)
        self.label = label or str(directory)
        self._handles: dict[Path, object] = {}
        self._bin_states: dict[Path, dict[str, torch.Tensor]] = {}
        self.format, self._file_of = self._index()
        self._meta: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}

    # --- discovery -----------------------------------------------------------------------------
    def _index(self) -> tuple[str, dict[str, Path]]:
        d = self.directory
        if (d / SAFE_INDEX).is_file():
            return "safetensors", self._read_index(d / SAFE_INDEX)
        if (d / SAFE_SINGLE).is_file():
            return "safetensors", {name: d / SAFE_SINGLE for name in self._safe_keys(d / SAFE_SINGLE)}
        if (d / BIN_INDEX).is_file():
            return "bin", self._read_index(d / BIN_INDEX)
        if (d / BIN_SINGLE).is_file():
            return "bin", {name: d / BIN_SINGLE for name in self._bin_state(d / BIN_SINGLE)}
        raise ModelError(f"model '{self.label}': no {SAFE_SINGLE}, {SAFE_INDEX}, {BIN_SINGLE} or {BIN_INDEX} in {d}")

    def _read_index(self, index_path: Path) -> dict[str, Path]:
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"model '{self.label}': cannot read {index_path}: {exc}") from None
        files = {}
        for name, shard in weight_map.items():
            path = self.directory / shard
            if not path.is_file():
                raise ModelError(f"model '{self.label}': shard '{shard}' listed in {index_path.name} is missing")
            files[name] = path
        return files

    def _safe_handle(self, path: Path):
        handle = self._handles.get(path)
        if handle is None:
            from safetensors import safe_open

            try:
                handle = safe_open(str(path), framework="pt", device="cpu")
            except Exception as exc:  # corrupt header, truncated file
                raise ModelError(f"model '{self.label}': cannot open {path}: {exc}") from None
            self._handles[path] = handle
        return handle

    def _safe_keys(self, path: Path) -> list[str]:
        return list(self._safe_handle(path).keys())

    def _bin_state(self, path: Path) -> dict[str, torch.Tensor]:
        state = self._bin_states.get(path)
        if state is None:
            try:
                # mmap: the pickle's storages stay on disk until a tensor is touched.
                state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
            except Exception as exc:
                raise ModelError(f"model '{self.label}': cannot load {path}: {exc}") from None
            if not isinstance(state, dict):
                raise ModelError(f"model '{self.label}': {path} does not hold a state dict")
            self._bin_states[path] = state
        return state

    # --- access --------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return list(self._file_of)

    def __contains__(self, name: str) -> bool:
        return name in self._file_of

    def __len__(self) -> int:
        return len(self._file_of)

    def meta(self, name: str) -> tuple[tuple[int, ...], torch.dtype]:
        """(shape, dtype) from the file header, without reading the tensor's data."""
        cached = self._meta.get(name)
        if cached is not None:
            return cached
        path = self._file_of[name]
        if self.format == "safetensors":
            piece = self._safe_handle(path).get_slice(name)
            shape = tuple(int(s) for s in piece.get_shape())
            dtype = _SAFE_DTYPES.get(piece.get_dtype(), None)
            if dtype is None:
                raise ModelError(f"model '{self.label}': tensor '{name}' has unsupported dtype {piece.get_dtype()}")
        else:
            t = self._bin_state(path)[name]
            shape, dtype = tuple(t.shape), t.dtype
        self._meta[name] = (shape, dtype)
        return shape, dtype

    def shape(self, name: str) -> tuple[int, ...]:
        return self.meta(name)[0]

    def get(self, name: str) -> torch.Tensor:
        """The tensor as stored (dtype of the file), on the CPU."""
        path = self._file_of[name]
        if self.format == "safetensors":
            return self._safe_handle(path).get_tensor(name)
        return self._bin_state(path)[name]

    def close(self) -> None:
        self._handles.clear()
        self._bin_states.clear()


class StateCheckpoint:
    """A checkpoint held in memory — ``{name: tensor}`` with :class:`LazyCheckpoint`'s reading
    interface, for :meth:`evomerge.pool.ModelPool.from_checkpoints` (benchmarks and tests build
    models of real shapes without writing them). ``get`` may be overridden to make tensors on demand."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = state

    def keys(self) -> list[str]:
        return list(self.state)

    def meta(self, name: str) -> tuple[tuple[int, ...], torch.dtype]:
        return tuple(self.state[name].shape), self.state[name].dtype

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.state[name].shape)

    def get(self, name: str) -> torch.Tensor:
        return self.state[name]
