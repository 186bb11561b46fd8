"""Recipe validation, YAML round trip, parameter resolution (gradients, filters, precedence)."""

import pytest

from evomerge.errors import ConfigError
from evomerge.merge import Recipe, load_recipe
from evomerge.merge.params import freeze, interpolate, layer_index, resolve, resolve_key

RECIPE = """\
merge_method: dare_ties
base_model: base
models:
  - model: base
  - model: expert_a
    parameters: {weight: 0.6, density: [0.2, 0.8]}
  - model: expert_b
    parameters:
      weight: [{filter: mlp, value: [0.0, 1.0, 0.5]}, {filter: self_attn, value: 0.25}, {value: 0.9}]
      density: 0.5
parameters: {lambda: 1.5, normalize: true, density: 0.7}
dtype: bfloat16
seed: 11
options: {rescale_mode: inverse_p}
"""


def recipe(**overrides):
    data = {
        "merge_method": "ties",
        "base_model": "b",
        "models": [{"model": "x", "parameters": {"weight": 1.0, "density": 0.5}}],
    }
    data.update(overrides)
    return data


def error_of(data, source="recipe.yaml"):
    with pytest.raises(ConfigError) as exc:
        Recipe.from_dict(data, source)
    return str(exc.value)


# ----------------------------------------------------------------------------- resolution


def test_layer_index():
    assert layer_index("model.layers.7.mlp.up_proj.weight") == 7
    assert layer_index("transformer.h.11.attn.c_attn.bias") == 11
    assert layer_index("model.embed_tokens.weight") is None
    assert layer_index("lm_head.weight") is None
    assert layer_index("transformer.ln_f.weight") is None


def test_interpolate_hand_values():
    assert interpolate([0.2, 0.8], 0.5) == pytest.approx(0.5)
    assert interpolate([0.0, 1.0, 0.5], 0.25) == pytest.approx(0.5)
    assert interpolate([0.0, 1.0, 0.5], 0.75) == pytest.approx(0.75)
    assert interpolate([0.0, 1.0, 0.5], 1.0) == 0.5
    assert interpolate([3.0], 0.4) == 3.0


def test_resolve_gradients_filters_and_precedence():
    r = Recipe.from_yaml(RECIPE)
    # 5 layers: layer 1 → x = 0.25, layer 3 → x = 0.75
    mps, params = resolve(r, "model.layers.1.mlp.down_proj.weight", 1, 5)
    assert len(mps) == 2  # the base's own entry receives no tensors
    assert mps[0] == {"weight": 0.6, "density": pytest.approx(0.2 + 0.6 * 0.25)}
    assert mps[1] == {"weight": pytest.approx(0.5), "density": 0.5}  # [0, 1, 0.5] at 0.25
    assert params == {
        "normalize": True,
        "rescale": True,  # dare_ties default
        "lambda": 1.5,
        "int8_mask": False,
        "rescale_mode": "inverse_p",
        "consensus": "sum",
    }
    mps, _ = resolve(r, "model.layers.3.self_attn.q_proj.weight", 3, 5)
    assert mps[0]["density"] == pytest.approx(0.2 + 0.6 * 0.75)
    assert mps[1]["weight"] == 0.25
    mps, _ = resolve(r, "model.layers.3.input_layernorm.weight", 3, 5)
    assert mps[1]["weight"] == 0.9  # the filter-less fallback
    # global density 0.7 reaches a model only where the model has none of its own
    r2 = Recipe.model_validate({**r.to_dict(), "models": [{"model": "m", "parameters": {"weight": 1.0}}]})
    assert resolve(r2, "model.layers.0.mlp.up_proj.weight", 0, 5)[0][0]["density"] == 0.7


def test_resolve_filter_without_fallback_falls_to_global_then_default():
    r = Recipe.model_validate(
        recipe(
            models=[{"model": "x", "parameters": {"weight": 1.0, "density": [{"filter": "mlp", "value": 0.3}]}}],
            parameters={"density": [{"filter": "attn", "value": 0.6}]},
        )
    )
    assert resolve(r, "model.layers.0.mlp.up_proj.weight", 0, 2)[0][0]["density"] == 0.3
    assert resolve(r, "model.layers.0.self_attn.o_proj.weight", 0, 2)[0][0]["density"] == 0.6
    assert resolve(r, "model.norm.weight", None, 2)[0][0]["density"] == 1.0  # method default


