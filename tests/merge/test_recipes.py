"""The recipe union: parse_recipe / recipe_dict pick the kind and round-trip; every kind runs itself
(materialize, load_model, to_mergekit) exactly as the engine functions behind it do; `evomerge merge`
takes a data-flow recipe too."""

from __future__ import annotations

import pytest
import torch
import yaml
from pydantic import TypeAdapter

from evomerge.errors import ConfigError
from evomerge.merge.dataflow.fold import materialize_dataflow, to_mergekit_passthrough
from evomerge.merge.dataflow.path_model import build_path_model, load_dataflow_sources
from evomerge.merge.formats import load_recipe
from evomerge.merge.materialize import materialize
from evomerge.merge.mergekit_io import to_mergekit, to_mergekit_yaml
from evomerge.merge.recipes import AnyRecipe, DataFlowRecipe, Recipe, parse_recipe, recipe_dict, recipe_kind

IDS = torch.tensor([[3, 5, 7, 2, 9, 4]])


def ps_doc(family) -> dict:
    return {
        "merge_method": "ties",
        "base_model": str(family["base"]),
        "models": [
            {"model": str(family["experts"][0]), "parameters": {"weight": 0.6, "density": 0.5}},
            {"model": str(family["experts"][1]), "parameters": {"weight": 0.4, "density": 0.7}},
        ],
        "seed": 1,
    }


def df_doc(family, nested: bool = False) -> dict:
    a = ps_doc(family) if nested else str(family["base"])
    return {
        "merge_method": "dataflow",
        "sources": {"A": a, "B": str(family["experts"][1])},
        "embed_from": "A",
        "path": [
            {"model": "A", "layer": 0},
            {"model": "B", "layer": 1, "scale": 1.25},
            {"model": "A", "layer": 1, "scale": 0.8},
        ],
    }


def dirs_equal(a, b) -> None:
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_parse_recipe_picks_the_kind_and_recipe_dict_inverts_it(tiny_llama_family):
    ps, df = ps_doc(tiny_llama_family), df_doc(tiny_llama_family, nested=True)
    r, d = parse_recipe(ps), parse_recipe(df)
    assert type(r) is Recipe and type(d) is DataFlowRecipe
    assert (recipe_kind(ps), recipe_kind(df), recipe_kind(r), recipe_kind(d)) == ("parameter", "dataflow") * 2
    assert parse_recipe(r) is r  # a recipe object passes through
    for obj in (r, d):
        plain = recipe_dict(obj)
        assert plain == obj.model_dump(mode="json")
        assert parse_recipe(plain) == obj
    assert recipe_dict(ps) == ps and recipe_dict(ps) is not ps
    with pytest.raises(TypeError, match="cannot turn a int into a recipe dict"):
        recipe_dict(3)
    # the pydantic union validates into the same kinds
    adapter = TypeAdapter(AnyRecipe)
    assert adapter.validate_python(ps) == r and type(adapter.validate_python(df)) is DataFlowRecipe


def test_parse_recipe_errors_are_worded_by_the_kind(tiny_llama_family):
    with pytest.raises(ConfigError, match=r"^recipe: expected a mapping of recipe keys, got list$"):
        parse_recipe([1, 2])
    bad_ps = {**ps_doc(tiny_llama_family), "merge_method": "tie"}
    with pytest.raises(ConfigError, match=r"^merge_method = 'tie': unknown merge method; expected one of: "):
        parse_recipe(bad_ps)
    bad_df = {**df_doc(tiny_llama_family), "embed_from": "C"}
    with pytest.raises(ConfigError) as exc:
        parse_recipe(bad_df)
    with pytest.raises(ConfigError) as direct:
        DataFlowRecipe.validate_dict(bad_df)
    assert str(exc.value) == str(direct.value) and str(exc.value).startswith("data-flow recipe")


def test_parameter_recipe_is_the_merge_inside(tiny_llama_family):
    r = parse_recipe(ps_doc(tiny_llama_family))
    assert r.parameter_recipe() is r
    assert parse_recipe(df_doc(tiny_llama_family)).parameter_recipe() is None
    nested = parse_recipe(df_doc(tiny_llama_family, nested=True)).parameter_recipe()
    assert nested == r


def test_each_kind_exports_what_the_engine_functions_export(tiny_llama_family):
    r, d = parse_recipe(ps_doc(tiny_llama_family)), parse_recipe(df_doc(tiny_llama_family))
    assert r.to_mergekit() == to_mergekit(r) and r.to_mergekit_yaml() == to_mergekit_yaml(r)
    assert d.to_mergekit() == to_mergekit_passthrough(d)
    assert d.to_mergekit_yaml() == yaml.safe_dump(to_mergekit_passthrough(d), sort_keys=False)
    assert d.to_mergekit()["merge_method"] == "passthrough" and "slices" in d.to_mergekit()


def test_materialize_is_the_engine_writer_byte_for_byte(tiny_llama_family, tmp_path):
    r, d = parse_recipe(ps_doc(tiny_llama_family)), parse_recipe(df_doc(tiny_llama_family, nested=True))
    # same directory names: the model card's title is the directory's name
    one, two = tmp_path / "1", tmp_path / "2"
    dirs_equal(r.materialize(one / "ps", progress=False), materialize(r, two / "ps", progress=False))
    dirs_equal(d.materialize(one / "df"), materialize_dataflow(d, two / "df"))
    # a dtype override writes that dtype (the recipe saved next to the weights says so too)
    half = d.materialize(one / "half", dtype="float16")
    assert yaml.safe_load((half / "dataflow_recipe.yaml").read_text())["dtype"] == "float16"
    dirs_equal(half, materialize_dataflow(d.model_copy(update={"dtype": "float16"}), two / "half"))


def test_load_model_scores_what_a_user_would_get(tiny_llama_family, tmp_path):
    from transformers import AutoModelForCausalLM

    r, d = parse_recipe(ps_doc(tiny_llama_family)), parse_recipe(df_doc(tiny_llama_family, nested=True))
    model, tok = r.load_model(tmp_path / "w")
    reloaded = AutoModelForCausalLM.from_pretrained(materialize(r, tmp_path / "m", progress=False)).eval()
    path, path_tok = d.load_model(tmp_path / "unused")
    reference = build_path_model(d, load_dataflow_sources(d, device="cpu", dtype=torch.float32)).eval()
    with torch.no_grad():
        assert torch.equal(model(IDS).logits, reloaded(IDS).logits)
        assert torch.equal(path(IDS).logits, reference(IDS).logits)
    assert tok("12+3").input_ids == path_tok("12+3").input_ids


def test_load_recipe_sniffs_each_format(tiny_llama_family, tmp_path):
    r, d = parse_recipe(ps_doc(tiny_llama_family)), parse_recipe(df_doc(tiny_llama_family))
    for name, text, expected in (
        ("ours.yaml", r.to_yaml(), r),
        ("mk.yaml", r.to_mergekit_yaml(), r),
        ("df.yaml", d.to_yaml(), d),
    ):
        (tmp_path / name).write_text(text)
        assert load_recipe(tmp_path / name) == expected, name


def test_evomerge_merge_writes_a_data_flow_recipe(tiny_llama_family, tmp_path, capsys):
    from evomerge.cli import main

    d = parse_recipe(df_doc(tiny_llama_family))
    (tmp_path / "df.yaml").write_text(d.to_yaml())
    assert main(["merge", str(tmp_path / "df.yaml"), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    dirs_equal(tmp_path / "out", materialize_dataflow(d, tmp_path / "ref"))
