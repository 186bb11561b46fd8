"""The merge engine: recipes, parameter resolution, merge methods, mergekit YAML in/out.

It depends on :mod:`evomerge.pool` and the leaf utilities only (never on the search space, the
drivers or the run). Layout: see docs/design.md ("merge engine").
"""

from evomerge.merge.formats import load_recipe
from evomerge.merge.methods import MethodSpec, get_method, method_names
from evomerge.merge.recipes import AnyRecipe, DataFlowRecipe, ModelEntry, Recipe, parse_recipe, recipe_dict

#: The merge engine's arithmetic, versioned: a run records the version that merged its candidates,
#: and ``resume`` warns when another one continues it. 2 (2026-12): DARE/DELLA uniforms from a
#: position hash (:mod:`evomerge.merge.methods.draws`), mergekit's L1 rescale from float64 lane
#: sums (DARE on a CPU: from a table), every bf16 operand widened before any arithmetic.
ENGINE = 2

__all__ = [
    "ENGINE",
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