def test_gradient_on_layerless_tensor_is_an_error_naming_tensor_and_key():
    r = Recipe.from_yaml(RECIPE)
    with pytest.raises(ConfigError) as exc:
        resolve(r, "model.embed_tokens.weight", None, 5)
    assert str(exc.value).startswith(
        "models[1].parameters.density is a gradient but tensor 'model.embed_tokens.weight' has no layer index"
    )
    ends = Recipe.model_validate({**r.to_dict(), "options": {"layerless_gradient": "ends"}})
    assert resolve(ends, "model.embed_tokens.weight", None, 5)[0][0]["density"] == pytest.approx(0.2)
    assert resolve(ends, "lm_head.weight", None, 5)[0][0]["density"] == pytest.approx(0.8)
    assert resolve(ends, "model.norm.weight", None, 5)[0][0]["density"] == pytest.approx(0.8)
    start = Recipe.model_validate({**r.to_dict(), "options": {"layerless_gradient": "start"}})
    for name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert resolve(start, name, None, 5)[0][0]["density"] == pytest.approx(0.2), name


def test_one_layer_model_evaluates_gradients_at_one():
    r = Recipe.from_yaml(RECIPE)
    assert resolve(r, "model.layers.0.mlp.up_proj.weight", 0, 1)[0][0]["density"] == pytest.approx(0.8)


def test_resolve_key_changes_only_with_what_matters():
    r = Recipe.from_yaml(RECIPE)
    name = "model.layers.2.mlp.up_proj.weight"
    key = resolve_key(r, name, 2, 5)
    assert key == resolve_key(Recipe.from_yaml(RECIPE), name, 2, 5)
    hash(key)
    data = r.to_dict()
    data["models"][2]["parameters"]["weight"][1]["value"] = 0.3  # touches self_attn tensors only
    assert resolve_key(Recipe.model_validate(data), name, 2, 5) == key
    assert resolve_key(Recipe.model_validate(data), "model.layers.2.self_attn.k_proj.weight", 2, 5) != resolve_key(
        r, "model.layers.2.self_attn.k_proj.weight", 2, 5
    )
    assert resolve_key(Recipe.model_validate({**data, "seed": 12}), name, 2, 5) != key
    mps, params = resolve(r, name, 2, 5)
    assert freeze(mps, params) == key[-1]


def test_thresholds_are_passed_to_model_params():
    r = Recipe.model_validate(recipe(options={"ties_scope": "model"}))
    mps, params = resolve(r, "model.layers.0.mlp.up_proj.weight", 0, 2, thresholds=[0.125])
    assert mps[0]["_threshold"] == 0.125 and params["ties_scope"] == "model"


# ----------------------------------------------------------------------------- YAML


def test_yaml_round_trip(tmp_path):
    r = Recipe.from_yaml(RECIPE)
    text = r.to_yaml()
    assert Recipe.from_yaml(text) == r
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert load_recipe(path) == r
    assert Recipe.from_yaml(path) == r
    assert "density: [0.2, 0.8]" in text  # gradients in flow style, like mergekit


def test_experts_and_spec():
    r = Recipe.from_yaml(RECIPE)
    assert r.expert_ids == ["expert_a", "expert_b"]
    assert r.spec.name == "dare_ties"
    lin = Recipe.model_validate(
        {
            "merge_method": "linear",
            "base_model": "a",
            "models": [{"model": "a", "parameters": {"weight": 1}}, {"model": "b", "parameters": {"weight": 1}}],
        }
    )
    assert lin.expert_ids == ["a", "b"]  # a method without a base merges every listed model


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"merge_method": "frobnicate"},
            "recipe.yaml: merge_method = 'frobnicate': unknown merge method; expected one of: breadcrumbs, ",
        ),
        (
            {
                "models": [
                    {"model": "x", "parameters": {"weight": 1.0, "density": 0.5}},
                    {"model": "y", "parameters": {"weight": 1.0, "density": 1.5}},
                ]
            },
            "recipe.yaml: models[1].parameters.density = 1.5: expected a value in [0, 1]",
        ),
        (
            {"models": [{"model": "x", "parameters": {"weight": 1.0, "density": [0.5, -0.1]}}]},
            "recipe.yaml: models[0].parameters.density[1] = -0.1: expected a value in [0, 1]",
        ),
        (
            {"models": [{"model": "x", "parameters": {"weight": 1.0, "densty": 0.5}}]},
            "recipe.yaml: models[0].parameters.densty: unknown per-model parameter for ties; expected one of: weight, density",
        ),
        (
            {"parameters": {"lamda": 2}},
            "recipe.yaml: parameters.lamda: unknown parameter for ties; expected one of: normalize, rescale, lambda, int8_mask, weight, density",
        ),
        (
            {"models": [{"model": "x", "parameters": {"density": 0.5}}]},
            "recipe.yaml: models[0].parameters.weight: missing; ties needs weight for every model (per model or in the global parameters)",
        ),
        ({"base_model": None}, "recipe.yaml: base_model: missing; merge_method ties needs a base model"),
        ({"models": []}, "recipe.yaml: models = []: expected at least one model"),
        ({"parameters": {"normalize": 1}}, "recipe.yaml: parameters.normalize = 1.0: expected true or false"),
        (
            {"parameters": {"lambda": "big"}},
            "recipe.yaml: parameters.lambda = 'big': expected a number, a gradient list of numbers or a list of {filter, value} entries",
        ),
        (
            {"options": {"ties_scope": "global"}},
            "recipe.yaml: options.ties_scope = 'global': expected one of: tensor, model",
        ),
        (
            {"options": {"rescale_mode": "l1"}},
            "recipe.yaml: options.rescale_mode: unknown option for ties; expected one of: layerless_gradient, ties_scope, consensus",
        ),
        ({"dtype": "int8"}, "recipe.yaml: dtype = 'int8': Input should be 'float32', 'float16' or 'bfloat16'"),
        ({"modles": []}, "recipe.yaml: modles: unknown key"),
        (
            {"models": [{"model": "x", "parameters": {"weight": [{"value": 1.0}, {"filter": "mlp", "value": 2.0}]}}]},
            "recipe.yaml: models[0].parameters.weight[0]: an entry without filter must come last (entries after it never match)",
        ),
        (
            {
                "options": {"ties_scope": "model"},
                "models": [{"model": "x", "parameters": {"weight": 1.0, "density": [0.1, 0.5]}}],
            },
            "recipe.yaml: models[0].parameters.density: options.ties_scope=model trims each whole model with one density; expected a scalar",
        ),
    ],
)
def test_validation_messages(overrides, message):
    assert error_of(recipe(**overrides)).startswith(message)


