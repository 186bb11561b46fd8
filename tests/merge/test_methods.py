"""Merge methods against hand-computed references, identities and properties."""

import math

import pytest
import sparsify_reference as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evomerge.merge.methods import draws, get_method, method_names
from evomerge.merge.methods.fused import cached_l1_norm
from evomerge.merge.methods.registry import tensor_generator
from evomerge.merge.methods.thresholds import global_trim_thresholds, kth_largest, top_k_mask_


def T(*values):
    return torch.tensor(values, dtype=torch.float32)


def run(name, base, tensors, model_params, generator=None, **params):
    """Call a method the way the engine does: defaults and option defaults filled in."""
    spec = get_method(name)
    full = dict(spec.global_params)
    full.update({k: v[0] for k, v in spec.options.items()})
    full.update(params)
    mps = [{**{k: v for k, v in spec.model_params.items() if v is not None}, **mp} for mp in model_params]
    return spec.fn(base, tensors, mps, full, generator)


def close(actual, expected, tol=1e-6):
    torch.testing.assert_close(actual, expected, rtol=0, atol=tol)


def test_registry_has_every_mergekit_method():
    assert method_names() == sorted(
        [
            "linear",
            "task_arithmetic",
            "ties",
            "dare_linear",
            "dare_ties",
            "slerp",
            "breadcrumbs",
            "breadcrumbs_ties",
            "della",
            "della_linear",
            "model_stock",
        ]
    )
    assert get_method("ties").global_params["normalize"] is True
    assert get_method("dare_ties").global_params["normalize"] is False
    assert get_method("dare_ties").global_params["rescale"] is True
    assert get_method("della").global_params["normalize"] is True
    assert get_method("slerp").global_params == {"t": None}


# ----------------------------------------------------------------------------- hand references


def test_linear_reference():
    a, b = T(1, 2, 3, 4), T(3, 2, 1, 0)
    # (1·A + 3·B) / 4
    close(run("linear", None, [a, b], [{"weight": 1}, {"weight": 3}]), T(2.5, 2.0, 1.5, 1.0))
    close(run("linear", None, [a, b], [{"weight": 1}, {"weight": 3}], normalize=False), T(10, 8, 6, 4))


def test_task_arithmetic_reference():
    base = T(1, 1, 1, 1)
    t1, t2 = T(1, -2, 0, 4), T(2, 2, -1, 0)
    # 1 + 2·(0.5·t1 + 1·t2) = 1 + 2·[2.5, 1, -1, 2]
    out = run("task_arithmetic", base, [t1, t2], [{"weight": 0.5}, {"weight": 1.0}], **{"lambda": 2.0})
    close(out, T(6, 3, -1, 5))
    # normalize: divide by Σw = 1.5 before λ
    out = run("task_arithmetic", base, [t1, t2], [{"weight": 0.5}, {"weight": 1.0}], normalize=True)
    close(out, T(1 + 2.5 / 1.5, 1 + 1 / 1.5, 1 - 1 / 1.5, 1 + 2 / 1.5))


def test_ties_reference():
    base = T(10, 10, 10, 10)
    t1, t2 = T(3, -1, 2, -4), T(2, -3, 1, 1)
    # density 0.5 keeps 2 of 4: t1 → [3, 0, 0, -4], t2 → [2, -3, 0, 0]
    # weights (2, 1): votes [6, 0, 0, -8], [2, -3, 0, 0]; sum [8, -3, 0, -8] → signs + - + -
    # agreeing: e0 both → (6 + 2)/(2 + 1); e1 t2 → -3/1; e2 none → 0; e3 t1 → -8/2
    mps = [{"weight": 2, "density": 0.5}, {"weight": 1, "density": 0.5}]
    close(run("ties", base, [t1, t2], mps), T(10 + 8 / 3, 7, 10, 6))
    close(run("ties", base, [t1, t2], mps, normalize=False), T(18, 7, 10, 2))
    close(run("ties", base, [t1, t2], mps, normalize=False, **{"lambda": 0.5}), T(14, 8.5, 10, 6))


