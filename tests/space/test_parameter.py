"""Parameter space: genome ↔ Recipe, checked against the merge engine's own parameter resolution."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evomerge.errors import ConfigError
from evomerge.space import ParameterSpace


def _space(**kw):
    args = dict(method="dare_ties", base_model="base", models=["x/e1", "x/e2"], num_layers=4)
    args.update(kw)
    return ParameterSpace(
        args.pop("method"), args.pop("base_model"), args.pop("models"), args.pop("num_layers"), **args
    )


def _numbers(obj):
    """Every number in a nested structure, in order (for approximate recipe comparison)."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, dict):
        return [n for k in sorted(obj) for n in _numbers(obj[k])]
    return [n for v in obj for n in _numbers(v)]


def _shape(obj):
    """The structure with numbers blanked out."""
    if isinstance(obj, dict):
        return {k: _shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_shape(v) for v in obj]
    return "#" if isinstance(obj, (int, float)) and not isinstance(obj, bool) else obj


def _same_recipe(a, b):
    da, db = a.to_dict(), b.to_dict()
    assert _shape(da) == _shape(db)
    np.testing.assert_allclose(_numbers(da), _numbers(db), rtol=0, atol=1e-12)


def test_layout_names_boundaries():
    s = _space(layer_groups=2)
    assert s.groups == ["embed", "layers.0-1", "layers.2-3", "head"]
    assert s.dim == 4 * 2 * 2
    assert s.names[:4] == ["embed/e1/weight", "embed/e2/weight", "embed/e1/density", "embed/e2/density"]
    assert s.names[4] == "layers.0-1/e1/weight" and s.names[-1] == "head/e2/density"
    assert s.group_boundaries == [0, 4, 8, 12, 16]
    assert np.all(s.x0 == 0.5) and s.sigma0 == pytest.approx(1 / 6)
    assert (s.lower.tolist(), s.upper.tolist()) == ([0.0] * 16, [1.0] * 16)
    f = _space(layer_groups=[0, 1, 4], non_layer="fold")
    assert f.groups == ["layers.0", "layers.1-3"] and f.dim == 8
    assert _space(layer_groups=4).groups[1:-1] == ["layers.0", "layers.1", "layers.2", "layers.3"]
    assert _space(layer_groups=3, num_layers=8).layer_bounds == [0, 3, 5, 8]


def test_x0_gives_scalars():
    r = _space(layer_groups=2).to_recipe(np.full(16, 0.5))
    d = r.to_dict()
    assert d["merge_method"] == "dare_ties" and d["base_model"] == "base"
    params = [m["parameters"] for m in d["models"] if m["model"] != "base"]
    assert params == [{"weight": 0.5, "density": pytest.approx(0.55)}] * 2


def test_hand_computed_recipe():
    s = _space(layer_groups=2)
    x = np.full(s.dim, 0.5)
    x[s.names.index("embed/e1/weight")] = 0.1
    x[s.names.index("layers.0-1/e1/weight")] = 0.2
    x[s.names.index("layers.2-3/e1/weight")] = 0.8
    x[s.names.index("head/e1/weight")] = 1.0
    x[s.names.index("layers.2-3/e2/density")] = 0.0  # density range (0.1, 1) → 0.1
    r = s.to_recipe(x)
    dumped = r.to_dict()["models"]
    e1, e2 = dumped[0]["parameters"], dumped[1]["parameters"]
    assert dumped[0]["parameters"]["weight"] == [
        {"filter": "embed_tokens", "value": 0.1},
        {"filter": "wte", "value": 0.1},
        {"filter": "wpe", "value": 0.1},
        {"filter": "lm_head", "value": 1.0},
        {"filter": "model.norm.", "value": 1.0},
        {"filter": "ln_f", "value": 1.0},
        {"value": [0.2, 0.2, 0.8, 0.8]},
    ]
    assert e1["density"] == pytest.approx(0.55) and e2["weight"] == 0.5
    d = dumped[1]["parameters"]["density"]
    assert d[-1]["value"] == pytest.approx([0.55, 0.55, 0.1, 0.1]) and d[0]["value"] == pytest.approx(0.55)
    # Out-of-box genes are clipped.
    x[0] = -3.0
    assert s.to_recipe(x).to_dict()["models"][0]["parameters"]["weight"][0]["value"] == 0.0


