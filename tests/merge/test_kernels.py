"""The compiled CPU kernels (evomerge.merge.methods.kernels) compute the torch path's bits."""

from __future__ import annotations

import math
import random

import pytest
import torch

from evomerge.merge.methods import fused, get_method, kernels
from evomerge.merge.methods import selectors as sel
from evomerge.merge.methods.registry import tensor_generator

pytest.importorskip("numba")

FUSED = ["task_arithmetic", "ties", "dare_linear", "dare_ties", "breadcrumbs", "breadcrumbs_ties"]


def merge(name, base, taus, mps, params, out_dtype, compiled: bool, monkeypatch):
    monkeypatch.setenv("EVOMERGE_KERNELS", "" if compiled else "torch")
    spec = get_method(name)
    mps = [{**{k: v for k, v in spec.model_params.items() if v is not None}, **mp} for mp in mps]
    out = torch.full(base.shape, float("nan"), dtype=out_dtype)
    result = spec.fn(base, taus, mps, {**spec.defaults, **params, "_out": out}, tensor_generator(5, "w"))
    assert result.data_ptr() == out.data_ptr()  # written in place either way
    return out


def case(rng: random.Random, name: str):
    n_experts = rng.randint(1, 4)
    n = rng.choice([1, 7, 1023, 1024, 5000, 8192 * 2 + 3, 40_000])
    ties = rng.random() < 0.5  # coarse values: many equal magnitudes, so the cuts split their ties
    g = torch.Generator().manual_seed(rng.randrange(1 << 30))

    def draw(scale):
        x = torch.randn(n, generator=g) * scale
        return (x * 64).round() / 64 if ties else x

    base = draw(1.0)
    taus = [draw(0.05) for _ in range(n_experts)]
    weights = [rng.choice([rng.uniform(-0.5, 1.5), 1.0, 0.0]) if rng.random() < 0.3 else rng.uniform(0.1, 1.2)]
    weights += [rng.uniform(-0.3, 1.2) for _ in range(n_experts - 1)]
    mps = [
        {"weight": w, "density": rng.choice([0.0, 1.0, rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95)])}
        for w in weights
    ]
    if name.startswith("breadcrumbs"):
        for mp in mps:
            mp["gamma"] = rng.choice([0.0, 0.01, 0.2])
    params = {"lambda": rng.uniform(0.5, 1.5)}
    if rng.random() < 0.5:
        params["normalize"] = rng.random() < 0.5
    if name.startswith("dare") or rng.random() < 0.2:
        params["rescale"] = rng.random() < 0.7
    if name.startswith("dare") and rng.random() < 0.4:
        params["rescale_mode"] = "inverse_p"
    if name.endswith("ties") and rng.random() < 0.3:
        params["consensus"] = "count"
    return base, taus, mps, params


@pytest.mark.parametrize("name", FUSED)
def test_compiled_equals_torch_on_random_cases(name, monkeypatch):
    rng = random.Random(hash(name) % 1000)
    for trial in range(14):
        base, taus, mps, params = case(rng, name)
        for dtype, out_dtype in ((torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16)):
            b, ts = base.to(dtype), [t.to(dtype) for t in taus]
            want = merge(name, b, ts, mps, params, out_dtype, False, monkeypatch)
            got = merge(name, b, ts, mps, params, out_dtype, True, monkeypatch)
            assert torch.equal(got, want), (name, trial, dtype, mps, params, int((got != want).sum()))


@pytest.mark.parametrize("inputs,out_dtype", [(torch.float32, torch.bfloat16), (torch.bfloat16, torch.float32)])
def test_compiled_equals_torch_when_the_output_dtype_differs(inputs, out_dtype, monkeypatch):
    rng = random.Random(3)
    for name in ("task_arithmetic", "ties", "dare_ties"):
        base, taus, mps, params = case(rng, name)
        b, ts = base.to(inputs), [t.to(inputs) for t in taus]
        assert torch.equal(
            merge(name, b, ts, mps, params, out_dtype, True, monkeypatch),
            merge(name, b, ts, mps, params, out_dtype, False, monkeypatch),
        )


