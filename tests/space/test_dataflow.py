"""Data-flow space: recipe YAML, genome ↔ recipe, and the unmaterialized path model."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evomerge.errors import ConfigError, ModelError
from evomerge.merge.dataflow.path_model import build_path_model
from evomerge.merge.recipes import DataFlowRecipe
from evomerge.space import DataFlowSpace
from evomerge.testing import build_model


def _recipe(path, sources=None, embed_from="A"):
    sources = sources or {"A": "dir/a", "B": "dir/b"}
    steps = [{"model": m, "layer": l, "scale": s} for m, l, s in path]
    return DataFlowRecipe.model_validate({"sources": sources, "embed_from": embed_from, "path": steps})


# ---- recipe ---------------------------------------------------------------------------------


def test_recipe_yaml_round_trip_and_cumulative_scales(tmp_path):
    r = _recipe([("A", 0, 1.0), ("B", 1, 2.0), ("A", 1, 0.25), ("A", 2, 1.5)])
    r2 = DataFlowRecipe.from_yaml(r.to_yaml())
    assert r2 == r
    f = tmp_path / "r.yaml"
    f.write_text(r.to_yaml())
    assert DataFlowRecipe.from_yaml(f) == r
    assert r.cumulative_scales() == [1.0, 2.0, 0.5, 0.75]
    assert "merge_method: dataflow" in r.to_yaml()


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"sources": {"A": "a"}, "embed_from": "A", "path": [{"model": "C", "layer": 0}]},
            "path[0].model 'C' is not a source",
        ),
        (
            {"sources": {"A": "a"}, "embed_from": "B", "path": [{"model": "A", "layer": 0}]},
            "embed_from 'B' is not a source",
        ),
        (
            {"sources": {"A": "a"}, "embed_from": "A", "path": [{"model": "A", "layer": 0, "scale": 0}]},
            "scale must be a finite number > 0",
        ),
        ({"sources": {"A": "a"}, "embed_from": "A", "path": [{"model": "A", "layer": -1}]}, "path.0.layer"),
        ({"sources": {"A": "a"}, "embed_from": "A", "path": [], "extra": 1}, "key 'path'"),
    ],
)
def test_recipe_errors_are_one_line(data, message):
    with pytest.raises(ConfigError) as exc:
        DataFlowRecipe.validate_dict(data, where="r.yaml")
    text = str(exc.value)
    assert "\n" not in text and text.startswith("r.yaml: ")
    assert message in text


def test_recipe_bad_yaml_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("sources: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        DataFlowRecipe.from_yaml(f)


def test_check_layers_names_step():
    r = _recipe([("A", 0, 1.0), ("B", 5, 1.0)])
    with pytest.raises(ConfigError, match=r"path\[1\] uses layer 5 of source 'B', which has layers 0..3"):
        r.check_layers({"A": 4, "B": 4})


# ---- space ----------------------------------------------------------------------------------


def test_layout_dims_names_boundaries():
    s = DataFlowSpace({"A": 3, "B": 2}, repeats=2)
    assert (s.M, s.T, s.dim) == (5, 10, 10 + 25)
    assert s.names[0] == "r0/A.0/on" and s.names[5] == "r1/A.0/on" and s.names[9] == "r1/B.1/on"
    assert s.names[10] == "W/A.0->A.0" and s.names[10 + 1 * 5 + 3] == "W/A.1->B.0"
    assert s.group_boundaries == [0, 5, 10, 15, 20, 25, 30, 35]
    assert s.sigma0 == pytest.approx(1 / 6)
    assert DataFlowSpace({"A": 3, "B": 2}, repeats=3, scale_mode="per_layer").dim == 15 + 5
    assert DataFlowSpace({"A": 3, "B": 2}, repeats=3, scale_mode="none").dim == 15


def test_x0_is_model_a():
    s = DataFlowSpace({"A": 4, "B": 3}, repeats=3)
    r = s.to_recipe(s.x0)
    assert r.layer_sequence() == [("A", 0), ("A", 1), ("A", 2), ("A", 3)]
    assert r.scales() == [1.0, 1.0, 1.0, 1.0]
    free = DataFlowSpace({"A": 4, "B": 3}, repeats=3, fix_ends=False)
    assert free.to_recipe(free.x0).layer_sequence() == [("A", i) for i in range(4)]
    assert sorted(free.on_slots(free.x0)) == [0, 1, 2, 3]


def test_hand_computed_genome():
    s = DataFlowSpace({"A": 3, "B": 2}, repeats=2, scale_range=(0.5, 2.0))
    x = np.full(s.dim, 0.2)
    x[s.T :] = 0.5  # every scale 1
    for slot in (3, 5, 9):  # r0/B.0, r1/A.0, r1/B.1
        x[slot] = 0.9
    x[s.T + 0 * 5 + 3] = 1.0  # W[A.0 -> B.0] = 2
    x[s.T + 3 * 5 + 0] = 0.0  # W[B.0 -> A.0] = 0.5
    x[s.T + 4 * 5 + 2] = 0.75  # W[B.1 -> A.2] = 2^0.5
    r = s.to_recipe(x)
    assert r.layer_sequence() == [("A", 0), ("B", 0), ("A", 0), ("B", 1), ("A", 2)]
    assert r.scales() == pytest.approx([1.0, 2.0, 0.5, 1.0, 2**0.5])
    x_clipped = x.copy()
    x_clipped[s.T + 3] = 7.0  # out of the box: clipped to 1 → scale 2
    assert s.to_recipe(x_clipped).scales()[1] == pytest.approx(2.0)


def test_per_layer_scales_ignore_predecessor():
    s = DataFlowSpace({"A": 2, "B": 2}, repeats=2, scale_mode="per_layer", fix_ends=False)
    x = np.full(s.dim, 0.1)
    x[[2, 4, 6]] = 0.8  # B.0, A.0 (r1), B.0 (r1)
    x[s.T + 2] = 1.0  # scale of B.0 = 2
    r = s.to_recipe(x)
    assert r.layer_sequence() == [("B", 0), ("A", 0), ("B", 0)]
    assert r.scales() == pytest.approx([1.0, s.gene_to_scale(0.1), 2.0])


def _same_recipe(a: DataFlowRecipe, b: DataFlowRecipe):
    assert a.layer_sequence() == b.layer_sequence()
    assert a.scales() == pytest.approx(b.scales(), rel=1e-12)
    assert a.sources == b.sources and a.embed_from == b.embed_from


@settings(max_examples=60, deadline=None)
@given(
    mode=st.sampled_from(["matrix", "per_layer", "none"]),
    fix_ends=st.booleans(),
    repeats=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_round_trip_on_image(mode, fix_ends, repeats, seed):
    s = DataFlowSpace({"A": 3, "B": 2}, repeats=repeats, scale_mode=mode, fix_ends=fix_ends)
    x = np.random.default_rng(seed).uniform(-0.2, 1.2, s.dim)
    r = s.to_recipe(x)
    x2 = s.from_recipe(r)
    assert np.all((x2 >= 0) & (x2 <= 1))
    _same_recipe(s.to_recipe(x2), r)
    # Idempotent: a genome from a recipe maps back to the same genome.
    np.testing.assert_allclose(s.from_recipe(s.to_recipe(x2)), x2, atol=1e-12)
    _same_recipe(s.to_recipe(s.from_recipe(DataFlowRecipe.from_yaml(r.to_yaml()))), r)


def test_from_recipe_outside_image():
    s = DataFlowSpace({"A": 2, "B": 2}, repeats=1, sources={"A": "dir/a", "B": "dir/b"})
    # B.1 then B.0 needs a second repetition of the layout.
    with pytest.raises(ConfigError, match=r"path step 2 \(B.0\) does not fit in 1 repetitions"):
        s.from_recipe(_recipe([("A", 0, 1), ("B", 1, 1), ("B", 0, 1), ("A", 1, 1)]))
    with pytest.raises(ConfigError, match="must start with A.0 and end with A.1"):
        s.from_recipe(_recipe([("B", 0, 1), ("A", 1, 1)]))
    with pytest.raises(ConfigError, match=r"path\[2\].scale 3.0 is outside the space's scale_range"):
        s.from_recipe(_recipe([("A", 0, 1), ("B", 0, 1), ("A", 1, 3.0)]))
    s2 = DataFlowSpace({"A": 2, "B": 2}, repeats=2, sources={"A": "dir/a", "B": "dir/b"})
    with pytest.raises(ConfigError, match=r"path\[3\].scale 1.5 conflicts with 1.2"):
        s2.from_recipe(_recipe([("A", 0, 1), ("B", 0, 1.2), ("A", 0, 1), ("B", 0, 1.5), ("A", 1, 1)]))
    with pytest.raises(ConfigError, match="sources"):
        s.from_recipe(_recipe([("A", 0, 1), ("A", 1, 1)], sources={"A": "dir/a", "C": "dir/c"}))


def test_space_validation_errors():
    for options, line in [
        (
            {"scale_range": (0.0, 2.0)},
            "key 'space.scale_range': expected [lo, hi] with 0 < lo <= 1 <= hi and lo < hi, got [0, 2]",
        ),
        ({"repeats": 0}, "key 'space.repeats': Input should be greater than or equal to 1 (got 0)"),
        (
            {"scale_mode": "full"},
            "key 'space.scale_mode': Input should be 'matrix', 'per_layer' or 'none' (got 'full')",
        ),
        (
            {"indicator_margin": 0.6},
            "key 'space.indicator_margin': Input should be less than or equal to 0.5 (got 0.6)",
        ),
        ({"repeat": 2}, "unknown key 'space.repeat' (did you mean 'space.repeats'?)"),
    ]:
        with pytest.raises(ConfigError) as exc:
            DataFlowSpace({"A": 2}, **options)
        assert str(exc.value) == line
    with pytest.raises(ConfigError, match="embed_from 'Z' is not a source"):
        DataFlowSpace({"A": 2}, embed_from="Z")
    with pytest.raises(ConfigError, match="fix_ends needs model 'A' to have >= 2 layers"):
        DataFlowSpace({"A": 1, "B": 3})


# ---- path model -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llamas():
    return {"A": build_model("llama", seed=0, num_layers=4), "B": build_model("llama", seed=1, num_layers=4)}


def _ids(seed=0, batch=2, length=10):
    return torch.randint(4, 40, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_x0_path_model_reproduces_a_exactly(llamas):
    s = DataFlowSpace({"A": 4, "B": 4}, repeats=2, sources={"A": "a", "B": "b"})
    pm = build_path_model(s.to_recipe(s.x0), llamas)
    ids = _ids()
    with torch.no_grad():
        assert torch.equal(pm(ids).logits, llamas["A"](ids).logits)


def test_path_model_shares_parameters_and_leaves_sources_alone(llamas):
    r = _recipe([("A", 0, 1.0), ("B", 2, 1.5), ("A", 1, 0.7), ("A", 1, 1.3), ("A", 3, 1.0)])
    before = {n: [l.self_attn.layer_idx for l in m.model.layers] for n, m in llamas.items()}
    pm = build_path_model(r, llamas)
    assert pm.config.num_hidden_layers == 5 and len(pm.model.layers) == 5
    assert llamas["A"].config.num_hidden_layers == 4 and len(llamas["A"].model.layers) == 4
    assert {n: [l.self_attn.layer_idx for l in m.model.layers] for n, m in llamas.items()} == before
    assert all(not l._forward_pre_hooks for m in llamas.values() for l in m.model.layers)
    assert [l.self_attn.layer_idx for l in pm.model.layers] == [0, 1, 2, 3, 4]
    for k, step in enumerate(r.path):
        src = dict(llamas[step.model].model.layers[step.layer].named_parameters())
        for name, p in pm.model.layers[k].named_parameters():
            assert p is src[name] and p.data_ptr() == src[name].data_ptr()
    assert pm.model.embed_tokens.weight.data_ptr() == llamas["A"].model.embed_tokens.weight.data_ptr()
    assert pm.lm_head.weight.data_ptr() == llamas["A"].lm_head.weight.data_ptr()
    # No new parameter storage at all.
    src_ptrs = {p.data_ptr() for m in llamas.values() for p in m.parameters()}
    assert {p.data_ptr() for p in pm.parameters()} <= src_ptrs


def test_path_model_matches_hand_loop(llamas):
    """Reference: call the decoder layers by hand, scaling each input."""
    from transformers.masking_utils import create_causal_mask

    r = _recipe([("A", 0, 1.0), ("B", 3, 1.8), ("B", 3, 0.6), ("A", 2, 1.2), ("A", 3, 0.9)])
    pm = build_path_model(r, llamas)
    a = llamas["A"]
    ids = _ids(1)
    with torch.no_grad():
        h = a.model.embed_tokens(ids)
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        pe = a.model.rotary_emb(h, position_ids=pos)
        mask = create_causal_mask(config=a.config, inputs_embeds=h, attention_mask=None, cache=None, position_ids=pos)
        for step in r.path:
            layer = llamas[step.model].model.layers[step.layer]
            h = layer(h * step.scale, attention_mask=mask, position_embeddings=pe, position_ids=pos)
        ref = a.lm_head(a.model.norm(h))
        got = pm(ids).logits
    assert (got - ref).abs().max().item() < 1e-6


def test_generate_with_kv_cache_equals_no_cache_greedy(llamas):
    r = _recipe([("A", 0, 1.0), ("B", 1, 1.5), ("A", 1, 0.8), ("B", 1, 1.2), ("A", 2, 1.0), ("A", 3, 0.7)])
    pm = build_path_model(r, llamas)
    prompt = _ids(2, batch=1, length=5)
    with torch.no_grad():
        out = pm.generate(prompt, max_new_tokens=10, do_sample=False, use_cache=True, pad_token_id=0)
        seq = prompt
        for _ in range(10):
            nxt = pm(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    assert out.shape[1] == 15
    assert torch.equal(out, seq)


def test_gpt2_path_model():
    g = {"A": build_model("gpt2", seed=0, num_layers=3), "B": build_model("gpt2", seed=1, num_layers=3)}
    s = DataFlowSpace({"A": 3, "B": 3}, repeats=2, sources={"A": "a", "B": "b"})
    ids = _ids(3)
    with torch.no_grad():
        assert torch.equal(build_path_model(s.to_recipe(s.x0), g)(ids).logits, g["A"](ids).logits)
        pm = build_path_model(_recipe([("A", 0, 1), ("B", 1, 1.4), ("B", 1, 0.8), ("A", 2, 1)]), g)
        out = pm.generate(ids[:1, :4], max_new_tokens=6, do_sample=False, use_cache=True, pad_token_id=0)
        seq = ids[:1, :4]
        for _ in range(6):
            seq = torch.cat([seq, pm(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, seq)
    assert [b.attn.layer_idx for b in pm.transformer.h] == [0, 1, 2, 3]


def test_path_model_errors(llamas):
    with pytest.raises(ConfigError, match=r"path\[1\] uses layer 9 of source 'B', which has layers 0..3"):
        build_path_model(_recipe([("A", 0, 1), ("B", 9, 1)]), llamas)
    with pytest.raises(ConfigError, match=r"no loaded model for source\(s\) \['B'\]"):
        build_path_model(_recipe([("A", 0, 1)]), {"A": llamas["A"]})
    wide = build_model("llama", seed=2, num_layers=2, hidden=64)
    with pytest.raises(ModelError, match="differ in config hidden_size: 32 vs 64"):
        build_path_model(_recipe([("A", 0, 1)]), {"A": llamas["A"], "B": wide})


# ---- PS+DFS ---------------------------------------------------------------------------------


def _joint():
    from evomerge.space import JointSpace, ParameterSpace

    ps = ParameterSpace("task_arithmetic", "x/base", ["x/e1", "x/e2"], 4, layer_groups=2)
    nested = ps.to_recipe(ps.x0).to_dict()
    dfs = DataFlowSpace(
        {"merged": 4, "e1": 4}, repeats=2, embed_from="merged", sources={"merged": nested, "e1": "x/e1"}
    )
    return ps, dfs, JointSpace(ps, dfs, ps_source="merged")


def test_joint_space_layout_and_round_trip():
    ps, dfs, j = _joint()
    assert j.dim == ps.dim + dfs.dim and j.names[0] == "ps/embed/e1/weight" and j.names[ps.dim] == "dfs/r0/merged.0/on"
    assert j.group_boundaries == sorted(set(ps.group_boundaries) | {ps.dim + b for b in dfs.group_boundaries})
    np.testing.assert_array_equal(j.x0, np.concatenate([ps.x0, dfs.x0]))
    r0 = j.to_recipe(j.x0)
    assert r0.layer_sequence() == [("merged", i) for i in range(4)]
    for seed in range(5):
        x = np.random.default_rng(seed).uniform(0, 1, j.dim)
        r = j.to_recipe(x)
        assert r.sources["merged"] == ps.to_recipe(x[: ps.dim]).to_dict()
        assert r.sources["e1"] == "x/e1"
        r_yaml = DataFlowRecipe.from_yaml(r.to_yaml())
        back = j.from_recipe(r_yaml)
        np.testing.assert_allclose(back[: ps.dim], x[: ps.dim], atol=1e-12)
        _same_recipe(dfs.to_recipe(back[ps.dim :]), dfs.to_recipe(x[ps.dim :]))
    with pytest.raises(ConfigError, match="source 'merged' of the recipe is not a nested parameter-space recipe"):
        j.from_recipe(r.model_copy(update={"sources": {"merged": "plain/dir", "e1": "x/e1"}}))


def test_sequential_space_nests_the_ps_recipe():
    from evomerge.space import sequential_space

    ps, _, _ = _joint()
    rec = ps.to_recipe(np.random.default_rng(0).uniform(0, 1, ps.dim))
    s = sequential_space(rec, 4, {"B": ("x/e2", 4)}, repeats=2, scale_mode="per_layer")
    r = s.to_recipe(s.x0)
    assert r.sources == {"A": rec.to_dict(), "B": "x/e2"} and r.embed_from == "A"
    assert r.layer_sequence() == [("A", i) for i in range(4)]
    assert r.nested_recipe("A").to_dict() == rec.to_dict()
    bad = dict(rec.to_dict(), merge_method="nope")
    with pytest.raises(ConfigError, match="nested recipe of source 'A'"):
        DataFlowRecipe.validate_dict({"sources": {"A": bad}, "embed_from": "A", "path": [{"model": "A", "layer": 0}]})


def test_nested_source_is_merged_in_memory(tiny_llama_family):
    """A nested task-arithmetic recipe with weights (1, 0) is expert 1: the path at x0 must give
    expert 1's logits."""
    from transformers import AutoModelForCausalLM

    from evomerge.merge.dataflow.path_model import load_dataflow_sources, tokenizer_source

    base, (e1, e2) = str(tiny_llama_family["base"]), [str(p) for p in tiny_llama_family["experts"]]
    nested = {
        "merge_method": "task_arithmetic",
        "base_model": base,
        "models": [{"model": e1, "parameters": {"weight": 1.0}}, {"model": e2, "parameters": {"weight": 0.0}}],
    }
    s = DataFlowSpace({"A": 2, "B": 2}, repeats=1, sources={"A": nested, "B": e2})
    r = s.to_recipe(s.x0)
    assert tokenizer_source(r) == base
    srcs = load_dataflow_sources(r)
    ids = _ids(5)
    with torch.no_grad():
        got = build_path_model(r, srcs)(ids).logits
        ref = AutoModelForCausalLM.from_pretrained(e1).eval()(ids).logits
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_wrong_genome_length_and_missing_file():
    s = DataFlowSpace({"A": 2, "B": 2}, repeats=1)
    with pytest.raises(ConfigError, match=f"genome has 3 genes, expected {s.dim}"):
        s.to_recipe(np.zeros(3))
    with pytest.raises(ConfigError, match="nope.yaml: data-flow recipe file not found"):
        DataFlowRecipe.from_yaml("nope.yaml")


@pytest.mark.parametrize("warm", [False, True])
def test_hidden_states_one_per_step(warm):
    """transformers installs output-capturing hooks lazily; a path model must report one hidden
    state per step whether or not the sources had theirs installed before cloning."""
    src = {"A": build_model("llama", seed=0, num_layers=3), "B": build_model("llama", seed=1, num_layers=3)}
    ids = _ids(4, batch=1, length=6)
    if warm:
        with torch.no_grad():
            src["A"](ids, output_hidden_states=True)
    r = _recipe([("A", 0, 1), ("B", 1, 2.0), ("B", 1, 1), ("A", 1, 1), ("A", 2, 1), ("A", 2, 1)])
    with torch.no_grad():
        hs = build_path_model(r, src)(ids, output_hidden_states=True).hidden_states
        assert len(hs) == 7
        assert len(src["A"](ids, output_hidden_states=True).hidden_states) == 4
        assert len(build_path_model(r, src)(ids, output_hidden_states=True).hidden_states) == 7
