"""Folding a data-flow path's scales into a plain checkpoint (algorithms.md §6)."""

import numpy as np
import pytest
import torch

from evomerge.errors import ConfigError, EvomergeError
from evomerge.merge.dataflow.fold import fold_to_state_dict, materialize_dataflow, to_mergekit_passthrough
from evomerge.merge.dataflow.path_model import build_path_model
from evomerge.merge.recipes import DataFlowRecipe
from evomerge.testing import build_model, char_tokenizer


def _set_eps(model, eps):
    """Norm epsilon on config and on every norm module (RMSNorm: variance_epsilon; LayerNorm: eps)."""
    if hasattr(model.config, "rms_norm_eps"):
        model.config.rms_norm_eps = eps
    if hasattr(model.config, "layer_norm_epsilon"):
        model.config.layer_norm_epsilon = eps
    for mod in model.modules():
        if hasattr(mod, "variance_epsilon"):
            mod.variance_epsilon = eps
        elif isinstance(mod, torch.nn.LayerNorm):
            mod.eps = eps
    return model


def _random_recipe(rng, n_layers, length, sources):
    """A path with A's first and last layers at the ends, random middle layers from both models
    (repeats and reordering come naturally) and scales in [0.5, 2]."""
    path = [{"model": "A", "layer": 0, "scale": 1.0}]
    for _ in range(length - 2):
        path.append(
            {
                "model": str(rng.choice(["A", "B"])),
                "layer": int(rng.integers(n_layers)),
                "scale": float(rng.uniform(0.5, 2)),
            }
        )
    path.append({"model": "A", "layer": n_layers - 1, "scale": float(rng.uniform(0.5, 2))})
    return DataFlowRecipe.model_validate({"sources": sources, "embed_from": "A", "path": path})


def _folded_model(recipe, sources):
    from transformers import AutoModelForCausalLM

    cfg, state = fold_to_state_dict(recipe, sources)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    model.load_state_dict(state, strict=True)
    return model


IDS = torch.randint(4, 40, (3, 12), generator=torch.Generator().manual_seed(0))  # no pad id: its embedding is 0


def _max_diff(recipe, sources):
    with torch.no_grad():
        a = build_path_model(recipe, sources)(IDS).logits
        b = _folded_model(recipe, sources)(IDS).logits
    return (a - b).abs().max().item(), a.abs().max().item()


@pytest.fixture(scope="module")
def llamas():
    return {"A": build_model("llama", seed=0, num_layers=6), "B": build_model("llama", seed=1, num_layers=6)}


def test_fold_equals_path_with_eps_zero(llamas):
    srcs = {k: _set_eps(m, 0.0) for k, m in llamas.items()}
    rng = np.random.default_rng(0)
    for length in (9, 12):
        r = _random_recipe(rng, 6, length, {"A": "a", "B": "b"})
        assert len({(s.model, s.layer) for s in r.path}) < len(r.path) or length == 9  # repeats occur
        diff, scale = _max_diff(r, srcs)
        assert diff < 1e-4, diff
        assert scale > 0.05  # logits are not trivially zero
    # Without folding the scales the logits would differ: the test can fail.
    r = _random_recipe(np.random.default_rng(1), 6, 9, {"A": "a", "B": "b"})
    unscaled = r.model_copy(update={"path": [s.model_copy(update={"scale": 1.0}) for s in r.path]})
    with torch.no_grad():
        d = (build_path_model(r, srcs)(IDS).logits - _folded_model(unscaled, srcs)(IDS).logits).abs().max().item()
    assert d > 1e-3


def test_fold_error_with_eps_is_small_and_linear_in_eps(llamas):
    """With eps > 0, norm(c·x) − norm(x) is O(eps·|1/c² − 1| / mean(x²)): the difference grows
    linearly with eps. Bound checked: max |Δlogit| ≤ 1e-2 · max |logit| at eps ≤ 1e-6 on these
    random hidden-32 models (per-token mean(x²) ≥ 1.8e-4, so eps/mean(x²) ≈ 5e-3); real checkpoints have a
    far larger residual stream and a far smaller error."""
    r = _random_recipe(np.random.default_rng(2), 6, 10, {"A": "a", "B": "b"})
    errs = {}
    for eps in (1e-7, 1e-6):
        srcs = {k: _set_eps(m, eps) for k, m in llamas.items()}
        errs[eps], scale = _max_diff(r, srcs)
        assert errs[eps] <= 1e-2 * scale, (eps, errs[eps], scale)
    assert 3 < errs[1e-6] / errs[1e-7] < 30
    for m in llamas.values():
        _set_eps(m, 0.0)


