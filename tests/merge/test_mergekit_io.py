"""mergekit YAML import/export: round trips, a hand-written mergekit file, refusals."""

import pytest
import yaml

from evomerge.errors import ConfigError
from evomerge.merge import Recipe, load_recipe
from evomerge.merge.formats import from_mergekit
from evomerge.merge.mergekit_io import to_mergekit, to_mergekit_yaml
from evomerge.merge.params import resolve

# As a user would write it for mergekit-yaml (comments, base listed among models, filters, "*").
MERGEKIT_SLERP = """\
slices:
  - sources:
      - model: a
        layer_range: [0, 32]
      - model: b
        layer_range: [0, 32]
merge_method: slerp
base_model: a
"""

MERGEKIT_TIES = """\
# TIES merge of two fine-tunes
models:
  - model: mistralai/Mistral-7B-v0.1
    # no parameters necessary for base model
  - model: OpenPipe/mistral-ft-optimized-1218
    parameters:
      density: 0.5
      weight: [0, 0.3, 0.7, 1]
  - model: mlabonne/NeuralHermes-2.5-Mistral-7B
    parameters:
      density: 0.5
      weight:
        - filter: mlp
          value: 0.5
        - filter: "*"
          value: 0.3
        - filter: self_attn
          value: 0.9
merge_method: ties
base_model: mistralai/Mistral-7B-v0.1
parameters:
  normalize: true
  int8_mask: true
dtype: float16
"""

MERGEKIT_SLERP_MODELS = """\
merge_method: slerp
base_model: a
models:
  - model: a
  - model: b
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
dtype: bfloat16
"""


def _recipes():
    yield Recipe.model_validate(
        {
            "merge_method": "linear",
            "models": [{"model": "a", "parameters": {"weight": 0.3}}, {"model": "b", "parameters": {"weight": 0.7}}],
            "parameters": {"normalize": False},
        }
    )
    for method in (
        "task_arithmetic",
        "ties",
        "dare_linear",
        "dare_ties",
        "breadcrumbs",
        "breadcrumbs_ties",
        "della",
        "della_linear",
    ):
        extra = {"gamma": 0.02} if "breadcrumbs" in method else {"epsilon": 0.05} if "della" in method else {}
        yield Recipe.model_validate(
            {
                "merge_method": method,
                "base_model": "base",
                "models": [
                    {"model": "a", "parameters": {"weight": [0.2, 0.9], "density": 0.4, **extra}},
                    {
                        "model": "b",
                        "parameters": {"weight": [{"filter": "mlp", "value": 0.5}, {"value": 1.0}], "density": 0.6},
                    },
                ],
                "parameters": {"lambda": 1.2},
                "dtype": "bfloat16",
                "seed": 5,
            }
        )
    yield Recipe.model_validate(
        {
            "merge_method": "slerp",
            "base_model": "base",
            "models": [{"model": "a"}],
            "parameters": {"t": [0.0, 0.5, 1.0]},
        }
    )
    yield Recipe.model_validate(
        {
            "merge_method": "model_stock",
            "base_model": "base",
            "models": [{"model": "a"}, {"model": "b"}],
            "parameters": {"filter_wise": True},
        }
    )
    yield Recipe.model_validate(
        {
            "merge_method": "linear",
            "base_model": "a",
            "models": [{"model": "b", "parameters": {"weight": 1}}, {"model": "c", "parameters": {"weight": 2}}],
        }
    )


@pytest.mark.parametrize("recipe", list(_recipes()), ids=lambda r: r.merge_method)
def test_round_trip_ours_mergekit_ours(recipe, tmp_path):
    text = to_mergekit_yaml(recipe)
    assert from_mergekit(text) == recipe
    path = tmp_path / "mk.yaml"
    path.write_text(text)
    assert load_recipe(path) == recipe  # detected as mergekit YAML (no top-level seed/options)


def test_export_shape_is_plain_mergekit():
    recipe = next(r for r in _recipes() if r.merge_method == "dare_ties")
    data = to_mergekit(recipe)
    assert data["merge_method"] == "dare_ties"
    assert data["base_model"] == "base"
    assert data["models"][0] == {"model": "a", "parameters": {"weight": [0.2, 0.9], "density": 0.4}}
    assert data["models"][1]["parameters"]["weight"] == [{"filter": "mlp", "value": 0.5}, {"value": 1.0}]
    assert data["parameters"] == {"lambda": 1.2}
    assert data["dtype"] == "bfloat16"
    assert data["evomerge"] == {"seed": 5, "options": {}}
    assert "seed" not in data and "options" not in data
    yaml.safe_load(to_mergekit_yaml(recipe))  # valid YAML


