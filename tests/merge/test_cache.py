"""The search cache (magnitude histograms and windows, common random numbers, DELLA ranks) and the
fused merge: bit-identical to the uncached path and to the unfused reference sparsifiers, memory
accounted, draws replaced when the recipe's seed changes."""

from __future__ import annotations

import math
import random

import pytest
import sparsify_reference as sp
import torch

from evomerge.merge.apply import InPlaceMerger, merged_tensors, pool_for_recipe
from evomerge.merge.cache import MergeCache, SearchCache
from evomerge.merge.methods import get_method
from evomerge.merge.methods.registry import tensor_generator
from evomerge.merge.recipes.parameter import Recipe

METHODS = ["ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear"]
SPARSIFIER = {
    "ties": "magnitude",
    "dare_ties": "random",
    "dare_linear": "random",
    "breadcrumbs": "band",
    "breadcrumbs_ties": "band",
    "della": "rank",
    "della_linear": "rank",
}


def full_params(name, **params):
    spec = get_method(name)
    full = dict(spec.global_params)
    full.update({k: v[0] for k, v in spec.options.items()})
    full.update(params)
    return full


def call(name, base, taus, mps, params, generator=None, cache=None):
    spec = get_method(name)
    mps = [{**{k: v for k, v in spec.model_params.items() if v is not None}, **mp} for mp in mps]
    if cache is not None:
        params = {**params, "_cache": cache}
    return spec.fn(base, taus, mps, params, generator)


def reference(name, base, taus, mps, params, generator):
    """The unfused path: whole-tensor sparsifiers of `sparsify`, then `combine`."""
    spec = get_method(name)
    kind = SPARSIFIER[name]
    rescale, mode = bool(params["rescale"]), params.get("rescale_mode", "l1")
    sparse = []
    generator = sp.Stream(generator)  # one stream: drawing experts take consecutive blocks
    for tau, mp in zip(taus, mps):
        d = mp["density"]
        if kind == "magnitude":
            sparse.append(sp.magnitude(tau, d, rescale=rescale))
        elif kind == "random":
            sparse.append(sp.random_drop(tau, d, generator, rescale=rescale, mode=mode))
        elif kind == "band":
            sparse.append(sp.magnitude_band(tau, d, mp["gamma"], rescale=rescale))
        else:
            sparse.append(sp.rank_sampling(tau, d, mp["epsilon"], generator, rescale=rescale, mode=mode))
        if sparse[-1].values is not None:  # the next sparsifier reuses no buffer
            sparse[-1] = sp.Sparse(sparse[-1].values.clone(), sparse[-1].scale)
    consensus = params.get("consensus", "sum") if "consensus" in spec.options else None
    return sp.combine(
        base,
        taus,
        sparse,
        [mp["weight"] for mp in mps],
        consensus=consensus,
        normalize=bool(params["normalize"]),
        lam=float(params["lambda"]),
    )


def random_case(name, trial):
    r = random.Random(trial)
    mps = []
    for _ in range(3):
        d = r.choice([0.0, 1.0, r.random(), r.random(), r.random()])
        mp = {"weight": r.choice([r.uniform(0.05, 1.5), r.uniform(-0.5, 1.5)]), "density": d}
        if name.startswith("breadcrumbs"):
            mp["gamma"] = r.choice([0.0, 0.01, 0.2])
        if name.startswith("della"):
            mp["epsilon"] = 0.0 if d in (0.0, 1.0) else 0.9 * min(d, 1 - d) * r.random()
        mps.append(mp)
    params = {"rescale": r.random() < 0.6, "lambda": r.uniform(0.5, 1.5), "normalize": r.random() < 0.5}
    spec = get_method(name)
    if "consensus" in spec.options:
        params["consensus"] = r.choice(["sum", "sum", "count"])
    if "rescale_mode" in spec.options:
        params["rescale_mode"] = r.choice(["l1", "inverse_p"])
    return mps, full_params(name, **params), r.randrange(1000)


