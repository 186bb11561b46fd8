"""Search spaces: genome (a vector in a normalised box) ↔ merge recipe. See :mod:`.base`.

:data:`SPACES` names every space kind (the run config's ``space.kind``); each class has
``Options`` (a pydantic model: the config's other ``space`` keys) and a classmethod
``build(options, inputs: SpaceInputs)``.
Adding a kind is its module plus one ``SPACES.register`` line here. :func:`build_space` builds the
space of a config's ``space`` section.
"""

from collections.abc import Mapping

from pydantic import BaseModel

from evomerge.registry import Registry
from evomerge.space.base import SearchSpace, SpaceInputs
from evomerge.space.combined import JointSpace, PSDFSSpace, sequential_space
from evomerge.space.dataflow import DataFlowRecipe, DataFlowSpace, PathStep
from evomerge.space.parameter import ParameterSpace

SPACES = Registry("space kind")
SPACES.register("parameter", ParameterSpace)
SPACES.register("dataflow", DataFlowSpace)
SPACES.register("psdfs", JointSpace)


def build_space(
    section: BaseModel,
    *,
    base: str | None,
    experts: Mapping[str, str],
    num_layers: int,
    seed: int,
    dtype: str,
    source: str = "config",
) -> SearchSpace:
    """The space of a config ``space`` section (``section.kind`` and that kind's options) over
    ``base`` and ``experts`` (``{name: path}``, in order) with ``num_layers`` layers each;
    ``source`` names the config in errors."""
    cls = SPACES.get(section.kind)
    options = cls.Options.model_validate(section.model_dump(include=set(cls.Options.model_fields)))
    return cls.build(options, SpaceInputs(base, dict(experts), int(num_layers), int(seed), dtype, source))


__all__ = [
    "SPACES",
    "DataFlowRecipe",
    "DataFlowSpace",
    "JointSpace",
    "PSDFSSpace",
    "ParameterSpace",
    "PathStep",
    "SearchSpace",
    "SpaceInputs",
    "build_space",
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