@settings(max_examples=40, deadline=None)
@given(
    groups=st.integers(1, 6),
    non_layer=st.sampled_from(["separate", "fold"]),
    method=st.sampled_from(["dare_ties", "ties", "task_arithmetic", "slerp", "linear"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_round_trip(groups, non_layer, method, seed):
    models = ["base", "x/e1"] if method == "slerp" else ["x/e1", "x/e2", "y/e1"]
    s = _space(
        method=method,
        models=models,
        num_layers=6,
        layer_groups=groups,
        non_layer=non_layer,
        base_model=None if method == "linear" else "base",
    )
    x = np.random.default_rng(seed).uniform(0, 1, s.dim)
    r = s.to_recipe(x)
    np.testing.assert_allclose(s.from_recipe(r), x, atol=1e-12)
    from evomerge.merge.recipes.parameter import Recipe

    r2 = Recipe.from_yaml(r.to_yaml())
    np.testing.assert_allclose(s.from_recipe(r2), x, atol=1e-12)
    np.testing.assert_allclose(s.from_recipe(r.to_dict()), x, atol=1e-12)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("non_layer", ["separate", "fold"])
def test_engine_resolves_group_values(arch, non_layer):
    """Every tensor of a real model gets exactly its group's value from the merge engine."""
    from evomerge.merge.params import layer_index, resolve
    from evomerge.testing import build_model

    L = 5
    names = list(build_model(arch, num_layers=L).state_dict())
    s = _space(method="ties", num_layers=L, layer_groups=[0, 2, 3, 5], non_layer=non_layer)
    x = np.random.default_rng(7).uniform(0, 1, s.dim)
    r = s.to_recipe(x)
    for name in names:
        li = layer_index(name)
        if li is None:
            g = 0 if ("wte" in name or "wpe" in name or "embed" in name) else len(s.groups) - 1
        else:
            g = s._layer_group0 + int(np.searchsorted(s.layer_bounds, li, side="right")) - 1
        per_model, _ = resolve(r, name, li, L)
        for k, e in enumerate(s.experts):
            for p in ("weight", "density"):
                expected = s._to_value(p, x[s.names.index(f"{s.groups[g]}/{e.split('/')[-1]}/{p}")])
                assert per_model[k][p] == pytest.approx(expected, abs=1e-12), (name, e, p)


def test_method_choice_and_fixed():
    s = _space(
        method="ties",
        method_choices=["ties", "slerp"],
        params=["weight", "density", "t"],
        fixed={"lambda": 1.2},
        models=["base", "x/e1"],
        layer_groups=1,
    )
    assert s.names[-2:] == ["method/ties", "method/slerp"] and s.scope == {
        "weight": "model",
        "density": "model",
        "t": "global",
    }
    x = np.full(s.dim, 0.5)
    r = s.to_recipe(x)  # tie → first choice
    assert r.merge_method == "ties"
    assert r.to_dict()["parameters"] == {"lambda": 1.2}
    x[-1] = 0.9
    x[s.names.index("embed/t")] = 0.25
    r = s.to_recipe(x)
    assert r.merge_method == "slerp"
    assert all(not m.get("parameters") for m in r.to_dict()["models"])
    t = r.to_dict()["parameters"]["t"]
    assert t[0] == {"filter": "embed_tokens", "value": 0.25} and t[-1] == {"value": 0.5}
    back = s.from_recipe(r)
    assert back[-1] > back[-2]
    _same_recipe(s.to_recipe(back), r)


def test_errors():
    with pytest.raises(ConfigError, match="unknown merge method 'nope'"):
        _space(method="nope")
    with pytest.raises(ConfigError, match=r"params: 'density' is not a parameter of method\(s\) \['linear'\]"):
        _space(method="linear", base_model=None, params=["weight", "density"])
    with pytest.raises(ConfigError, match="layer_groups must be between 1 and num_layers=4, got 5"):
        _space(layer_groups=5)
    with pytest.raises(ConfigError, match=r"boundaries must rise strictly from 0 to num_layers=4, got \[0, 2, 2, 4\]"):
        _space(layer_groups=[0, 2, 2, 4])
    with pytest.raises(ConfigError, match="no range for parameter 'rescale'"):
        _space(params=["weight", "rescale"])
    with pytest.raises(ConfigError, match="both searched"):
        _space(params=["weight"], fixed={"weight": 1.0})
    with pytest.raises(ConfigError, match="recipe method 'ties' is not one of"):
        _space().from_recipe(
            {"merge_method": "ties", "base_model": "base", "models": [{"model": "x/e1", "parameters": {"weight": 1}}]}
        )


@pytest.mark.parametrize(
    "settings, line",
    [
        ({"method": "tie"}, "key 'space.method': unknown merge method 'tie' (did you mean 'ties'?)"),
        (
            {"method_choices": ["ties", "slerpp"]},
            "key 'space.method_choices.1': unknown merge method 'slerpp' (did you mean 'slerp'?)",
        ),
        (
            {"ranges": {"weight": (1.0, 0.5)}},
            "key 'space.ranges.weight': expected [lo, hi] with lo <= hi, got [1, 0.5]",
        ),
        ({"non_layer": "merge"}, "key 'space.non_layer': Input should be 'separate' or 'fold' (got 'merge')"),
        ({"layer_group": 2}, "unknown key 'space.layer_group' (did you mean 'space.layer_groups'?)"),
    ],
)
def test_option_errors_are_one_line(settings, line):
    with pytest.raises(ConfigError) as exc:
        _space(**settings)
    assert str(exc.value) == line


def test_wrong_genome_length():
    with pytest.raises(ConfigError, match="genome has 2 genes, expected 12"):
        _space().to_recipe(np.zeros(2))


def test_incompatible_method_choice_fails_at_construction():
    # SLERP merges exactly two models (the base and one other); three experts cannot form a recipe.
    with pytest.raises(ConfigError, match="method 'slerp' cannot be used with these models/params"):
        _space(method="ties", method_choices=["ties", "slerp"], params=["weight", "t"], models=["x/e1", "x/e2", "x/e3"])


def test_default_genes_skip_parameters_the_method_ignores():
    # task_arithmetic accepts `density` for mergekit compatibility but never reads it: no dead genes.
    ta = ParameterSpace("task_arithmetic", "base", ["base", "e1", "e2"], num_layers=4, layer_groups=2)
    assert ta.params == ["weight"] and ta.dim == 4 * 2
    ties = ParameterSpace("ties", "base", ["base", "e1", "e2"], num_layers=4, layer_groups=2)
    assert ties.params == ["weight", "density"]


LLAMA_NAMES = (
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.1.mlp.up_proj.weight",
    "model.norm.weight",
    "lm_head.weight",
)
GPT2_NAMES = (
    "transformer.wte.weight",
    "transformer.wpe.weight",
    "transformer.h.0.attn.c_attn.weight",
    "transformer.ln_f.weight",
)


def _spread_weights(space):
    x = np.full(space.dim, 0.5)
    x[space.names.index("embed/e1/weight")] = 0.1
    x[space.names.index("head/e1/weight")] = 1.0
    return space.to_recipe(x).to_dict()["models"][0]["parameters"]["weight"]


@pytest.mark.parametrize(
    "names, expected",
    [
        (LLAMA_NAMES, [("embed_tokens", 0.1), ("lm_head", 1.0), ("model.norm.", 1.0)]),
        (GPT2_NAMES, [("wte", 0.1), ("wpe", 0.1), ("ln_f", 1.0)]),
        # a family neither list knows (Falcon's names): the layer-less tensors by their full names
        (
            ("transformer.word_embeddings.weight", "transformer.h.0.mlp.weight", "transformer.ln_f.weight"),
            [("transformer.word_embeddings.weight", 0.1), ("ln_f", 1.0)],
        ),
    ],
)
def test_a_recipe_names_only_filters_of_its_models_architecture(names, expected):
    from evomerge.config import parse_config
    from evomerge.space import build_space

    config = {
        "toyworld": {"preset": "test"},
        "budget": {"max_evals": 1},
        "space": {"kind": "parameter", "method": "ties"},
    }
    section = parse_config(config).space
    space = build_space(
        section,
        base="base",
        experts={"e1": "x/e1", "e2": "x/e2"},
        num_layers=2,
        seed=0,
        dtype="float32",
        tensor_names=names,
    )
    assert _spread_weights(space) == [{"filter": f, "value": v} for f, v in expected] + [{"value": 0.5}]
    # every layer-less tensor gets its group's value through the engine's own resolution
    from evomerge.merge.params import layer_index, resolve

    recipe = space.to_recipe(np.where(np.array([n == "embed/e1/weight" for n in space.names]), 0.1, 0.5))
    for name in names:
        if layer_index(name) is None:
            got = resolve(recipe, name, None, 2)[0][0]["weight"]
            assert got == pytest.approx(0.1 if "emb" in name or "wte" in name or "wpe" in name else 0.5), name
    # without names (no models at hand) the recipe lists every supported family's filters
    assert [e.get("filter") for e in _spread_weights(_space(method="ties", num_layers=2))][:-1] == [
        "embed_tokens",
        "wte",
        "wpe",
        "lm_head",
        "model.norm.",
        "ln_f",
    ]
