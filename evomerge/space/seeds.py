"""Seed recipes of a parameter space: each source alone and the untuned merges, by name.

A search that starts from the sources (M2N2's archive, ``driver.options.initial: seeded``) gets
them from :meth:`evomerge.space.ParameterSpace.seed_genomes`, which maps these recipes into the
space with ``from_recipe``. In order:

* ``base`` — every expert's weight 0 (SLERP: t = 0), for methods over a base model;
* ``expert:NAME`` per expert — that expert's weight 1, the others' 0 (SLERP: t = 1): the expert
  itself under every task-vector method (base + 1 · τ);
* ``uniform`` per method — weights 1/n (SLERP: t = 0.5): task arithmetic ½/½ for two experts;
* ``sum`` per task-vector method — weights 1: task arithmetic 1/1.

The sources keep every task-vector entry (density 1); the untuned merges use density
:data:`UNTUNED_DENSITY`. Any other searched parameter takes its default (a parameter without one
is left out, i.e. mid-range in the genome). With ``method_choices`` the sources use the space's
own method and the untuned merges come once per method (``uniform:ties``, ...). Values outside a
searched range are clipped by ``from_recipe``; a seed whose genome repeats an earlier one is left
out by ``seed_genomes``.
"""

from __future__ import annotations

from typing import Any

#: Density of the untuned TIES / DARE merges among the seeds (mergekit's examples use 0.5).
UNTUNED_DENSITY = 0.5


def _value(spec: Any, p: str, kind: str, mine: bool, n: int) -> float | None:
    """Parameter ``p`` in a seed of ``kind`` (``mine``: the expert the seed is); None: leave out."""
    if p == "weight":
        return {"base": 0.0, "expert": float(mine), "uniform": 1.0 / n, "sum": 1.0}[kind]
    if p == "t":
        return {"base": 0.0, "expert": 1.0, "uniform": 0.5}.get(kind)
    if p == "density":
        return 1.0 if kind in ("base", "expert") else UNTUNED_DENSITY
    default = spec.model_params.get(p, spec.global_params.get(p))
    return None if default is None or isinstance(default, bool) else float(default)


def _recipe(space: Any, method: str, kind: str, expert: str | None) -> dict[str, Any]:
    spec = space.specs[method]
    n = len(space.experts)
    models = []
    for e in space.experts:
        mp = {p: _value(spec, p, kind, e == expert, n) for p in space.params if p in spec.model_params}
        models.append({"model": e, "parameters": {p: v for p, v in mp.items() if v is not None}})
    glob = {p: _value(spec, p, kind, False, n) for p in space.params if p in spec.global_params}
    data: dict[str, Any] = {"merge_method": method, "models": models, "dtype": space.dtype, "seed": space.seed}
    if space.base_model is not None:
        data["base_model"] = space.base_model
    glob = {p: v for p, v in glob.items() if v is not None}
    if glob:
        data["parameters"] = glob
    return data


def seed_recipes(space: Any) -> dict[str, dict[str, Any]]:
    """The named seed recipes (recipe mappings) of a :class:`~evomerge.space.ParameterSpace`."""
    primary = space.specs[space.method]
    out: dict[str, dict[str, Any]] = {}
    if space.base_model is not None and primary.needs_base:
        out["base"] = _recipe(space, space.method, "base", None)
    for e, name in zip(space.experts, space.expert_names):
        out[f"expert:{name}"] = _recipe(space, space.method, "expert", e)
    for m in space.methods:
        suffix = "" if m == space.method else f":{m}"
        out[f"uniform{suffix}"] = _recipe(space, m, "uniform", None)
        if space.specs[m].uses_deltas:
            out[f"sum{suffix}"] = _recipe(space, m, "sum", None)
    return out
