"""LiveModels: a worker's resident models. A parameter-space recipe is merged in place into the live
model (equal to a one-shot merge), ``reset`` makes the next build rewrite everything, and data-flow
sources are read from disk once for the worker's life."""

from __future__ import annotations

import torch
import transformers

from evomerge.merge.apply import merged_tensors, pool_for_recipe
from evomerge.merge.dataflow.path_model import build_path_model, load_dataflow_sources
from evomerge.merge.live import LiveModels
from evomerge.merge.recipes import parse_recipe

IDS = torch.tensor([[3, 5, 7, 2, 9]])


def ps(family, w: float):
    return parse_recipe(
        {
            "merge_method": "dare_ties",
            "base_model": str(family["base"]),
            "models": [
                {"model": str(family["experts"][0]), "parameters": {"weight": w, "density": 0.5}},
                {"model": str(family["experts"][1]), "parameters": {"weight": 1 - w, "density": 0.7}},
            ],
            "seed": 4,
        }
    )


def one_shot(recipe) -> dict:
    return dict(merged_tensors(recipe, pool_for_recipe(recipe, cache=False)))


def assert_state(model, expected: dict) -> None:
    state = model.state_dict()
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor), name


def test_parameter_recipes_merge_in_place_like_a_one_shot_merge(tiny_llama_family):
    live = LiveModels(str(tiny_llama_family["base"]), [str(e) for e in tiny_llama_family["experts"]])
    ptrs = {n: p.data_ptr() for n, p in live.model.named_parameters()}
    for w in (0.3, 0.8):
        r = ps(tiny_llama_family, w)
        model, tokenizer = live.build(r)
        assert model is live.model and tokenizer is live.tokenizer
        assert_state(model, one_shot(r))
    assert ptrs == {n: p.data_ptr() for n, p in live.model.named_parameters()}  # written in place


def test_reset_makes_the_next_build_rewrite_every_tensor(tiny_llama_family):
    live = LiveModels(str(tiny_llama_family["base"]), [str(e) for e in tiny_llama_family["experts"]])
    r = ps(tiny_llama_family, 0.4)
    live.build(r)
    with torch.no_grad():  # a merge that failed half-way leaves other values behind
        for p in live.model.parameters():
            p.zero_()
    live.build(r)  # same recipe: every tensor is skipped as up to date
    assert all(float(p.abs().sum()) == 0.0 for p in live.model.parameters())
    live.reset()
    live.build(r)
    assert_state(live.model, one_shot(r))


def test_data_flow_sources_are_loaded_once_and_run_like_the_loader(tiny_llama_family, monkeypatch):
    loads = []
    real = transformers.AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, ref, *args, **kwargs):
        loads.append(str(ref))
        return real(cls, ref, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(counting))
    base, (e1, e2) = str(tiny_llama_family["base"]), [str(e) for e in tiny_llama_family["experts"]]
    live = LiveModels(base, [e1, e2])
    assert loads == [base]  # the live model
    by_live = []
    for scale in (1.0, 1.5, 0.7):
        d = parse_recipe(
            {
                "merge_method": "dataflow",
                "sources": {"A": e1, "B": e2},
                "embed_from": "A",
                "path": [
                    {"model": "A", "layer": 0},
                    {"model": "B", "layer": 1, "scale": scale},
                    {"model": "A", "layer": 1},
                ],
            }
        )
        before = len(loads)
        model, tokenizer = live.build(d)
        by_live += loads[before:]
        reference = build_path_model(d, load_dataflow_sources(d, device="cpu", dtype=torch.float32))
        with torch.no_grad():
            assert torch.equal(model(IDS).logits, reference(IDS).logits)
        assert tokenizer is live.tokenizer_for(e1)
    assert by_live == [e1, e2]  # each source read once, by the first recipe naming it
