"""`evomerge merge`: our YAML and mergekit YAML, dtype override, progress, and one-line errors
with exit status 2 and no output directory."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from evomerge.cli import main
from evomerge.merge.recipes.parameter import Recipe


def write(path, doc) -> str:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def ties_doc(family, **extra) -> dict:
    return {
        "merge_method": "ties",
        "base_model": str(family["base"]),
        "models": [
            {"model": str(family["experts"][0]), "parameters": {"weight": 0.6, "density": 0.5}},
            {"model": str(family["experts"][1]), "parameters": {"weight": 0.4, "density": [0.3, 0.9]}},
        ],
        "parameters": {"normalize": True},
        **extra,
    }


def run(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()  # drop what building the fixtures printed
    code = main(argv)
    return code, capsys.readouterr().err


def test_our_yaml_and_mergekit_yaml_give_the_same_weights(tiny_llama_family, tmp_path, capsys):
    ours = tmp_path / "ours.yaml"
    # a gradient on a layer-less tensor: mergekit's rule is "start" (x = 0), ours must say so explicitly
    ours.write_text(
        Recipe.model_validate(ties_doc(tiny_llama_family, seed=0, options={"layerless_gradient": "start"})).to_yaml()
    )
    # mergekit's spelling: no seed/options, out_dtype, fp32 alias
    mk = write(tmp_path / "mergekit.yaml", ties_doc(tiny_llama_family, out_dtype="fp32"))

    code, err = run(["merge", str(ours), "-o", str(tmp_path / "a")], capsys)
    assert code == 0, err
    assert "merging" in err and "wrote" in err  # progress bar over tensors, then a summary
    code, err = run(["merge", mk, "-o", str(tmp_path / "b"), "--no-progress"], capsys)
    assert code == 0, err
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_dtype_override_and_shard_size(tiny_gpt2_family, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    recipe = write(tmp_path / "r.yaml", ties_doc(tiny_gpt2_family, seed=0, options={"layerless_gradient": "ends"}))
    out = tmp_path / "out"
    code, err = run(
        ["merge", recipe, "-o", str(out), "--dtype", "bfloat16", "--max-shard-size", "20KB", "--no-progress"], capsys
    )
    assert code == 0, err
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()


@pytest.mark.parametrize(
    "case",
    ["missing_model", "shape", "architecture", "tensor_names", "non_empty_out", "bad_recipe", "mergekit_slices"],
)
def test_invalid_input_one_line_exit_2_no_output(case, tiny_llama_family, tiny_gpt2_family, tmp_path, capsys):
    import shutil

    from safetensors.torch import save_file

    from evomerge.testing import build_model

    out = tmp_path / "out"
    argv_extra: list[str] = []
    doc = ties_doc(tiny_llama_family, seed=0, options={"layerless_gradient": "ends"})
    if case == "missing_model":
        doc["models"][1]["model"] = "/nonexistent/expert"
        expected = "error: model path '/nonexistent/expert' does not exist"
    elif case == "shape":
        wide = tmp_path / "wide"
        build_model("llama", seed=3, hidden=48).save_pretrained(wide)
        doc["models"][1]["model"] = str(wide)
        expected = f"error: model '{wide}': tensor 'lm_head.weight' has shape"
    elif case == "architecture":
        other = str(tiny_gpt2_family["experts"][0])
        doc["models"][1]["model"] = other
        expected = f"error: model '{other}': architecture GPT2LMHeadModel (gpt2) differs from base"
    elif case == "tensor_names":
        renamed = tmp_path / "renamed"
        shutil.copytree(tiny_llama_family["experts"][1], renamed)
        state = load_file(str(renamed / "model.safetensors"))
        state["model.layers.0.mlp.gate.weight"] = state.pop("model.layers.0.mlp.gate_proj.weight")
        save_file(state, str(renamed / "model.safetensors"), metadata={"format": "pt"})
        doc["models"][1]["model"] = str(renamed)
        expected = f"error: model '{renamed}': tensor 'model.layers.0.mlp.gate_proj.weight' of base"
    elif case == "non_empty_out":
        out = tmp_path / "busy"
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
        expected = f"error: {out}: output directory is not empty; pass --force to replace it"
    elif case == "bad_recipe":
        doc["models"][0]["parameters"]["density"] = 1.5
        expected = "error: "
        argv_extra = []
    else:
        doc = {"merge_method": "passthrough", "slices": [{"sources": [{"model": "a", "layer_range": [0, 2]}]}]}
        expected = "error: "
    recipe = write(tmp_path / "recipe.yaml", doc)
    code, err = run(["merge", recipe, "-o", str(out), "--no-progress", *argv_extra], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), err
    if case == "bad_recipe":
        assert "density" in lines[0] and "1.5" in lines[0]
    if case == "non_empty_out":
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not out.exists()
    assert not any(p.name.startswith(f".{out.name}.") for p in out.parent.iterdir())


def test_cuda_request_without_cuda_is_one_line(tiny_llama_family, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    recipe = write(tmp_path / "r.yaml", ties_doc(tiny_llama_family, seed=0, options={"layerless_gradient": "ends"}))
    code, err = run(["merge", recipe, "-o", str(tmp_path / "o"), "--device", "cuda"], capsys)
    assert code == 2 and err.strip() == "error: device: 'cuda' requested but CUDA is not available on this machine"
    assert not (tmp_path / "o").exists()
