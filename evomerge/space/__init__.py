"""Search spaces: genome (a vector in a normalised box) ↔ merge recipe. See :mod:`.base`.

The recipes themselves (and running them) are the merge engine's: :mod:`evomerge.merge.recipes`.
"""

from evomerge.space.base import SearchSpace
from evomerge.space.combined import JointSpace, PSDFSSpace, sequential_space
from evomerge.space.dataflow import DataFlowSpace
from evomerge.space.parameter import ParameterSpace

__all__ = [
    "DataFlowSpace",
    "JointSpace",
    "PSDFSSpace",
    "ParameterSpace",
    "SearchSpace",
    "sequential_space",
]
