"""Reading recipe files of every format evomerge accepts: our YAML, mergekit YAML, data-flow recipes.

:func:`load_recipe` sniffs the format of a file:

- ``merge_method: dataflow`` → :class:`~evomerge.merge.recipes.dataflow.DataFlowRecipe`;
- our YAML (only our keys, and ``seed`` or ``options`` present, as ``Recipe.to_yaml`` always
  writes) → :class:`~evomerge.merge.recipes.parameter.Recipe`;
- anything else is read as mergekit YAML (:func:`from_mergekit`), which refuses what a
  parameter-space recipe cannot express.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from evomerge.errors import ConfigError, EvomergeError
from evomerge.merge.mergekit_io import read_mergekit, refuse
from evomerge.merge.recipes import DataFlowRecipe, Recipe, recipe_kind
from evomerge.merge.recipes.parameter import OUR_KEYS
from evomerge.merge.yaml_text import read_yaml_source
from evomerge.validation import parse_yaml


def load_recipe(path: str | os.PathLike) -> Recipe | DataFlowRecipe:
    """The recipe in the file ``path``, of whichever format it is (see the module docstring)."""
    text, source = read_yaml_source(Path(path))
    data = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of recipe keys, got {type(data).__name__}")
    if recipe_kind(data) == "dataflow":
        return DataFlowRecipe.from_yaml(path)
    if set(data) <= set(OUR_KEYS) and ("seed" in data or "options" in data):
        return Recipe.from_dict(data, source)
    return from_mergekit(data, source_name=source)


def from_mergekit(data: dict[str, Any] | str, source_name: str | None = None) -> Recipe:
    """A :class:`~evomerge.merge.recipes.parameter.Recipe` from a mergekit config (dict or YAML
    text); refuses what we cannot express (:func:`evomerge.merge.mergekit_io.read_mergekit`).

    Without an ``evomerge:`` block carrying ``options``, a recipe holding a gradient gets
    ``options.layerless_gradient: start`` (mergekit's rule: x = 0 for the embeddings, the final
    norm and the head)."""
    source = source_name
    if isinstance(data, str):
        source = source or "<mergekit config>"
        data = parse_yaml(data, source)
    recipe, options = read_mergekit(data, source)
    parsed = _validated(recipe, source)
    if options is None:
        options = {"layerless_gradient": "start"} if parsed.has_gradient() else {}
    return _validated({**parsed.to_dict(), "options": options}, source)


def _validated(data: dict[str, Any], source: str | None) -> Recipe:
    try:
        return Recipe.model_validate(data)
    except EvomergeError as exc:
        raise refuse(source, str(exc)) from None