def test_a_tie_split_ending_inside_a_block_in_the_middle_of_the_tensor(monkeypatch):
    """Ties at the threshold everywhere: the kept ones end in the middle of one block, every block
    before keeps all of its ties and every block after none (the three paths of the kernel)."""
    n = 8192 * 5 + 11
    tau = torch.full((n,), 0.25)
    tau[::3] = -0.25
    tau[::7] = 0.5
    tau[::11] = 0.0
    base = torch.linspace(-1, 1, n)
    for density in (0.2, 0.5, 0.61, 0.85):
        k = int(density * n)
        assert (tau.abs() > 0.25).sum() < k < (tau.abs() >= 0.25).sum()  # the cut splits its ties
        for dtype in (torch.float32, torch.bfloat16):
            b, t = base.to(dtype), [tau.to(dtype)]
            mps = [{"weight": 0.7, "density": density}]
            want = merge("ties", b, t, mps, {}, dtype, False, monkeypatch)
            got = merge("ties", b, t, mps, {}, dtype, True, monkeypatch)
            assert torch.equal(got, want), (density, dtype)
            kept = (want.float() != b.float()).sum()  # every kept entry moves the base here
            assert int(kept) == k


def test_the_l1_partials_are_the_torch_paths(monkeypatch):
    g = torch.Generator().manual_seed(0)
    for n in (1, 1000, 1024, 8192 * 3 + 5):
        x = torch.randn(n, generator=g) * torch.logspace(-6, 3, n)
        for dtype in (torch.float32, torch.bfloat16):
            t = x.to(dtype)
            ints, lo, hi = kernels._encode([sel.Magnitude(sel.Cut.everything())])
            partials = kernels._l1(kernels._array(t), ints[0], lo[0], hi[0])
            assert math.fsum(partials.tolist()) == fused.l1_norm(t), (n, dtype)


def test_della_and_float64_take_the_torch_path():
    base, tau = torch.zeros(100), torch.ones(100)
    rank = sel.RankProbability(1, torch.zeros(100, dtype=torch.int16), torch.full((1,), 0.5), False, None)
    out = torch.empty(100)
    assert not kernels.merge(base, [tau], [rank], [1.0], consensus=None, normalize=False, lam=1.0, out=out, tau_l1=None)
    b64 = torch.zeros(100, dtype=torch.float64)
    assert not kernels.merge(
        b64, [b64], [sel.KeepAll()], [1.0], consensus=None, normalize=False, lam=1.0, out=b64.clone(), tau_l1=None
    )


def test_the_switch_turns_the_kernels_off(monkeypatch):
    monkeypatch.setenv("EVOMERGE_KERNELS", "torch")
    assert not kernels.available()
    monkeypatch.delenv("EVOMERGE_KERNELS")
    assert kernels.available()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dares_l1_table_is_the_same_compiled_or_not_and_is_the_masked_norm(dtype, monkeypatch):
    from evomerge.merge.methods import draws
    from evomerge.merge.methods.selection import dare_l1_table

    g = torch.Generator().manual_seed(4)
    tau = (torch.randn((1 << 20) + 77, generator=g) * torch.rand((1 << 20) + 77, generator=g) ** 4).to(dtype)
    key = draws.block_key(11, 1)
    compiled = dare_l1_table(tau, key)
    monkeypatch.setenv("EVOMERGE_KERNELS", "torch")
    assert (compiled == dare_l1_table(tau, key)).all()  # the same bits, compiled or not
    for d in (0.1, 0.5, 0.93):
        below = draws.keep_below(d)
        exact = math.fsum(tau.double().abs()[_kept(key, tau.numel(), below)].tolist())
        assert compiled[below] == pytest.approx(exact, rel=1e-12)
    assert compiled[0] == 0.0 and compiled[65536] == pytest.approx(math.fsum(tau.double().abs().tolist()), rel=1e-12)


def _kept(key: int, n: int, below: int) -> torch.Tensor:
    from evomerge.merge.methods import draws

    out, tmp = torch.empty(n, dtype=torch.int32), torch.empty(n, dtype=torch.int32)
    return draws.u16_into(key, 0, out, tmp) < below