@pytest.fixture(scope="module")
def tensors():
    g = torch.Generator().manual_seed(0)
    shape = (270, 257)  # 69,390 entries: more than one fused chunk
    base = torch.randn(shape, generator=g)
    taus = [torch.randn(shape, generator=g) * 0.01 for _ in range(3)]
    taus[1] = (taus[1] * 400).round() / 400  # few distinct magnitudes: ties at every threshold
    taus[2][:, :3] = 0.0
    return base, taus


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", METHODS)
def test_cached_equals_uncached_and_reference(name, dtype, tensors):
    base, taus = tensors
    base, taus = base.to(dtype), [t.to(dtype) for t in taus]
    cache = SearchCache()
    for trial in range(8):
        mps, params, seed = random_case(name, trial)
        view = cache.view("w", ["a", "b", "c"])
        cached = call(name, base, taus, mps, params, tensor_generator(seed, "w"), cache=view)
        uncached = call(name, base, taus, mps, params, tensor_generator(seed, "w"))
        ref = reference(name, base, taus, mps, params, tensor_generator(seed, "w"))
        assert torch.equal(cached, uncached), (trial, mps, params)
        if dtype == torch.float32:  # the oracle is written for float32 inputs
            assert torch.equal(cached, ref), (trial, mps, params)
    # the cache's entries serve every density: built once, reused after
    built = dict(cache.builds)
    mps, params, seed = random_case(name, 0)
    for density in (0.3, 0.7):
        mps = [{**mp, "density": density, **({"epsilon": 0.1} if name.startswith("della") else {})} for mp in mps]
        cached = call(
            name, base, taus, mps, params, tensor_generator(seed, "w"), cache=cache.view("w", ["a", "b", "c"])
        )
        assert torch.equal(cached, call(name, base, taus, mps, params, tensor_generator(seed, "w")))
    # histograms, ranks: never again; a float32 window only when a threshold leaves it
    assert {k: v for k, v in cache.builds.items() if k != "window"} == {k: v for k, v in built.items() if k != "window"}
    again = dict(cache.builds)
    call(name, base, taus, mps, params, tensor_generator(seed, "w"), cache=cache.view("w", ["a", "b", "c"]))
    assert cache.builds == again


def _top_k(tau, k):
    """The top-k set of |tau| by a stable descending sort (ties to earlier positions)."""
    keep = torch.zeros(tau.numel(), dtype=torch.bool)
    if k > 0:
        keep[torch.sort(tau.abs().float(), descending=True, stable=True).indices[:k]] = True
    return keep


def _cut_set(tau, cut):
    """The set a Cut describes, computed from its fields alone."""
    a = tau.abs().float()
    if cut.kind == "all":
        return torch.ones(tau.numel(), dtype=torch.bool)
    if cut.kind == "none":
        return torch.zeros(tau.numel(), dtype=torch.bool)
    keep = a >= cut.threshold
    if cut.kept is not None:
        ties = torch.nonzero(a == cut.threshold).view(-1)
        assert ties.numel() == cut.tied
        keep[ties[cut.kept :]] = False
        if cut.position is not None:
            assert cut.position == int(ties[cut.kept - 1]) + 1
    return keep


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_histogram_cut_is_the_stable_sort_top_k(dtype):
    from evomerge.merge.methods.selection import MagnitudeHistogram, cut_by_sort, cut_from_scratch

    g = torch.Generator().manual_seed(5)
    tau = (torch.randn(70_001, generator=g) * 8).round() / 16  # heavy ties
    tau[::7] = 0.0
    tau[1::11] = -0.0
    tau[5] = 3e-4  # a lone small value
    tau = tau.to(dtype)
    n = tau.numel()
    view = SearchCache().view("w", ["a"])
    hist = MagnitudeHistogram(tau)
    for k in [-1, 0, 1, 2, 17, 255, 256, 257, 1500, 30_000, 59_000, 69_999, 70_000, 70_001, 90_000]:
        expected = _top_k(tau, min(max(k, 0), n))
        for cut in (view.cut(0, tau, k), cut_from_scratch(tau, k), cut_by_sort(tau, k), hist.cut(tau, k)):
            got = _cut_set(tau, cut)
            if cut.kind == "threshold" and cut.threshold == 0.0:  # zeros in or out: the same merge
                got &= tau != 0
                expected = expected & (tau != 0)
            assert torch.equal(got, expected), (k, cut)


def test_magnitude_selector_fills_the_cut_chunk_by_chunk_in_any_order():
    from evomerge.merge.methods.selection import cut_from_scratch
    from evomerge.merge.methods.selectors import Magnitude

    g = torch.Generator().manual_seed(9)
    tau = ((torch.randn(200_000, generator=g) * 6).round() / 64).to(torch.bfloat16)
    k = 61_234
    cut = cut_from_scratch(tau, k)
    assert cut.kept is not None and 0 < cut.kept < cut.tied and cut.position is None  # splits its ties
    expected = torch.where(_top_k(tau, k), tau.float(), torch.zeros(()))
    step = 1 << 16
    starts = list(range(0, tau.numel(), step))
    for order in (starts, starts[::-1], [starts[2], starts[0], starts[3], starts[1]]):
        sel = Magnitude(cut, flat=tau)
        out = torch.empty(tau.numel())
        for a in order:
            b = min(a + step, tau.numel())
            sel.fill(a, b, tau[a:b], out[a:b], torch.empty(b - a))
        assert torch.equal(out, expected), order