def test_method_specific_errors():
    assert (
        error_of({"merge_method": "model_stock", "base_model": "b", "models": [{"model": "b"}, {"model": "x"}]})
        == "recipe.yaml: models: model_stock needs at least 2 model(s) besides base_model, got 1"
    )
    assert (
        error_of(
            {
                "merge_method": "slerp",
                "base_model": "b",
                "models": [{"model": "x"}, {"model": "y"}],
                "parameters": {"t": 0.5},
            }
        )
        == "recipe.yaml: models: slerp merges at most 1 model(s) with base_model, got 2"
    )
    assert error_of({"merge_method": "slerp", "base_model": "b", "models": [{"model": "x"}]}) == (
        "recipe.yaml: parameters.t: missing; slerp needs t"
    )
    assert (
        error_of({"merge_method": "slerp", "base_model": "b", "models": [{"model": "x", "parameters": {"t": 0.5}}]})
        == "recipe.yaml: models[0].parameters.t: unknown per-model parameter for slerp; expected one of: none (slerp takes only global parameters)"
    )
    assert (
        error_of(
            {
                "merge_method": "della",
                "base_model": "b",
                "models": [{"model": "x", "parameters": {"weight": 1, "density": 0.9, "epsilon": 0.2}}],
            }
        )
        == "recipe.yaml: models[0].parameters.epsilon = 0.2: density 0.9 ± epsilon must stay inside (0, 1)"
    )


def test_della_epsilon_checked_at_resolve_for_gradients():
    r = Recipe.model_validate(
        {
            "merge_method": "della",
            "base_model": "b",
            "models": [{"model": "x", "parameters": {"weight": 1, "density": [0.5, 0.95]}}],
        }
    )
    resolve(r, "model.layers.0.mlp.up_proj.weight", 0, 2)
    with pytest.raises(
        ConfigError,
        match=r"models\[0\].parameters: density 0.95 ± epsilon 0.15 leaves \(0, 1\) for tensor 'model.layers.1.mlp.up_proj.weight'",
    ):
        resolve(r, "model.layers.1.mlp.up_proj.weight", 1, 2)


def test_required_parameter_without_matching_filter_fails_at_resolve():
    r = Recipe.model_validate(
        recipe(models=[{"model": "x", "parameters": {"weight": [{"filter": "mlp", "value": 1.0}]}}])
    )
    with pytest.raises(ConfigError) as exc:
        resolve(r, "model.layers.0.self_attn.q_proj.weight", 0, 2)
    assert str(exc.value).startswith(
        "models[0].parameters.weight: no value for tensor 'model.layers.0.self_attn.q_proj.weight'"
    )


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("merge_method: ties\nmodels:\n  - model: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        load_recipe(path)
    # one wording for every YAML file evomerge reads (evomerge.validation.format_yaml_error)
    assert str(exc.value).startswith(f"{path}: not valid YAML (line 4):")
    with pytest.raises(
        ConfigError, match=r"^my.yaml: not valid YAML \(line 2\): expected .,. or .\]., but got .<stream end>.$"
    ):
        Recipe.from_yaml("a: [1\n", source_name="my.yaml")


def test_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list.yaml: expected a mapping of recipe keys, got list$"):
        load_recipe(path)
