"""ModelPool: lazy reading (single, sharded, .bin), validation messages, task-vector cache, tied embeddings."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from evomerge.errors import ModelError
from evomerge.pool import LazyCheckpoint, ModelPool, StateCheckpoint, resolve_model
from evomerge.testing import CHARS, SPECIAL, build_model


def _state(directory) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def test_pool_names_shapes_layers_and_deltas(tiny_llama_family):
    base, (e1, e2) = tiny_llama_family["base"], tiny_llama_family["experts"]
    pool = ModelPool(str(base), [str(e1), str(e2)])
    sb, s1 = _state(base), _state(e1)
    assert sorted(pool.tensor_names) == sorted(sb)
    assert pool.num_layers == 2
    assert pool.shape("model.layers.1.mlp.up_proj.weight") == (64, 32)
    assert pool.numel() == sum(t.numel() for t in sb.values())
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(pool.delta(str(e1), name), s1[name] - sb[name])
    assert torch.equal(pool.tensor(str(e1), name), s1[name])


def test_pool_reads_nothing_until_asked_and_caches_task_vectors_once(tiny_llama_family):
    base, (e1, e2) = tiny_llama_family["base"], tiny_llama_family["experts"]
    pool = ModelPool(str(base), [str(e1), str(e2)])
    assert pool.cached_bytes() == 0
    name = "model.embed_tokens.weight"
    d = pool.delta(str(e1), name)
    assert pool.delta(str(e1), name) is d  # cached, not recomputed
    # base tensor + one task vector; the expert's raw tensor was read for the subtraction and dropped
    assert pool.cached_bytes() == 2 * d.numel() * 4

    streaming = ModelPool(str(base), [str(e1), str(e2)], cache=False)
    assert streaming.delta(str(e1), name) is not streaming.delta(str(e1), name)
    assert streaming.cached_bytes() == 0

    pre = ModelPool(str(base), [str(e1), str(e2)], preload=True)
    n_models = 3
    assert pre.cached_bytes() == n_models * pool.numel() * 4


def test_pool_dtype_and_warm(tiny_llama_family):
    base, experts = tiny_llama_family["base"], [str(e) for e in tiny_llama_family["experts"]]
    pool = ModelPool(str(base), experts, dtype=torch.bfloat16)
    pool.warm()
    name = "model.norm.weight"
    assert pool.delta(experts[0], name).dtype == torch.bfloat16
    # base + 2 task vectors of every tensor, 2 bytes each
    assert pool.cached_bytes() == 3 * pool.numel() * 2


def test_sharded_safetensors_and_bin_read_the_same_tensors(tmp_path, tiny_llama_family):
    from transformers import AutoModelForCausalLM

    base = tiny_llama_family["base"]
    model = AutoModelForCausalLM.from_pretrained(base)
    sharded = tmp_path / "sharded"
    model.save_pretrained(sharded, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").exists()
    assert len(list(sharded.glob("model-*.safetensors"))) > 1
    binary = tmp_path / "binary"
    binary.mkdir()
    torch.save(model.state_dict(), binary / "pytorch_model.bin")
    shutil.copyfile(base / "config.json", binary / "config.json")

    ref = _state(base)
    for directory, fmt in ((sharded, "safetensors"), (binary, "bin")):
        ckpt = LazyCheckpoint(directory)
        assert ckpt.format == fmt
        for name, tensor in ref.items():
            assert ckpt.shape(name) == tuple(tensor.shape)
            assert torch.equal(ckpt.get(name), tensor), (fmt, name)
    pool = ModelPool(str(base), [str(sharded), str(binary)])
    name = "model.layers.1.self_attn.o_proj.weight"
    assert torch.count_nonzero(pool.delta(str(sharded), name)) == 0
    assert torch.count_nonzero(pool.delta(str(binary), name)) == 0


def test_gpt2_tied_lm_head_is_dropped_even_when_stored(tmp_path, tiny_gpt2_family):
    base, e1 = tiny_gpt2_family["base"], tiny_gpt2_family["experts"][0]
    pool = ModelPool(str(base), [str(e1)])
    assert "transformer.wte.weight" in pool.tensor_names
    assert not any("lm_head" in n for n in pool.tensor_names)
    # An expert saved with the alias written out is still compatible.
    explicit = tmp_path / "explicit"
    shutil.copytree(e1, explicit)
    state = _state(e1)
    state["lm_head.weight"] = state["transformer.wte.weight"].clone()
    save_file(state, str(explicit / "model.safetensors"), metadata={"format": "pt"})
    pool = ModelPool(str(base), [str(explicit)])
    assert not any("lm_head" in n for n in pool.tensor_names)


def test_missing_local_path_and_offline_hub_id():
    with pytest.raises(ModelError) as err:
        resolve_model("/nonexistent/evomerge/model")
    assert str(err.value) == "model path '/nonexistent/evomerge/model' does not exist"
    with pytest.raises(ModelError) as err:
        ModelPool("./no-such-dir", [])
    assert str(err.value) == "model path './no-such-dir' does not exist"
    with pytest.raises(ModelError) as err:
        resolve_model("evomerge-test-org/no-such-model")
    assert str(err.value) == (
        "model 'evomerge-test-org/no-such-model': not a local directory and could not be fetched from the hub (offline)"
    )


def test_directory_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"no model.safetensors, model.safetensors.index.json"):
        LazyCheckpoint(tmp_path, label="empty")


def test_shape_mismatch_names_model_tensor_and_both_shapes(tmp_path, tiny_llama_family):
    wide = tmp_path / "wide"
    build_model("llama", seed=3, hidden=48).save_pretrained(wide)
    base = str(tiny_llama_family["base"])
    with pytest.raises(ModelError) as err:
        ModelPool(base, [str(tiny_llama_family["experts"][0]), str(wide)])
    # safetensors stores names sorted: lm_head.weight is the first tensor compared
    v = len(CHARS) + len(SPECIAL)
    assert str(err.value) == f"model '{wide}': tensor 'lm_head.weight' has shape ({v}, 48), base '{base}' has ({v}, 32)"


def test_architecture_mismatch(tiny_llama_family, tiny_gpt2_family):
    base, other = str(tiny_llama_family["base"]), str(tiny_gpt2_family["experts"][0])
    with pytest.raises(ModelError) as err:
        ModelPool(base, [other])
    assert str(err.value) == (
        f"model '{other}': architecture GPT2LMHeadModel (gpt2) differs from base '{base}': LlamaForCausalLM (llama)"
    )


def test_tensor_name_mismatch(tmp_path, tiny_llama_family):
    base, e1 = tiny_llama_family["base"], tiny_llama_family["experts"][0]
    renamed = tmp_path / "renamed"
    shutil.copytree(e1, renamed)
    state = _state(e1)
    state["model.layers.1.mlp.extra.weight"] = state.pop("model.layers.1.mlp.up_proj.weight")
    save_file(state, str(renamed / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelError) as err:
        ModelPool(str(base), [str(renamed)])
    assert str(err.value) == (
        f"model '{renamed}': tensor 'model.layers.1.mlp.up_proj.weight' of base '{base}' is missing"
    )
    # Without a base, the first model is the reference.
    with pytest.raises(ModelError) as err:
        ModelPool(None, [str(renamed), str(e1)])
    assert str(err.value) == (
        f"model '{e1}': tensor 'model.layers.1.mlp.extra.weight' of first model '{renamed}' is missing"
    )


def test_corrupt_index_and_missing_config(tmp_path, tiny_llama_family):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama_family["experts"][0], broken)
    (broken / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a.weight": "gone.safetensors"}}))
    with pytest.raises(ModelError) as err:
        LazyCheckpoint(broken, label="broken")
    assert (
        str(err.value) == "model 'broken': shard 'gone.safetensors' listed in model.safetensors.index.json is missing"
    )
    noconf = tmp_path / "noconf"
    shutil.copytree(tiny_llama_family["experts"][0], noconf)
    (noconf / "config.json").unlink()
    with pytest.raises(ModelError, match=r"^model '.*noconf': no config.json in "):
        ModelPool(str(tiny_llama_family["base"]), [str(noconf)])


def test_a_pool_over_checkpoints_in_memory_merges_like_one_on_disk(tiny_llama_family):
    import json

    from safetensors.torch import load_file

    from evomerge.merge.apply import merged_tensors
    from evomerge.merge.recipes import parse_recipe

    ids = [str(tiny_llama_family["base"])] + [str(e) for e in tiny_llama_family["experts"]]
    ckpts = {m: StateCheckpoint(load_file(f"{m}/model.safetensors")) for m in ids}
    config = json.loads((tiny_llama_family["base"] / "config.json").read_text())
    memory = ModelPool.from_checkpoints(ids[0], ids[1:], ckpts, config)
    disk = ModelPool(ids[0], ids[1:])
    assert memory.tensor_names == disk.tensor_names and memory.num_layers == disk.num_layers
    r = parse_recipe(
        {
            "merge_method": "ties",
            "base_model": ids[0],
            "seed": 0,
            "models": [{"model": m, "parameters": {"weight": 0.5, "density": 0.4}} for m in ids[1:]],
        }
    )
    a, b = dict(merged_tensors(r, memory)), dict(merged_tensors(r, disk))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ModelError, match="is held in memory, not in a directory"):
        _ = memory.reference_dir
    # validated like a pool on disk
    bad = dict(ckpts)
    bad[ids[2]] = StateCheckpoint({k: v for k, v in ckpts[ids[2]].state.items() if k != "model.norm.weight"})
    with pytest.raises(ModelError, match=r"tensor 'model\.norm\.weight' of base .* is missing"):
        ModelPool.from_checkpoints(ids[0], ids[1:], bad, config)


def test_placing_a_pool_moves_its_store_and_keeps_task_vectors_equal(tiny_llama_family):
    ids = [str(tiny_llama_family["base"])] + [str(e) for e in tiny_llama_family["experts"]]
    here, placed = ModelPool(ids[0], ids[1:]), ModelPool(ids[0], ids[1:])
    placed.place("cpu", compute_device="cpu", pin=False)
    name = here.tensor_names[3]
    assert torch.equal(here.delta(ids[1], name), placed.delta(ids[1], name))
    with pytest.raises(RuntimeError, match="after tensors were cached"):
        placed.place("cpu")
