"""Merge recipes: one discriminated union over the kinds, on ``merge_method``.

- ``merge_method: dataflow`` → :class:`~evomerge.merge.recipes.dataflow.DataFlowRecipe` (a layer path);
- any other value (a parameter-space method) → :class:`~evomerge.merge.recipes.parameter.Recipe`.

Every kind has the same surface, so callers never branch on the kind:
``build(live) -> (model, tokenizer)`` (into a worker's :class:`~evomerge.merge.live.LiveModels`),
``materialize(out_dir, *, device, dtype, force, progress, max_shard_bytes)`` (a checkpoint),
``load_model(workdir, *, device, dtype) -> (model, tokenizer)`` (score once), ``to_mergekit()`` /
``to_mergekit_yaml()``, ``to_yaml()``, ``parameter_recipe()`` (the parameter-space merge inside).

:func:`parse_recipe` turns a recipe's plain form (an evaluation request's, a run log's) into its kind;
:func:`recipe_dict` is the inverse. Files: :func:`evomerge.merge.formats.load_recipe`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Union

from pydantic import Discriminator, Tag

from evomerge.errors import ConfigError
from evomerge.merge.recipes.dataflow import DataFlowRecipe, PathStep
from evomerge.merge.recipes.parameter import ModelEntry, Recipe

DATAFLOW = "dataflow"


def recipe_kind(recipe: Any) -> str:
    """``"dataflow"`` or ``"parameter"``: the kind of a recipe object or of its plain form."""
    method = recipe.get("merge_method") if isinstance(recipe, Mapping) else getattr(recipe, "merge_method", None)
    return "dataflow" if method == DATAFLOW else "parameter"


#: The union as a pydantic type (a field of this type validates into the right kind).
AnyRecipe = Annotated[
    Union[Annotated[Recipe, Tag("parameter")], Annotated[DataFlowRecipe, Tag("dataflow")]],  # noqa: UP007
    Discriminator(recipe_kind),
]


def parse_recipe(data: Mapping[str, Any] | Recipe | DataFlowRecipe) -> Recipe | DataFlowRecipe:
    """The recipe of its kind for ``data`` (a recipe object is returned as is); an invalid recipe
    is one line of :class:`~evomerge.errors.ConfigError`, worded by its kind."""
    if isinstance(data, (Recipe, DataFlowRecipe)):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"recipe: expected a mapping of recipe keys, got {type(data).__name__}")
    if recipe_kind(data) == "dataflow":
        return DataFlowRecipe.validate_dict(dict(data))
    return Recipe.model_validate(dict(data))


def recipe_dict(recipe: Any) -> dict[str, Any]:
    """A recipe object (pydantic model) or dict → a JSON-able dict (an evaluation request's, a log record's)."""
    if isinstance(recipe, Mapping):
        return dict(recipe)
    dump = getattr(recipe, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    raise TypeError(f"cannot turn a {type(recipe).__name__} into a recipe dict")


__all__ = [
    "AnyRecipe",
    "DataFlowRecipe",
    "ModelEntry",
    "PathStep",
    "Recipe",
    "parse_recipe",
    "recipe_dict",
    "recipe_kind",
]
