"""Search spaces: genome (a vector in a normalised box) ↔ merge recipe. See :mod:`.base`.

The recipes themselves (and running them) are the merge engine's: :mod:`evomerge.merge.recipes`.

:data:`SPACES` names every space kind (the run config's ``space.kind``); each class has
``Options`` (a pydantic model: the config's other ``space`` keys) and a classmethod
``build(options, inputs: SpaceInputs)``.
Adding a kind is its module plus one ``SPACES.register`` line here. :func:`build_space` builds the
space of a config's ``space`` section.
"""

from collections.abc import Mapping, Sequence

from pydantic import BaseModel

from evomerge.registry import Registry
from evomerge.space.base import SearchSpace, SpaceInputs
from evomerge.space.combined import JointSpace, PSDFSSpace, sequential_space
from evomerge.space.dataflow import DataFlowSpace
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
    tensor_names: Sequence[str] | None = None,
) -> SearchSpace:
    """The space of a config ``space`` section (``section.kind`` and that kind's options) over
    ``base`` and ``experts`` (``{name: path}``, in order) with ``num_layers`` layers each;
    ``source`` names the config in errors; ``tensor_names``: the models' tensors (recipes then name
    only filters that match them)."""
    cls = SPACES.get(section.kind)
    options = cls.Options.model_validate(section.model_dump(include=set(cls.Options.model_fields)))
    names = tuple(tensor_names) if tensor_names is not None else None
    return cls.build(options, SpaceInputs(base, dict(experts), int(num_layers), int(seed), dtype, source, names))


__all__ = [
    "SPACES",
    "DataFlowSpace",
    "JointSpace",
    "PSDFSSpace",
    "ParameterSpace",
    "SearchSpace",
    "SpaceInputs",
    "build_space",
    "sequential_space",
]
