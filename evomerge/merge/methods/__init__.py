"""Merge methods: one small module per method family, each registering pure tensor functions.

See :mod:`evomerge.merge.methods.registry` for the calling convention. Importing this package
(which importing any of its modules does first) registers every built-in method.

Shared machinery: :mod:`.workspace` (scratch buffers, output buffers), :mod:`.thresholds` (exact
k-th selection, TIES' whole-model thresholds), :mod:`.fused` (the cache-blocked merge of the
task-arithmetic family), :mod:`.kernels` (the same merge compiled for a CPU, bit for bit),
:mod:`.draws` (DARE's and DELLA's random numbers, a function of position) and :mod:`.selection`
(what the sparsifiers need, cached or not).
"""

from evomerge.merge.methods import (  # noqa: F401 - each family module registers its methods
    breadcrumbs,
    dare,
    della,
    linear,
    model_stock,
    slerp,
    task_arithmetic,
    ties,
)
from evomerge.merge.methods.registry import MethodSpec, get_method, method_names, register

__all__ = ["MethodSpec", "get_method", "method_names", "register"]