def test_ties_consensus_count_option():
    base = T(0)
    taus = [T(1), T(1), T(-5)]
    mps = [{"weight": 1, "density": 1}] * 3
    # sum: 1 + 1 - 5 < 0 → only the -5 agrees; count: two positive signs win → (1 + 1)/2
    close(run("ties", base, taus, mps), T(-5))
    close(run("ties", base, taus, mps, consensus="count"), T(1))


def test_ties_trim_with_l1_rescale():
    # keep [-4, 3]: L1 before 10, after 7 → ×10/7
    out = sp.magnitude(T(1, -2, 3, -4), 0.5, rescale=True)
    close(out.values * out.scale, T(0, 0, 30 / 7, -40 / 7))


def test_ties_trim_breaks_magnitude_ties_by_position():
    # |τ| = 1 everywhere; keep int(0.5·6) = 3: the first three
    out = sp.magnitude(T(1, -1, 1, -1, 1, -1), 0.5)
    close(out.values, T(1, -1, 1, 0, 0, 0))


def test_ties_model_scope_uses_given_threshold():
    base = T(0, 0, 0, 0)
    mps = [{"weight": 1, "density": 0.5, "_threshold": 2.5}]
    close(run("ties", base, [T(1, -2, 3, -4)], mps, ties_scope="model"), T(0, 0, 3, -4))
    with pytest.raises(ValueError, match="_threshold"):
        run("ties", base, [T(1, -2, 3, -4)], [{"weight": 1, "density": 0.5}], ties_scope="model")


def test_global_trim_thresholds_match_flattened_model():
    g = torch.Generator().manual_seed(0)
    model_a = [torch.randn(100, 60, generator=g), torch.randn(500, generator=g) * 3]
    model_b = [torch.randn(100, 60, generator=g) * 0.1, torch.randn(500, generator=g)]
    thresholds = global_trim_thresholds([model_a, model_b], [0.2, 0.7])
    for model, density, h in zip([model_a, model_b], [0.2, 0.7], thresholds):
        flat = torch.cat([t.reshape(-1).abs() for t in model])
        k = int(density * flat.numel())
        assert h == float(torch.sort(flat, descending=True).values[k - 1])
        assert int((flat >= h).sum()) == k


def test_kth_largest_exact_on_large_tensor():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(270_000, generator=g).abs()
    x[:1000] = 0.5  # a block of ties
    for k in (1, 17, 135_000, 269_999, 270_000):
        assert float(kth_largest(x, k)) == float(torch.sort(x, descending=True).values[k - 1])
    mask = top_k_mask_(x.clone(), 135_000)
    assert int(mask.sum()) == 135_000


def test_dare_reference_with_known_mask():
    base = T(1, 1, 1, 1, 1, 1, 1, 1)
    tau = T(1, -2, 3, -4, 5, -6, 7, -8)
    name, seed, density = "model.layers.0.mlp.down_proj.weight", 7, 0.5
    key = draws.block_key(tensor_generator(seed, name).initial_seed(), 0)
    keep = torch.tensor([draws.u16_scalar(key, p) < 32768 for p in range(8)])  # u < 1/2
    kept = tau * keep
    # paper rescale: 1/density; mergekit: L1(τ) / L1(kept) = 36 / Σ|kept|
    out = run(
        "dare_linear",
        base,
        [tau],
        [{"weight": 1, "density": density}],
        tensor_generator(seed, name),
        rescale_mode="inverse_p",
    )
    close(out, base + kept * 2.0)
    out = run("dare_linear", base, [tau], [{"weight": 1, "density": density}], tensor_generator(seed, name))
    close(out, base + kept * (36.0 / float(kept.abs().sum())), tol=1e-5)
    # same seed and name → same mask; another name → another mask
    again = run("dare_linear", base, [tau], [{"weight": 1, "density": density}], tensor_generator(seed, name))
    close(again, out, tol=0)