def test_linear_export_moves_unlisted_base_out_of_mergekits_way():
    recipe = list(_recipes())[-1]
    data = to_mergekit(recipe)
    assert "base_model" not in data and data["evomerge"] == {"base_model": "a"}


def test_import_hand_written_mergekit_ties(tmp_path):
    path = tmp_path / "ties.yaml"
    path.write_text(MERGEKIT_TIES)
    r = load_recipe(path)
    assert r.merge_method == "ties"
    assert r.base_model == "mistralai/Mistral-7B-v0.1"
    assert r.expert_ids == ["OpenPipe/mistral-ft-optimized-1218", "mlabonne/NeuralHermes-2.5-Mistral-7B"]
    assert r.dtype == "float16"
    assert r.parameters == {"normalize": True, "int8_mask": True}
    # "*" is the fallback; the entry after it is unreachable in mergekit and dropped
    assert r.models[2].parameters["weight"] == [{"filter": "mlp", "value": 0.5}, {"filter": None, "value": 0.3}]
    # a gradient and no evomerge block → mergekit's rule for layer-less tensors
    assert r.options == {"layerless_gradient": "start"}
    mps, _ = resolve(r, "model.layers.10.self_attn.q_proj.weight", 10, 31)
    assert mps[0]["weight"] == pytest.approx(0.3)  # x = 1/3 → the second anchor
    mps, _ = resolve(r, "model.layers.15.mlp.up_proj.weight", 15, 31)
    # x = 0.5 on [0, 0.3, 0.7, 1]: s = 1.5 → 0.5·0.3 + 0.5·0.7
    assert mps[0] == {"weight": pytest.approx(0.5), "density": 0.5}
    assert mps[1] == {"weight": 0.5, "density": 0.5}
    mps, _ = resolve(r, "model.layers.15.self_attn.q_proj.weight", 15, 31)
    assert mps[1]["weight"] == 0.3
    mps, _ = resolve(r, "model.embed_tokens.weight", None, 31)
    assert mps[0]["weight"] == 0.0  # embeddings at x = 0
    mps, _ = resolve(r, "lm_head.weight", None, 31)
    assert mps[0]["weight"] == 0.0  # head at x = 0 too (mergekit >= 0.1.2)


def test_import_slerp_with_filtered_gradients():
    r = from_mergekit(MERGEKIT_SLERP_MODELS)
    assert r.merge_method == "slerp" and r.expert_ids == ["b"] and r.dtype == "bfloat16"
    _, params = resolve(r, "model.layers.1.self_attn.o_proj.weight", 1, 5)
    assert params["t"] == 0.5  # x = 0.25 on 5 anchors → index 1
    _, params = resolve(r, "model.layers.1.mlp.gate_proj.weight", 1, 5)
    assert params["t"] == 0.5
    _, params = resolve(r, "model.layers.3.mlp.gate_proj.weight", 3, 5)
    assert params["t"] == 0.3
    _, params = resolve(r, "model.norm.weight", None, 5)
    assert params["t"] == 0.5


@pytest.mark.parametrize(
    "text, message",
    [
        (
            MERGEKIT_SLERP,
            "mk.yaml: slices: mergekit slices cannot be expressed in a parameter-space recipe; use models:",
        ),
        (
            "merge_method: nuslerp\nmodels: [{model: a}]\n",
            "mk.yaml: merge_method = 'nuslerp': mergekit method with no evomerge equivalent; expected one of: breadcrumbs, ",
        ),
        (
            "merge_method: passthrough\nslices: []\n",
            "mk.yaml: merge_method = 'passthrough': layer stacking is a data-flow recipe (merge_method: dataflow), not a parameter-space one",
        ),
        (
            "merge_method: linear\nmodels: [{model: a+lora/x, parameters: {weight: 1}}]\n",
            "mk.yaml: models[0].model = 'a+lora/x': LoRA-augmented model references (model+lora) are not supported",
        ),
        (
            "merge_method: linear\ntokenizer_source: union\nmodels: [{model: a, parameters: {weight: 1}}]\n",
            "mk.yaml: tokenizer_source = 'union': only the base model's tokenizer is supported",
        ),
        (
            "merge_method: linear\nmodels: [{model: a, parameters: {weight: high}}]\n",
            "mk.yaml: models[0].parameters.weight = 'high': string parameter values are not supported; expected a number",
        ),
        (
            "merge_method: ties\nbase_model: b\nmodels: [{model: a, parameters: {weight: 1, density: 2}}]\n",
            "mk.yaml: models[0].parameters.density = 2.0: expected a value in [0, 1]",
        ),
        (
            "merge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}]\nfoo: 1\n",
            "mk.yaml: foo: unknown key; expected one of: ",
        ),
        (
            "merge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}]\nout_dtype: int4\n",
            "mk.yaml: out_dtype = 'int4': expected one of: float32, float16, bfloat16",
        ),
    ],
)
def test_import_refusals(text, message, tmp_path):
    path = tmp_path / "mk.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_recipe(path)
    assert str(exc.value).replace(str(tmp_path) + "/", "").startswith(message)