# ----------------------------------------------------------------------------- on a pool


def recipe(family, method, seed=7, densities=(0.6, 0.4), weights=(0.7, 0.5)):
    e1, e2 = (str(e) for e in family["experts"])
    extra = (
        {"gamma": 0.05} if method.startswith("breadcrumbs") else {"epsilon": 0.1} if method.startswith("della") else {}
    )
    models = [
        {"model": e, "parameters": {"weight": w, "density": d, **extra}}
        for e, w, d in zip((e1, e2), weights, densities)
    ]
    return Recipe.model_validate(
        {"merge_method": method, "base_model": str(family["base"]), "models": models, "seed": seed}
    )


def live_model(family):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(family["base"], dtype=torch.float32).eval()


@pytest.mark.parametrize("method", ["dare_linear", "breadcrumbs_ties", "della"])
def test_inplace_with_cache_equals_one_shot_merge(method, tiny_llama_family):
    model = live_model(tiny_llama_family)
    pool = pool_for_recipe(recipe(tiny_llama_family, method))
    merger = InPlaceMerger(pool, model)
    for densities in ((0.6, 0.4), (0.3, 0.8)):  # the second candidate reuses the cache
        r = recipe(tiny_llama_family, method, densities=densities)
        merger.apply(r)
        one_shot = pool_for_recipe(r, cache=False)
        state = model.state_dict()
        for name, tensor in merged_tensors(r, one_shot):
            assert torch.equal(state[name], tensor), name


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "dare_ties", "della"])
def test_tensors_merged_on_several_threads_equal_one_by_one(method, tiny_llama_family, monkeypatch):
    """After the first apply the compiled kernels merge tensors on torch's thread count at once;
    the weights are those of the sequential apply (and of a one-shot merge)."""
    from evomerge.merge.methods import kernels

    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    monkeypatch.setattr(InPlaceMerger, "PARALLEL_MIN_ENTRIES", 0)  # the tiny model merges in parallel too
    parallel = []
    original = InPlaceMerger._apply_parallel
    monkeypatch.setattr(InPlaceMerger, "_apply_parallel", lambda self, *a: parallel.append(a[2]) or original(self, *a))
    models = {}
    for threads in (True, False):
        if not threads:
            monkeypatch.setattr(InPlaceMerger, "_threads", lambda self: 1)
        model = live_model(tiny_llama_family)
        merger = InPlaceMerger(pool_for_recipe(recipe(tiny_llama_family, method)), model)
        for densities in ((0.6, 0.4), (0.3, 0.8), (0.85, 0.2)):
            merger.apply(recipe(tiny_llama_family, method, densities=densities))
        models[threads] = model.state_dict()
    assert all(torch.equal(models[True][k], models[False][k]) for k in models[True])
    assert parallel == ([3, 3] if kernels.available() else [])  # della: its torch ops run on the threads
    r = recipe(tiny_llama_family, method, densities=(0.85, 0.2))
    for name, tensor in merged_tensors(r, pool_for_recipe(r, cache=False)):
        assert torch.equal(models[True][name], tensor), name


def floats(pool):
    return [n for n in pool.tensor_names if pool.stored_dtype(n).is_floating_point]


def _histogram_bytes(tau):
    bits = tau.reshape(-1).view(torch.int32) & 0x7FFFFFFF  # float32 pool: coarse bins = top 15 bits
    coarse = bits >> 16
    return 8 * (int(coarse.max()) - int(coarse.min()) + 1)


def _window_bytes(tau, density):
    """Entries within 16 coarse bins of the k-th largest magnitude's bin: 4 B pattern + 4 B position."""
    flat = tau.reshape(-1)
    k = int(density * flat.numel())
    if k <= 0 or k >= flat.numel():
        return 0
    coarse = (flat.view(torch.int32) & 0x7FFFFFFF) >> 16
    v = int(coarse[torch.sort(flat.abs(), descending=True, stable=True).indices[k - 1]])
    return 8 * int(((coarse >= max(v - 16, 0)) & (coarse <= v + 16)).sum())