def test_tensor_generator_is_stable_and_name_dependent():
    a = torch.rand(16, generator=tensor_generator(3, "x.weight"))
    b = torch.rand(16, generator=tensor_generator(3, "x.weight"))
    c = torch.rand(16, generator=tensor_generator(3, "y.weight"))
    d = torch.rand(16, generator=tensor_generator(4, "x.weight"))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)


def test_breadcrumbs_reference():
    base = torch.zeros(10)
    tau = T(1, -2, 3, -4, 5, -6, 7, -8, 9, -10)
    # n = 10, density 0.5 → 5 kept; gamma 0.1 → drop the top 1 (|−10|) and the 4 smallest
    out = run("breadcrumbs", base, [tau], [{"weight": 1, "density": 0.5, "gamma": 0.1}])
    close(out, T(0, 0, 0, 0, 5, -6, 7, -8, 9, 0))
    # gamma 0 (n_top = 0) keeps the top 5 (mergekit's slice [n_bot:-0] would keep nothing)
    out = run("breadcrumbs", base, [tau], [{"weight": 1, "density": 0.5, "gamma": 0.0}])
    close(out, T(0, 0, 0, 0, 0, -6, 7, -8, 9, -10))


def test_breadcrumbs_ties_reference():
    base = torch.zeros(4)
    t1, t2 = T(1, 2, -3, 4), T(-1, -1.5, 3, -2)
    # density 0.5, gamma 0.25: drop the top 1 and the bottom 1 → t1 [0, 2, -3, 0], t2 [0, -1.5, 0, -2]
    # votes sum [0, 0.5, -3, -2] → signs + + - -; e1: only t1 (+2) agrees; normalize off
    out = run("breadcrumbs_ties", base, [t1, t2], [{"weight": 1, "density": 0.5, "gamma": 0.25}] * 2)
    close(out, T(0, 2, -3, -2))


def test_della_keep_probabilities_follow_rank():
    rows = 6000
    tau = T(1, 5, 2, 4, 3).repeat(rows, 1)
    # ranks [0, 4, 1, 3, 2] of 5 → p = 0.3 + 0.4·r/4
    expected = T(0.3, 0.7, 0.4, 0.6, 0.5)
    out = sp.rank_sampling(tau, 0.5, 0.2, tensor_generator(0, "w"), rescale=False)
    freq = (out.values != 0).float().mean(0)
    close(freq, expected, tol=0.03)
    # paper rescale: survivors divided by their own p
    out = sp.rank_sampling(tau, 0.5, 0.2, tensor_generator(0, "w"), rescale=True, mode="inverse_p")
    kept = out.values[0] != 0
    close(out.values[0][kept], (tau[0] / expected)[kept])
    close(out.values.mean(0), tau[0], tol=0.15)


def test_della_linear_l1_and_della_ties():
    base = torch.zeros(2, 50)
    g = torch.Generator().manual_seed(0)
    tau = torch.randn(2, 50, generator=g)
    out = run("della_linear", base, [tau], [{"weight": 1, "density": 0.4, "epsilon": 0.1}], tensor_generator(1, "w"))
    kept = out != 0
    assert 0 < int(kept.sum()) < 100
    # mergekit rescale keeps the L1 norm of the tensor
    close(out.abs().sum(), tau.abs().sum(), tol=1e-4)
    close(out[kept] / tau[kept], torch.full_like(out[kept], float(out[kept][0] / tau[kept][0])), tol=1e-5)
    # della with one expert and weight 1 equals della_linear (same masks)
    out_ties = run("della", base, [tau], [{"weight": 1, "density": 0.4, "epsilon": 0.1}], tensor_generator(1, "w"))
    close(out_ties, out, tol=1e-6)


