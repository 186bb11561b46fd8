"""Merge methods: one small module per method family, each registering pure tensor functions.

See :mod:`evomerge.merge.methods.registry` for the calling convention.
"""

import importlib

from evomerge.merge.methods.registry import MethodSpec, get_method, method_names, register

# Each family module calls `register(...)` at import time.
for _family in ("linear", "task_arithmetic", "ties", "dare", "breadcrumbs", "della", "slerp", "model_stock"):
    try:
        importlib.import_module(f"evomerge.merge.methods.{_family}")
    except ModuleNotFoundError as _exc:  # a family not written yet
        if _exc.name != f"evomerge.merge.methods.{_family}":
            raise

__all__ = ["MethodSpec", "get_method", "method_names", "register"]