def test_memory_accounting(tiny_llama_family):
    model = live_model(tiny_llama_family)
    sizes = None
    for method, kind in (("ties", "magnitude"), ("dare_ties", "uniforms"), ("della", "ranks")):
        r = recipe(tiny_llama_family, method)
        pool = pool_for_recipe(r)
        merger = InPlaceMerger(pool, model)
        merger.apply(r)
        sizes = [math.prod(pool.shape(n)) for n in floats(pool)]
        usage = merger.cache.search.usage()
        if kind == "magnitude":  # per expert and tensor: the histogram's range, the window around the threshold
            experts = [str(e) for e in r.expert_ids]
            assert usage == {
                "histogram": sum(_histogram_bytes(pool.delta(e, n)) for e in experts for n in floats(pool)),
                "window": sum(
                    _window_bytes(pool.delta(e, n), d) for e, d in zip(experts, (0.6, 0.4)) for n in floats(pool)
                ),
                "ranks": 0,
                "l1_table": 0,
            }
        elif kind == "uniforms":  # DARE: no per-entry state; an L1 table per expert and large tensor
            tables = 2 * 65537 * 8 * sum(1 for s in sizes if s >= 1 << 16)
            assert usage == {"histogram": 0, "window": 0, "ranks": 0, "l1_table": tables}
        else:  # int16 ranks (rows are narrow)
            assert usage == {"histogram": 0, "window": 0, "ranks": 2 * 2 * sum(sizes), "l1_table": 0}
        assert merger.cache.nbytes() == sum(usage.values())
        merger.cache.clear()
        assert merger.cache.nbytes() == 0


def test_dare_masks_are_the_same_with_or_without_a_cache_and_in_any_order(tiny_llama_family):
    """DARE's uniforms are a function of (seed, tensor, block, position): a cached merger, an
    uncached one and a merger that merged other recipes first write the same weights."""
    results = []
    for search, warm_up in ((True, False), (False, False), (True, True)):
        model = live_model(tiny_llama_family)
        pool = pool_for_recipe(recipe(tiny_llama_family, "dare_ties"))
        merger = InPlaceMerger(pool, model, cache=MergeCache(search=search))
        if warm_up:
            merger.apply(recipe(tiny_llama_family, "dare_ties", densities=(0.9, 0.1), seed=3))
        for densities in ((0.6, 0.4), (0.3, 0.8)):
            merger.apply(recipe(tiny_llama_family, "dare_ties", densities=densities))
        results.append({k: v.clone() for k, v in model.state_dict().items()})
    for other in results[1:]:
        assert all(torch.equal(results[0][k], other[k]) for k in results[0])


def test_cache_asks_the_guard_before_keeping_an_entry(tiny_llama_family):
    asked = []
    guard = MergeCache(fits=lambda extra: asked.append(extra) or False)
    model = live_model(tiny_llama_family)
    r = recipe(tiny_llama_family, "della")
    InPlaceMerger(pool_for_recipe(r), model, cache=guard).apply(r)
    assert asked and guard.nbytes() == 0  # refused everything, merged all the same
    state = model.state_dict()
    for name, tensor in merged_tensors(r, pool_for_recipe(r, cache=False)):
        assert torch.equal(state[name], tensor), name


def test_byte_cap_bounds_memory_and_keeps_results(tiny_llama_family):
    from evomerge.pool import ModelPool

    r = recipe(tiny_llama_family, "della")
    cap = 60_000
    capped = MergeCache(search_bytes=cap)
    pool = ModelPool(str(r.base_model), [str(m) for m in r.expert_ids])
    model = live_model(tiny_llama_family)
    InPlaceMerger(pool, model, cache=capped).apply(r)
    assert 0 < capped.nbytes() <= cap
    state = model.state_dict()
    for name, tensor in merged_tensors(r, pool_for_recipe(r, cache=False)):
        assert torch.equal(state[name], tensor), name


def test_seed_change_changes_the_draws(tiny_llama_family):
    model = live_model(tiny_llama_family)
    pool = pool_for_recipe(recipe(tiny_llama_family, "dare_ties"))
    merger = InPlaceMerger(pool, model)
    merger.apply(recipe(tiny_llama_family, "dare_ties", seed=7))
    first = {k: v.clone() for k, v in model.state_dict().items()}
    reseeded = recipe(tiny_llama_family, "dare_ties", seed=8)
    merger.apply(reseeded)
    name = floats(pool)[1]
    state = model.state_dict()
    assert not torch.equal(state[name], first[name])
    for tname, tensor in merged_tensors(reseeded, pool_for_recipe(reseeded, cache=False)):
        assert torch.equal(state[tname], tensor), tname


def test_l1_norm_does_not_depend_on_threads_or_chunking():
    from evomerge.merge.methods import fused

    g = torch.Generator().manual_seed(2)
    x = torch.randn(200_001, generator=g)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fused.l1_norm(x)
        torch.set_num_threads(2)
        two = fused.l1_norm(x)
    finally:
        torch.set_num_threads(threads)
    assert one == two
    assert abs(one - float(x.double().abs().sum())) < 1e-6 * one