def test_slerp_reference():
    a, b = T(1, 0), T(0, 1)
    s = math.sqrt(0.5)
    close(run("slerp", a, [b], [{}], t=0.5), T(s, s))
    close(run("slerp", a, [b], [{}], t=1 / 3), T(math.cos(math.pi / 6), 0.5))
    # non-unit: coefficients apply to the raw vectors
    close(run("slerp", T(2, 0), [T(0, 4)], [{}], t=0.5), T(2 * s, 4 * s))
    # nearly colinear → linear interpolation
    close(run("slerp", T(1, 2), [T(2, 4)], [{}], t=0.25), T(1.25, 2.5))


def test_model_stock_reference():
    base = T(0, 0)
    # orthogonal offsets: cos 0 → t 0 → the base
    close(run("model_stock", base, [T(1, 0), T(0, 1)], [{}, {}]), T(0, 0))
    # cos = 1/√2, N = 2 → t = 2c / (1 + c) = 2(√2 − 1); mean offset [1, 0.5]
    t = 2 * (math.sqrt(2) - 1)
    close(run("model_stock", base, [T(1, 0), T(1, 1)], [{}, {}]), T(t, t / 2))
    # filter_wise: one t per row; row 0 as above, row 1 orthogonal → base row
    out = run(
        "model_stock",
        torch.zeros(2, 2),
        [torch.tensor([[1.0, 0], [1, 0]]), torch.tensor([[1.0, 1], [0, 1]])],
        [{}, {}],
        filter_wise=True,
    )
    close(out, torch.tensor([[t, t / 2], [0.0, 0.0]]))


# ----------------------------------------------------------------------------- identities


@pytest.fixture
def tensors():
    g = torch.Generator().manual_seed(42)
    base = torch.randn(8, 16, generator=g)
    return base, [torch.randn(8, 16, generator=g) * 0.1 for _ in range(3)]


def test_linear_weights_one_zero_is_model_a(tensors):
    _, experts = tensors
    out = run("linear", None, experts[:2], [{"weight": 1}, {"weight": 0}])
    assert torch.equal(out, experts[0])


def test_ties_density_one_single_expert_is_task_arithmetic(tensors):
    base, taus = tensors
    ta = run("task_arithmetic", base, taus[:1], [{"weight": 1}], **{"lambda": 0.7})
    ties = run("ties", base, taus[:1], [{"weight": 1, "density": 1}], **{"lambda": 0.7})
    close(ties, ta)
    ta = run("task_arithmetic", base, taus[:1], [{"weight": 0.3}])
    ties = run("ties", base, taus[:1], [{"weight": 0.3, "density": 1}], normalize=False)
    close(ties, ta)


@pytest.mark.parametrize("method", ["dare_linear", "dare_ties"])
def test_dare_density_one_is_task_arithmetic(tensors, method):
    base, taus = tensors
    n = 3 if method == "dare_linear" else 1
    mps = [{"weight": w, "density": 1.0} for w in (0.5, 0.8, 1.2)[:n]]
    ta = run("task_arithmetic", base, taus[:n], mps)
    out = run(method, base, taus[:n], mps, tensor_generator(0, "t"))
    close(out, ta)


def test_slerp_endpoints(tensors):
    base, experts = tensors
    assert torch.equal(run("slerp", base, [experts[0]], [{}], t=0.0), base)
    assert torch.equal(run("slerp", base, [experts[0]], [{}], t=1.0), experts[0])


def test_model_stock_identical_experts(tensors):
    base, taus = tensors
    out = run("model_stock", base, [taus[0], taus[0].clone(), taus[0].clone()], [{}, {}, {}])
    close(out, base + taus[0], tol=1e-6)


def test_methods_do_not_write_into_inputs(tensors):
    base, taus = tensors
    before = [base.clone()] + [t.clone() for t in taus]
    for name in method_names():
        spec = get_method(name)
        n = 1 if name == "slerp" else 3
        mps = [{"weight": 0.5, "density": 0.6, "gamma": 0.05, "epsilon": 0.1}] * n
        mps = [{k: v for k, v in mp.items() if k in spec.model_params} for mp in mps]
        run(
            name,
            base if spec.needs_base else None,
            taus[:n],
            mps,
            tensor_generator(0, "x"),
            **({"t": 0.3} if name == "slerp" else {}),
        )
    for original, now in zip(before, [base] + taus):
        assert torch.equal(original, now)


