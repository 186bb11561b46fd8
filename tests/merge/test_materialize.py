"""materialize(): layout HF loaders read, config/tokenizer/model card, and refusing bad input
without leaving any directory behind (validation first, temp dir + rename)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors import safe_open

from evomerge.errors import EvomergeError, ModelError
from evomerge.merge.materialize import materialize, plan_shards
from evomerge.merge.recipes.parameter import Recipe


def ta_recipe(family, *, experts=None, base=None, dtype="float32") -> Recipe:
    experts = experts or [str(e) for e in family["experts"]]
    return Recipe.model_validate(
        {
            "merge_method": "task_arithmetic",
            "base_model": base or str(family["base"]),
            "models": [{"model": e, "parameters": {"weight": 0.5}} for e in experts],
            "dtype": dtype,
        }
    )


def leftovers(parent, name):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def test_plan_shards_packs_in_order():
    sizes = {"a": 4, "b": 4, "c": 9, "d": 1}
    assert plan_shards(list(sizes), sizes, 8) == [["a", "b"], ["c"], ["d"]]
    assert plan_shards(list(sizes), sizes, 100) == [["a", "b", "c", "d"]]


def test_sharded_output_with_index_config_tokenizer_and_card(tiny_llama_family, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe = ta_recipe(tiny_llama_family, dtype="bfloat16")
    out = materialize(recipe, tmp_path / "m", progress=False, max_shard_bytes=10_000)
    shards = sorted(out.glob("model-*.safetensors"))
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(shards) > 1 and shards[0].name == f"model-00001-of-{len(shards):05d}.safetensors"
    assert set(index["weight_map"].values()) == {s.name for s in shards}
    assert index["metadata"]["total_size"] == sum(s.stat().st_size for s in shards) - sum(
        8 + int.from_bytes(open(s, "rb").read(8), "little") for s in shards
    )  # total_size counts tensor bytes only, not headers
    with safe_open(str(shards[0]), "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.bfloat16 for k in f.keys())
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "bfloat16"
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (out / name).read_bytes() == (tiny_llama_family["base"] / name).read_bytes()
    assert (
        AutoTokenizer.from_pretrained(out)("abc")["input_ids"]
        == AutoTokenizer.from_pretrained(tiny_llama_family["base"])("abc")["input_ids"]
    )
    model = AutoModelForCausalLM.from_pretrained(out)
    assert next(model.parameters()).dtype == torch.bfloat16

    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "- evomerge" in card and "task_arithmetic" in card
    block = card.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert Recipe.model_validate(yaml.safe_load(block)) == recipe
    assert leftovers(tmp_path, "m") == []


def test_dtype_override_and_single_file(tiny_llama_family, tmp_path):
    out = materialize(ta_recipe(tiny_llama_family), tmp_path / "m", dtype="float16", progress=False)
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]
    assert not (out / "model.safetensors.index.json").exists()
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "float16"


def test_non_empty_out_dir_needs_force_and_force_replaces_only_an_evomerge_output(tiny_llama_family, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(EvomergeError) as err:
        materialize(ta_recipe(tiny_llama_family), out, progress=False)
    assert str(err.value) == f"{out}: output directory is not empty; pass --force to replace it"
    with pytest.raises(EvomergeError) as err:  # a folder evomerge did not write is never replaced
        materialize(ta_recipe(tiny_llama_family), out, progress=False, force=True)
    assert str(err.value) == (
        f"{out}: not an evomerge output (no .evomerge-output.json); --force replaces only what evomerge wrote "
        "(move it away yourself, or choose another output)"
    )
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    # an empty existing directory is fine without --force; the output carries the marker
    empty = tmp_path / "empty"
    empty.mkdir()
    materialize(ta_recipe(tiny_llama_family), empty, progress=False)
    marker = json.loads((empty / ".evomerge-output.json").read_text())
    assert (marker["kind"], marker["writer"]) == ("hf-checkpoint", "evomerge merge")
    (empty / "stale.txt").write_text("from before")
    materialize(ta_recipe(tiny_llama_family), empty, progress=False, force=True)  # our own output: replaced
    assert not (empty / "stale.txt").exists() and (empty / "model.safetensors").exists()
    assert leftovers(tmp_path, "empty") == []


def test_force_replaces_a_checkpoint_an_older_evomerge_wrote(tiny_llama_family, tmp_path):
    out = tmp_path / "old"
    materialize(ta_recipe(tiny_llama_family), out, progress=False)
    (out / ".evomerge-output.json").unlink()  # v1 wrote no marker: its model card says evomerge
    materialize(ta_recipe(tiny_llama_family), out, progress=False, force=True)
    assert (out / ".evomerge-output.json").is_file()


def test_force_never_overwrites_a_source_model(tiny_llama_family, tmp_path):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(tiny_llama_family["base"], base)
    with pytest.raises(EvomergeError) as err:
        materialize(ta_recipe(tiny_llama_family, base=str(base)), base, progress=False, force=True)
    assert str(err.value) == (
        f"{base}: is the source model; --force never replaces a source model or a folder that holds one"
    )
    assert (base / "model.safetensors").exists()


def test_invalid_models_leave_no_directory(tiny_llama_family, tiny_gpt2_family, tmp_path):
    from evomerge.testing import build_model

    wide = tmp_path / "wide"
    build_model("llama", seed=3, hidden=48).save_pretrained(wide)
    e1 = str(tiny_llama_family["experts"][0])
    cases = {
        "missing": ([e1, "/nonexistent/expert"], "model path '/nonexistent/expert' does not exist"),
        "shape": ([e1, str(wide)], f"model '{wide}': tensor 'lm_head.weight' has shape"),
        "arch": ([e1, str(tiny_gpt2_family["experts"][0])], "architecture GPT2LMHeadModel (gpt2) differs"),
    }
    for label, (experts, message) in cases.items():
        out = tmp_path / "out" / label
        with pytest.raises(ModelError) as err:
            materialize(ta_recipe(tiny_llama_family, experts=experts), out, progress=False)
        assert message in str(err.value) and "\n" not in str(err.value)
        assert not out.exists() and not (tmp_path / "out").exists()


def test_crash_while_writing_leaves_nothing(tiny_llama_family, tmp_path, monkeypatch):
    import safetensors.torch

    calls = {"n": 0}
    real = safetensors.torch.save_file

    def failing(tensors, path, metadata=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", failing)
    with pytest.raises(OSError, match="disk full"):
        materialize(ta_recipe(tiny_llama_family), tmp_path / "m", progress=False, max_shard_bytes=10_000)
    assert list(tmp_path.iterdir()) == []
