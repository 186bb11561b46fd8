"""Floating-point dtypes by name, and the device a run evaluates on.

A recipe, a run config and the CLI name a dtype ``float32``, ``float16`` or ``bfloat16``
(:data:`DtypeName`, the pydantic field type; :data:`DTYPE_NAMES`, the same as a tuple); merging
itself always runs in float32 and casts to that dtype. torch is imported only when a conversion
is asked for, so that configs validate without it.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any, Literal

from evomerge.errors import ConfigError

if TYPE_CHECKING:
    import torch

DtypeName = Literal["float32", "float16", "bfloat16"]
DTYPE_NAMES: tuple[str, ...] = typing.get_args(DtypeName)


def torch_dtype(value: Any, default: torch.dtype | None = None) -> torch.dtype:
    """``"bfloat16"`` / ``"torch.bfloat16"`` / ``torch.bfloat16`` / ``None`` (→ ``default``,
    float32 when not given) as a torch dtype; any other name raises a one-line ConfigError."""
    import torch

    if value is None:
        return torch.float32 if default is None else default
    if isinstance(value, torch.dtype):
        return value
    text = str(value).removeprefix("torch.")
    if text not in DTYPE_NAMES:
        raise ConfigError(f"dtype: expected one of {', '.join(DTYPE_NAMES)}, got {value!r}")
    return getattr(torch, text)


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` → ``"bfloat16"`` (the name config.json and our YAML use)."""
    return str(dtype).removeprefix("torch.")


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when a GPU is visible, else ``"cpu"``; any other name unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