def test_bfloat16_inputs_give_float32(tensors):
    base, taus = tensors
    out = run("ties", base.bfloat16(), [t.bfloat16() for t in taus], [{"weight": 1, "density": 0.5}] * 3)
    assert out.dtype == torch.float32 and out.shape == base.shape


# ----------------------------------------------------------------------------- properties

finite = st.floats(-10, 10, allow_nan=False, width=32)
vectors = st.integers(2, 12).flatmap(
    lambda n: st.lists(st.lists(finite, min_size=n, max_size=n), min_size=2, max_size=4)
)


@settings(max_examples=60, deadline=None)
@given(rows=vectors, weights=st.lists(st.floats(0.05, 5), min_size=4, max_size=4))
def test_linear_normalized_is_convex(rows, weights):
    xs = [torch.tensor(r) for r in rows]
    out = run("linear", None, xs, [{"weight": w} for w in weights[: len(xs)]])
    stacked = torch.stack(xs)
    assert torch.all(out >= stacked.min(0).values - 1e-4) and torch.all(out <= stacked.max(0).values + 1e-4)


@settings(max_examples=60, deadline=None)
@given(rows=vectors, density=st.floats(0.1, 1.0), weights=st.lists(st.floats(0.1, 3), min_size=4, max_size=4))
def test_ties_output_sign_follows_elected_sign(rows, density, weights):
    taus = [torch.tensor(r) for r in rows]
    mps = [{"weight": w, "density": density} for w in weights[: len(taus)]]
    base = torch.zeros_like(taus[0])
    out = run("ties", base, taus, mps)
    trimmed = [sp.magnitude(t, density).values if density < 1 else t for t in taus]
    elected = sum(w * t for w, t in zip(weights, trimmed))
    sign = torch.where(elected >= 0, 1.0, -1.0)
    assert torch.all(out * sign >= 0)
    # and every kept entry of the result comes from experts that agree with it
    assert torch.all((out != 0) <= (elected != 0) | (out == 0))


@settings(max_examples=40, deadline=None)
@given(a=st.lists(finite, min_size=3, max_size=3), b=st.lists(finite, min_size=3, max_size=3), t=st.floats(0, 1))
def test_slerp_preserves_norm_of_unit_vectors(a, b, t):
    va, vb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    if va.norm() < 1e-3 or vb.norm() < 1e-3:
        return
    va, vb = va / va.norm(), vb / vb.norm()
    cos = float(va @ vb)
    if cos < -0.99:  # antipodal: the great circle is ill-defined
        return
    out = run("slerp", va, [vb], [{}], t=t)
    tol = 1e-6 if abs(cos) <= 0.9995 else 1e-3  # the linear fallback shortens the chord slightly
    assert abs(float(out.norm()) - 1.0) < tol


def test_dare_is_unbiased_over_seeds():
    g = torch.Generator().manual_seed(3)
    tau = torch.randn(64, generator=g)
    base = torch.zeros(64)
    mps = [{"weight": 1.0, "density": 0.3}]
    for mode, tol in (("inverse_p", 0.12), ("l1", 0.15)):
        mean = torch.stack(
            [run("dare_linear", base, [tau], mps, tensor_generator(s, "w"), rescale_mode=mode) for s in range(600)]
        ).mean(0)
        assert float((mean - tau).abs().max()) < tol * float(tau.abs().max()) * 3
        assert float((mean - tau).abs().mean()) < tol * float(tau.abs().mean())


def test_l1_cache_notices_in_place_writes():
    tau = T(1, -2, 3, -4)
    assert cached_l1_norm(tau) == 10.0
    tau.mul_(2)
    assert cached_l1_norm(tau) == 20.0