@pytest.mark.parametrize(
    "method, options, message",
    [
        (
            "ties",
            {"ties_scope": "model"},
            "options.ties_scope = model: cannot export to mergekit (mergekit trims each tensor separately, not the whole model)",
        ),
        (
            "dare_ties",
            {"rescale_mode": "inverse_p"},
            "options.rescale_mode = inverse_p: cannot export to mergekit (mergekit rescales survivors to keep each tensor's L1 norm, not by 1/p)",
        ),
        (
            "ties",
            {"consensus": "count"},
            "options.consensus = count: cannot export to mergekit (mergekit's TIES-family methods elect signs by weighted sum only)",
        ),
    ],
)
def test_export_refusals(method, options, message):
    r = Recipe.model_validate(
        {
            "merge_method": method,
            "base_model": "b",
            "models": [{"model": "a", "parameters": {"weight": 1, "density": 0.5}}],
            "options": options,
        }
    )
    with pytest.raises(ConfigError) as exc:
        to_mergekit(r)
    assert str(exc.value) == message


def test_mergekit_rule_for_layerless_tensors_is_x_zero_for_embeddings_norm_and_head():
    """mergekit 0.1.5 resolves embeddings, final norm and head with one ConfigReader at t = 0, so a
    gradient [a, b, c] gives them a; layers ℓ of L get the interpolation at ℓ / (L − 1)."""
    r = from_mergekit(
        "merge_method: ties\nbase_model: b\nmodels:\n  - model: b\n  - model: e\n"
        "    parameters: {weight: [0.2, 0.6, 1.0], density: [0.9, 0.5]}\n"
    )
    assert r.options == {"layerless_gradient": "start"}
    L = 5
    for name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "transformer.ln_f.weight"):
        assert resolve(r, name, None, L)[0][0] == {"weight": 0.2, "density": 0.9}, name
    # layer 1 of 5: x = 1/4; weight s = 0.5 → 0.5·0.2 + 0.5·0.6 = 0.4; density s = 0.25 → 0.75·0.9 + 0.25·0.5
    mp = resolve(r, "model.layers.1.mlp.up_proj.weight", 1, L)[0][0]
    assert mp["weight"] == pytest.approx(0.4) and mp["density"] == pytest.approx(0.8)
    assert resolve(r, "model.layers.4.mlp.up_proj.weight", 4, L)[0][0] == {"weight": 1.0, "density": 0.5}
    # exported again, mergekit reads the same rule: the option travels and round-trips
    assert to_mergekit(r)["evomerge"] == {"options": {"layerless_gradient": "start"}}
    assert from_mergekit(to_mergekit(r)) == r


def test_export_refuses_the_pre_0_1_2_rule_when_a_gradient_could_reach_the_head():
    doc = {
        "merge_method": "ties",
        "base_model": "b",
        "models": [{"model": "a", "parameters": {"weight": [0.2, 1.0]}}],
        "options": {"layerless_gradient": "ends"},
    }
    with pytest.raises(ConfigError) as exc:
        to_mergekit(Recipe.model_validate(doc))
    assert str(exc.value) == (
        "options.layerless_gradient = ends: cannot export to mergekit (mergekit >= 0.1.2 evaluates a gradient "
        "at x = 0 on every tensor without a layer index (options.layerless_gradient: start))"
    )


def test_export_allows_mergekit_compatible_options():
    r = Recipe.model_validate(
        {
            "merge_method": "ties",
            "base_model": "b",
            "models": [{"model": "a", "parameters": {"weight": 1}}],
            "options": {"ties_scope": "tensor", "layerless_gradient": "ends"},
        }
    )
    assert from_mergekit(to_mergekit(r)) == r
