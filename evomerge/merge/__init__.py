"""The merge engine: recipes, parameter resolution, merge methods, mergekit YAML in/out."""

from evomerge.merge.methods import MethodSpec, get_method, method_names
from evomerge.merge.recipe import ModelEntry, Recipe, load_recipe

__all__ = ["MethodSpec", "ModelEntry", "Recipe", "get_method", "load_recipe", "method_names"]
