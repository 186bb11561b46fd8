"""Search spaces: genome (a vector in a normalised box) ↔ merge recipe. See :mod:`.base`."""

from evomerge.space.base import SearchSpace
from evomerge.space.combined import JointSpace, PSDFSSpace, sequential_space
from evomerge.space.dataflow import DataFlowRecipe, DataFlowSpace, PathStep
from evomerge.space.parameter import ParameterSpace

__all__ = [
    "DataFlowRecipe",
    "DataFlowSpace",
    "JointSpace",
    "PSDFSSpace",
    "ParameterSpace",
    "PathStep",
    "SearchSpace",
    "sequential_space",
]


def __getattr__(name):
    # Model-building helpers import torch / transformers: load them only when asked for.
    if name in ("build_path_model", "load_dataflow_sources"):
        from evomerge.space import path_model

        return getattr(path_model, name)
    if name in ("fold_to_state_dict", "materialize_dataflow", "to_mergekit_passthrough"):
        from evomerge.space import fold

        return getattr(fold, name)
    raise AttributeError(f"module 'evomerge.space' has no attribute {name!r}")
