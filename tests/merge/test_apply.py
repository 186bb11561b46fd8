"""In-place merge into a live module: equals the materialized checkpoint, never reallocates,
recomputes only what changed, handles tied embeddings (GPT-2)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from evomerge.errors import ModelError
from evomerge.merge.apply import InPlaceMerger, merged_tensors, pool_for_recipe
from evomerge.merge.materialize import materialize
from evomerge.merge.recipes.parameter import Recipe

METHODS = ["linear", "task_arithmetic", "ties", "dare_ties", "slerp"]
IDS = torch.tensor([[1, 8, 9, 10, 11, 12, 13, 14], [1, 20, 21, 22, 5, 6, 7, 2]])


def recipe_for(method: str, family: dict, **overrides) -> Recipe:
    base = str(family["base"])
    e1, e2 = (str(e) for e in family["experts"])
    if method == "linear":
        models = [
            {"model": base, "parameters": {"weight": 0.2}},
            {"model": e1, "parameters": {"weight": 0.5}},
            {"model": e2, "parameters": {"weight": 0.3}},
        ]
        doc = {"merge_method": "linear", "models": models}
    elif method == "slerp":
        doc = {"merge_method": "slerp", "base_model": base, "models": [{"model": e1}], "parameters": {"t": 0.35}}
    else:
        dense = method in ("ties", "dare_ties")
        models = [
            {"model": e1, "parameters": {"weight": 0.7, **({"density": 0.6} if dense else {})}},
            {"model": e2, "parameters": {"weight": 0.5, **({"density": 0.4} if dense else {})}},
        ]
        doc = {"merge_method": method, "base_model": base, "models": models, "parameters": {"lambda": 1.2}, "seed": 7}
    doc.update(overrides)
    return Recipe.model_validate(doc)


def live_model(family):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(family["base"], dtype=torch.float32).eval()


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def family(request):
    return request.getfixturevalue(f"tiny_{request.param}_family")


@pytest.mark.parametrize("method", METHODS)
def test_inplace_equals_materialized_reload(method, family, tmp_path):
    from transformers import AutoModelForCausalLM

    recipe = recipe_for(method, family)
    model = live_model(family)
    ptrs = {name: p.data_ptr() for name, p in model.named_parameters()}
    before = model(IDS).logits.detach().clone()
    stats = InPlaceMerger(pool_for_recipe(recipe), model).apply(recipe)
    assert stats.recomputed == len(dict(model.named_parameters())) and stats.skipped == 0
    assert {name: p.data_ptr() for name, p in model.named_parameters()} == ptrs  # no reallocation

    out = materialize(recipe, tmp_path / "merged", progress=False)
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        merged_logits = model(IDS).logits
        assert torch.equal(merged_logits, reloaded(IDS).logits)
    assert not torch.equal(merged_logits, before)  # the merge did change the model
    for name, p in reloaded.state_dict().items():
        assert torch.equal(p, model.state_dict()[name]), name


def test_task_arithmetic_against_hand_computed_weights(tiny_llama_family):
    recipe = recipe_for("task_arithmetic", tiny_llama_family)
    model = live_model(tiny_llama_family)
    InPlaceMerger(pool_for_recipe(recipe), model).apply(recipe)
    b = load_file(str(tiny_llama_family["base"] / "model.safetensors"))
    e1, e2 = (load_file(str(e / "model.safetensors")) for e in tiny_llama_family["experts"])
    for name, p in model.state_dict().items():
        expected = b[name] + 1.2 * (0.7 * (e1[name] - b[name]) + 0.5 * (e2[name] - b[name]))
        torch.testing.assert_close(p, expected, rtol=0, atol=1e-6)


def test_gpt2_tied_head_written_once_and_stays_tied(tiny_gpt2_family):
    recipe = recipe_for("task_arithmetic", tiny_gpt2_family)
    model = live_model(tiny_gpt2_family)
    merger = InPlaceMerger(pool_for_recipe(recipe), model)
    assert "lm_head.weight" not in merger.targets
    merger.apply(recipe)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    b = load_file(str(tiny_gpt2_family["base"] / "model.safetensors"))["transformer.wte.weight"]
    e1, e2 = (load_file(str(e / "model.safetensors"))["transformer.wte.weight"] for e in tiny_gpt2_family["experts"])
    torch.testing.assert_close(model.lm_head.weight, b + 1.2 * (0.7 * (e1 - b) + 0.5 * (e2 - b)), rtol=0, atol=1e-6)


def _layer_filtered(family, value: float, method="ties", seed=7) -> Recipe:
    base = str(family["base"])
    e1, e2 = (str(e) for e in family["experts"])
    weight = [{"filter": "layers.1.", "value": value}, {"value": 0.5}]
    return Recipe.model_validate(
        {
            "merge_method": method,
            "base_model": base,
            "models": [
                {"model": e1, "parameters": {"weight": weight, "density": 0.5}},
                {"model": e2, "parameters": {"weight": 0.4, "density": 0.5}},
            ],
            "seed": seed,
        }
    )


@pytest.mark.parametrize("method", ["ties", "dare_ties"])
def test_second_apply_recomputes_only_the_changed_layer(method, tiny_llama_family):
    model = live_model(tiny_llama_family)
    first = _layer_filtered(tiny_llama_family, 0.5, method)
    merger = InPlaceMerger(pool_for_recipe(first), model)
    n = len(merger.targets)
    layer1 = [name for name in merger.targets if "layers.1." in name]
    assert 0 < len(layer1) < n

    assert merger.apply(first).recomputed == n
    again = merger.apply(first)
    assert (again.recomputed, again.skipped) == (0, n)

    changed = _layer_filtered(tiny_llama_family, 0.9, method)
    stats = merger.apply(changed)
    assert (stats.recomputed, stats.skipped) == (len(layer1), n - len(layer1))

    # The partially updated model equals a fresh full merge of the new recipe.
    fresh = live_model(tiny_llama_family)
    InPlaceMerger(pool_for_recipe(changed), fresh).apply(changed)
    for name, p in fresh.state_dict().items():
        assert torch.equal(p, model.state_dict()[name]), name

    if method == "dare_ties":  # a new seed changes every random mask: everything is recomputed
        reseeded = _layer_filtered(tiny_llama_family, 0.9, method, seed=8)
        assert merger.apply(reseeded).recomputed == n
    else:  # the seed is no part of a deterministic method's result
        reseeded = _layer_filtered(tiny_llama_family, 0.9, method, seed=8)
        assert merger.apply(reseeded).recomputed == 0
    assert merger.apply(reseeded, force=True).recomputed == n


def test_merged_tensors_yields_every_tensor_in_requested_dtype(tiny_llama_family):
    recipe = recipe_for("task_arithmetic", tiny_llama_family)
    pool = pool_for_recipe(recipe)
    out = dict(merged_tensors(recipe, pool, dtype="bfloat16"))
    assert list(out) == pool.tensor_names
    assert all(t.dtype == torch.bfloat16 for t in out.values())


def test_module_of_other_shape_is_refused(tiny_llama_family):
    from evomerge.testing import build_model

    recipe = recipe_for("task_arithmetic", tiny_llama_family)
    wide = build_model("llama", hidden=48)
    with pytest.raises(
        ModelError, match=r"^tensor '.*': model '.*' has shape \(\d+, 32\), the module's '.*' has \(\d+, 48\)$"
    ):
        InPlaceMerger(pool_for_recipe(recipe), wide)


def test_checkpoint_names_without_the_model_prefix_map_onto_the_module(tiny_gpt2_family, tmp_path):
    """Hub GPT-2 checkpoints store `h.0.attn…` / `wte.weight`, the module has `transformer.h.0…`."""
    import shutil

    from safetensors.torch import save_file

    stripped = {}
    for key in ("base", "e1", "e2"):
        src = tiny_gpt2_family["base"] if key == "base" else tiny_gpt2_family["experts"][int(key[1]) - 1]
        dst = tmp_path / key
        shutil.copytree(src, dst)
        state = load_file(str(src / "model.safetensors"))
        save_file({k.removeprefix("transformer."): v for k, v in state.items()}, str(dst / "model.safetensors"))
        stripped[key] = str(dst)
    plain = recipe_for("ties", tiny_gpt2_family)
    renamed = Recipe.model_validate(
        {
            **plain.to_dict(),
            "base_model": stripped["base"],
            "models": [
                {"model": stripped["e1"], "parameters": plain.models[0].parameters},
                {"model": stripped["e2"], "parameters": plain.models[1].parameters},
            ],
        }
    )
    a, b = live_model(tiny_gpt2_family), live_model(tiny_gpt2_family)
    InPlaceMerger(pool_for_recipe(plain), a).apply(plain)
    merger = InPlaceMerger(pool_for_recipe(renamed), b)
    assert "wte.weight" in merger.targets and "h.1.mlp.c_fc.weight" in merger.targets
    merger.apply(renamed)
    for name, p in a.state_dict().items():
        assert torch.equal(p, b.state_dict()[name]), name


def test_ties_model_scope_trims_over_the_whole_model(tiny_llama_family, tmp_path):
    """options.ties_scope=model: one threshold per expert over its whole task vector (the paper)."""
    from transformers import AutoModelForCausalLM

    from evomerge.errors import ConfigError

    doc = recipe_for("ties", tiny_llama_family).to_dict()
    doc["options"] = {"ties_scope": "model"}
    recipe = Recipe.model_validate(doc)
    model = live_model(tiny_llama_family)
    pool = pool_for_recipe(recipe)
    merger = InPlaceMerger(pool, model)
    merger.apply(recipe)
    thresholds = [v for _, v in merger.cache.thresholds.items()]
    assert len(thresholds) == 2
    # expert 1 (density 0.6): exactly int(0.6 N) entries of |τ| over the whole model reach its threshold
    taus = torch.cat([pool.delta(str(tiny_llama_family["experts"][0]), n).abs().flatten() for n in pool.tensor_names])
    kept = int((taus >= thresholds[0]).sum())
    assert kept == int(0.6 * taus.numel())

    out = materialize(recipe, tmp_path / "m", progress=False)
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(model(IDS).logits, reloaded(IDS).logits)

    doc["models"][0]["parameters"]["density"] = [{"filter": "layers.1.", "value": 0.3}, {"value": 0.6}]
    with pytest.raises(ConfigError, match=r"^models\[0\]\.parameters\.density: options\.ties_scope=model "):
        Recipe.model_validate(doc)
