"""The merge engine: recipes, parameter resolution, merge methods, mergekit YAML in/out.

It depends on :mod:`evomerge.pool` and the leaf utilities only (never on the search space, the
drivers or the run). Layout: see docs/design.md ("merge engine").
"""

from evomerge.merge.formats import load_recipe
from evomerge.merge.methods import MethodSpec, get_method, method_names
from evomerge.merge.recipes import AnyRecipe, DataFlowRecipe, ModelEntry, Recipe, parse_recipe, recipe_dict

__all__ = [
    "AnyRecipe",
    "DataFlowRecipe",
    "MethodSpec",
    "ModelEntry",
    "Recipe",
    "get_method",
    "load_recipe",
    "method_names",
    "parse_recipe",
    "recipe_dict",
]
