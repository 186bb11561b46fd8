"""evomerge.dtypes: names ↔ torch dtypes, and the "auto" device."""

from __future__ import annotations

import pytest
import torch

from evomerge.dtypes import DTYPE_NAMES, dtype_name, resolve_device, torch_dtype
from evomerge.errors import ConfigError


def test_names_round_trip():
    assert DTYPE_NAMES == ("float32", "float16", "bfloat16")
    for name in DTYPE_NAMES:
        assert dtype_name(torch_dtype(name)) == name
        assert torch_dtype(f"torch.{name}") is torch_dtype(name) is getattr(torch, name)
    assert torch_dtype(torch.float16) is torch.float16
    assert torch_dtype(None) is torch.float32 and torch_dtype(None, torch.bfloat16) is torch.bfloat16


def test_unknown_name_is_one_line():
    with pytest.raises(ConfigError) as info:
        torch_dtype("int8")
    assert str(info.value) == "dtype: expected one of float32, float16, bfloat16, got 'int8'"


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