def test_fold_state_dict_layout(llamas):
    r = DataFlowRecipe.model_validate(
        {
            "sources": {"A": "a", "B": "b"},
            "embed_from": "A",
            "path": [
                {"model": "A", "layer": 0},
                {"model": "B", "layer": 4, "scale": 2.0},
                {"model": "B", "layer": 4, "scale": 0.25},
                {"model": "A", "layer": 5},
            ],
        }
    )
    cfg, sd = fold_to_state_dict(r, llamas)
    assert cfg.num_hidden_layers == 4
    b4 = llamas["B"].model.layers[4]
    torch.testing.assert_close(
        sd["model.layers.1.self_attn.o_proj.weight"], b4.self_attn.o_proj.weight / 2.0, rtol=0, atol=0
    )
    torch.testing.assert_close(
        sd["model.layers.2.mlp.down_proj.weight"], b4.mlp.down_proj.weight * 2.0, rtol=0, atol=0
    )  # C = 0.5
    torch.testing.assert_close(sd["model.layers.2.mlp.up_proj.weight"], b4.mlp.up_proj.weight, rtol=0, atol=0)
    torch.testing.assert_close(
        sd["model.layers.3.self_attn.o_proj.weight"], llamas["A"].model.layers[5].self_attn.o_proj.weight * 2.0
    )
    assert sd["model.layers.1.mlp.up_proj.weight"].data_ptr() != sd["model.layers.2.mlp.up_proj.weight"].data_ptr()
    assert sd["model.embed_tokens.weight"].data_ptr() != llamas["A"].model.embed_tokens.weight.data_ptr()
    assert not any(k.startswith("model.layers.4.") for k in sd)


def test_materialize_reload_same_logits(tmp_path, llamas):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dirs = {}
    for name, m in llamas.items():
        _set_eps(m, 1e-6)
        dirs[name] = str(tmp_path / name)
        m.save_pretrained(dirs[name])
        char_tokenizer().save_pretrained(dirs[name])
    r = _random_recipe(np.random.default_rng(3), 6, 10, dirs)
    out = materialize_dataflow(r, tmp_path / "out")  # sources loaded from disk
    assert {"README.md", "config.json", "dataflow_recipe.yaml", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in out.iterdir()
    }
    assert DataFlowRecipe.from_yaml(out / "dataflow_recipe.yaml") == r
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert reloaded.config.num_hidden_layers == 10
    assert AutoTokenizer.from_pretrained(out).encode("12+3") == AutoTokenizer.from_pretrained(dirs["A"]).encode("12+3")
    with torch.no_grad():
        got = reloaded(IDS).logits
        assert torch.equal(got, _folded_model(r, llamas)(IDS).logits)
        path = build_path_model(r, llamas)(IDS).logits
    assert (got - path).abs().max().item() <= 1e-2 * path.abs().max().item()
    # An existing directory is refused (before any work) unless forced; nothing is left behind.
    with pytest.raises(EvomergeError, match="output directory is not empty; pass --force to replace it"):
        materialize_dataflow(r, out, sources=llamas)
    materialize_dataflow(r, out, sources=llamas, force=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]
    for m in llamas.values():
        _set_eps(m, 0.0)


def test_gpt2_fold():
    g = {k: _set_eps(build_model("gpt2", seed=s, num_layers=4), 0.0) for k, s in (("A", 0), ("B", 1))}
    r = _random_recipe(np.random.default_rng(4), 4, 8, {"A": "a", "B": "b"})
    diff, scale = _max_diff(r, g)
    assert diff < 1e-4 and scale > 0.05


def test_mergekit_passthrough_hand_computed():
    r = DataFlowRecipe.model_validate(
        {
            "sources": {"A": "org/a", "B": "org/b"},
            "embed_from": "A",
            "dtype": "bfloat16",
            "path": [
                {"model": "A", "layer": 0},
                {"model": "A", "layer": 1},
                {"model": "B", "layer": 3, "scale": 2.0},
                {"model": "B", "layer": 4},
                {"model": "A", "layer": 1, "scale": 0.5},
                {"model": "A", "layer": 5},
            ],
        }
    )
    scale_half = {"scale": [{"filter": "o_proj", "value": 0.5}, {"filter": "down_proj", "value": 0.5}, {"value": 1.0}]}
    assert to_mergekit_passthrough(r) == {
        "slices": [
            {"sources": [{"model": "org/a", "layer_range": [0, 2]}]},
            {"sources": [{"model": "org/b", "layer_range": [3, 5], "parameters": scale_half}]},
            {"sources": [{"model": "org/a", "layer_range": [1, 2]}]},
            {"sources": [{"model": "org/a", "layer_range": [5, 6]}]},
        ],
        "merge_method": "passthrough",
        "dtype": "bfloat16",
    }
    gpt = to_mergekit_passthrough(r, filters=("c_proj",))
    assert gpt["slices"][1]["sources"][0]["parameters"]["scale"][0] == {"filter": "c_proj", "value": 0.5}


def test_mergekit_passthrough_refusals():
    nested = {"merge_method": "linear", "models": [{"model": "x", "parameters": {"weight": 1.0}}]}
    r = DataFlowRecipe.model_validate(
        {"sources": {"A": nested, "B": "b"}, "embed_from": "A", "path": [{"model": "A", "layer": 0}]}
    )
    with pytest.raises(ConfigError, match="source 'A' is a nested parameter-space recipe; mergekit cannot express"):
        to_mergekit_passthrough(r)
    r = DataFlowRecipe.model_validate(
        {
            "sources": {"A": "a", "B": "b"},
            "embed_from": "A",
            "path": [{"model": "B", "layer": 0}, {"model": "A", "layer": 1}],
        }
    )
    with pytest.raises(ConfigError, match="the path starts with 'B' and ends with 'A'"):
        to_mergekit_passthrough(r)
