"""Offload and bf16 in place: a merge streamed from the pool's store through device buffers equals a
resident one bit for bit (the streaming path runs here with a CPU as the device), and a bf16 merge
written chunk by chunk straight into the bf16 weights equals the float32 result cast afterwards."""

from __future__ import annotations

import pytest
import torch

from evomerge.merge.apply import InPlaceMerger, RecipePlan, pool_for_recipe
from evomerge.merge.live import LiveModels
from evomerge.merge.recipes import parse_recipe
from evomerge.testing import build_family

METHODS = ["task_arithmetic", "ties", "dare_ties", "breadcrumbs_ties", "della", "linear", "slerp", "model_stock"]


@pytest.fixture(scope="module")
def wide_family(tmp_path_factory):
    """Three experts; embedding and head of 600 × 128 = 76,800 entries: more than one CPU chunk."""
    return build_family(tmp_path_factory.mktemp("wide"), "llama", n_experts=3, hidden=128, vocab_size=600)


def recipe(family, method: str, dtype: str, shift: float = 0.0):
    base = str(family["base"])
    experts = [str(e) for e in family["experts"]]
    if method == "slerp":
        return parse_recipe(
            {
                "merge_method": "slerp",
                "base_model": base,
                "models": [{"model": experts[0]}],
                "parameters": {"t": 0.3 + shift},
                "dtype": dtype,
            }
        )
    if method == "linear":
        models = [{"model": base, "parameters": {"weight": 0.2}}]
        models += [{"model": e, "parameters": {"weight": 0.3 + k * 0.1 + shift}} for k, e in enumerate(experts)]
        return parse_recipe({"merge_method": "linear", "models": models, "dtype": dtype})
    models = []
    for k, e in enumerate(experts):
        params = {} if method == "model_stock" else {"weight": 0.4 + 0.2 * k - shift}
        if method not in ("task_arithmetic", "model_stock"):
            params["density"] = [{"filter": "embed", "value": 0.35 + shift}, {"value": [0.3 + shift, 0.8 - shift]}]
        models.append({"model": e, "parameters": params})
    return parse_recipe(
        {
            "merge_method": method,
            "base_model": base,
            "models": models,
            "dtype": dtype,
            "seed": 3,
            "options": {"layerless_gradient": "start"},
        }
    )


def live(family, dtype: str, memory: str) -> LiveModels:
    return LiveModels(str(family["base"]), [str(e) for e in family["experts"]], dtype=dtype, memory=memory)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_an_offloaded_merge_equals_a_resident_one_bit_for_bit(wide_family, dtype):
    resident, offloaded = live(wide_family, dtype, "gpu"), live(wide_family, dtype, "offload")
    assert resident.placement.mode == "gpu" and resident.merger.staging is None
    assert offloaded.placement.mode == "offload" and offloaded.merger.staging is not None
    for method in METHODS:
        for shift in (0.0, 0.1):  # the second candidate reuses caches (and skips nothing: all values move)
            r = recipe(wide_family, method, dtype, shift)
            a, _ = resident.build(r)
            b, _ = offloaded.build(r)
            sa, sb = a.state_dict(), b.state_dict()
            assert all(torch.equal(sa[k], sb[k]) for k in sa), (method, shift)
    assert offloaded.merger.staging.nbytes > 0  # every input went through the device buffers


def test_a_streaming_merger_on_a_pool_that_stores_elsewhere_equals_the_resident_one(wide_family):
    r = recipe(wide_family, "dare_ties", "bfloat16")
    results = []
    for stream in (False, True):
        pool = pool_for_recipe(r, dtype=torch.bfloat16)
        pool.place("cpu", compute_device="cpu")
        model = LiveModels(str(wide_family["base"]), [], dtype="bfloat16").model  # a fresh live model
        merger = InPlaceMerger(pool, model, stream=stream)
        assert (merger.staging is not None) == stream
        for shift in (0.0, 0.2):
            merger.apply(recipe(wide_family, "dare_ties", "bfloat16", shift))
        results.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


@pytest.mark.parametrize("method", METHODS)
def test_bf16_merges_write_into_the_bf16_weights_and_equal_the_float32_result_cast(wide_family, method):
    r = recipe(wide_family, method, "bfloat16")
    model = live(wide_family, "bfloat16", "gpu").model
    merger = InPlaceMerger(pool_for_recipe(r, dtype=torch.bfloat16), model)
    merger.apply(r)
    # the path before: the method's float32 result in a fresh tensor, then cast and copied
    fresh = RecipePlan(r, pool_for_recipe(r, dtype=torch.bfloat16, cache=False))
    state = model.state_dict()
    for name in merger.targets:
        expected = fresh.compute(fresh.plan(name))
        assert expected.dtype == torch.bfloat16 and torch.equal(state[name], expected), name
    # where the merge lands: the weight itself for the fused family, else one reused float32 buffer
    plan = RecipePlan(r, merger.pool, cache=merger.cache)
    name = "model.embed_tokens.weight"
    target = merger.targets[name].data
    first = plan.compute(plan.plan(name), out=target)
    second = plan.compute(plan.plan(name), out=target)
    if plan.spec.writes_any_float:
        assert first.data_ptr() == second.data_ptr() == target.data_ptr()
    else:
        assert first.dtype == torch.float32 and first.data_ptr() == second.data_ptr() != target.data_ptr()


def test_the_l1_sweep_gives_the_same_merge_with_or_without_keeping_the_masked_values():
    from evomerge.merge.methods import fused
    from evomerge.merge.methods.selectors import Uniform

    g = torch.Generator().manual_seed(1)
    base = torch.randn(150_000, generator=g)
    taus = [torch.randn(150_000, generator=g) * 0.01 for _ in range(3)]
    keys = [11, 22, 33]  # block keys (evomerge.merge.methods.draws)
    outs = []
    for keep in (True, False):
        for consensus in (None, "sum"):
            selectors = [Uniform(k, d, "l1") for k, d in zip(keys, (0.3, 0.6, 0.9))]
            out = torch.empty(150_000)
            fused.merge(
                base,
                taus,
                selectors,
                [0.5, 0.3, 0.4],
                consensus=consensus,
                normalize=False,
                lam=1.0,
                out=out,
                keep_masked=keep,
            )
            outs.append(out)
    assert torch.equal(outs[0], outs[2]) and torch.equal(outs[1], outs[3])
