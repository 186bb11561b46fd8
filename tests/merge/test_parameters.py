"""Each parameter and option is defined once (evomerge.merge.parameters), and every reader follows
that definition: the methods' specs, the recipe's bounds check, the parameter space's default
ranges and its range check, and the mergekit export's refusals."""

from __future__ import annotations

import pytest

from evomerge.errors import ConfigError
from evomerge.merge.methods import get_method, method_names
from evomerge.merge.methods.registry import MethodSpec
from evomerge.merge.parameters import COMMON_OPTIONS, OPTIONS, PARAMETERS, search_range, value_bounds
from evomerge.merge.recipes import Recipe
from evomerge.space import ParameterSpace


def doc(method: str, *, model_params=None, params=None, options=None) -> dict:
    n = 1 if method == "slerp" else 2
    return {
        "merge_method": method,
        "base_model": "base",
        "models": [{"model": f"m{i}", "parameters": {"weight": 0.5, **(model_params or {})}} for i in range(n)]
        if get_method(method).model_params
        else [{"model": f"m{i}"} for i in range(n)],
        "parameters": {"t": 0.5} if method == "slerp" else (params or {}),
        "options": options or {},
    }


def test_specs_take_scope_and_defaults_from_the_definitions():
    overridden = 0
    for name in method_names():
        spec = get_method(name)
        for scope, table in (("model", spec.model_params), ("global", spec.global_params)):
            for p, default in table.items():
                assert PARAMETERS[p].scope == scope, (name, p)
                expected = spec.defaults.get(p, PARAMETERS[p].default)
                assert default == expected and type(default) is type(expected), (name, p)
                overridden += p in spec.defaults and spec.defaults[p] != PARAMETERS[p].default
        assert spec.options == {o: OPTIONS[o].values for o in spec.method_options}
    assert overridden >= 5  # linear, ties, della normalise; dare_*, della* rescale
    assert get_method("breadcrumbs").model_params == {"weight": None, "density": 1.0, "gamma": 0.01}


def test_a_spec_naming_an_undefined_parameter_or_option_is_a_bug():
    with pytest.raises(ValueError, match="unknown or unlisted"):
        MethodSpec("x", lambda *a: None, needs_base=False, uses_deltas=False, params=("weigth",))
    with pytest.raises(ValueError, match="unknown or unlisted"):
        MethodSpec("x", lambda *a: None, needs_base=False, uses_deltas=False, params=("weight",), method_options=("z",))
    with pytest.raises(ValueError, match="unknown or unlisted"):  # a default for a parameter it does not take
        MethodSpec("x", lambda *a: None, needs_base=False, uses_deltas=False, params=("weight",), defaults={"t": 1})


@pytest.mark.parametrize("name", [p for p, d in PARAMETERS.items() if d.bounds is not None])
def test_recipe_bounds_are_the_definitions(name):
    lo, hi = value_bounds(name)
    method = next(m for m in method_names() if name in get_method(m).model_params)
    Recipe.model_validate(doc(method, model_params={name: hi}))  # the bound itself is valid
    with pytest.raises(
        ConfigError, match=rf"^models\[0\]\.parameters\.{name} = {hi + 0.5:g}: expected a value in \[{lo:g}, {hi:g}\]$"
    ):
        Recipe.model_validate(doc(method, model_params={name: hi + 0.5}))


def test_unbounded_parameters_take_any_number():
    assert value_bounds("weight") is None and value_bounds("lambda") is None and value_bounds("nope") is None
    Recipe.model_validate(doc("ties", model_params={"weight": -3.0}, params={"lambda": 7.0}))


def test_parameter_space_default_ranges_are_the_definitions():
    space = ParameterSpace("della", "base", ["m0", "m1"], 4, params=["weight", "density", "epsilon"])
    assert space.ranges == {p: search_range(p) for p in ("weight", "density", "epsilon")}
    lam = ParameterSpace("ties", "base", ["m0", "m1"], 4, params=["lambda"], fixed={"weight": 0.5})
    assert lam.ranges == {"lambda": PARAMETERS["lambda"].search}
    lo, hi = value_bounds("density")
    with pytest.raises(ConfigError, match=rf"goes outside the valid range of density, \[{lo:g}, {hi:g}\]$"):
        ParameterSpace("ties", "base", ["m0", "m1"], 4, ranges={"density": (0.5, hi + 0.5)})
    with pytest.raises(ConfigError, match="no range for parameter 'normalize'"):
        ParameterSpace("ties", "base", ["m0", "m1"], 4, params=["normalize"])


def test_mergekit_export_refuses_exactly_the_options_mergekit_cannot_express():
    refused = [o for o in OPTIONS.values() if o.mergekit is not None]
    assert {o.name for o in refused} == {"ties_scope", "rescale_mode", "consensus", "layerless_gradient"}
    for option in OPTIONS.values():
        method = next(
            m for m in method_names() if option.name in get_method(m).options or option.name in COMMON_OPTIONS
        )
        for value in option.values:
            for weight in (0.5, [0.2, 0.8]):  # without and with a gradient
                mp = {"density": 0.5, "weight": weight}
                r = Recipe.model_validate(doc(method, model_params=mp, options={option.name: value}))
                expressible = option.exports_value(value) or (option.gradients_only and not r.has_gradient())
                if not expressible:
                    with pytest.raises(
                        ConfigError, match=rf"^options\.{option.name} = {value}: cannot export to mergekit \("
                    ):
                        r.to_mergekit()
                else:
                    assert r.to_mergekit()["merge_method"] == method
    # mergekit expresses exactly its own rule for layer-less tensors (x = 0 since 0.1.2)
    assert OPTIONS["layerless_gradient"].exports == ("error", "start")
