"""Seed genomes of the parameter space: the sources alone and the untuned merges, by hand and merged."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from evomerge.merge.apply import merged_tensors, pool_for_recipe
from evomerge.space import ParameterSpace
from evomerge.space.seeds import UNTUNED_DENSITY, seed_recipes


def _space(method="task_arithmetic", base="base", models=("x/e1", "x/e2"), **kw):
    return ParameterSpace(method, base, list(models), 4, **kw)


def test_task_arithmetic_seeds_by_hand():
    s = _space(layer_groups=2, params=["weight"], ranges={"weight": (0.0, 1.5)})
    seeds = s.seed_genomes()
    assert list(seeds) == ["base", "expert:e1", "expert:e2", "uniform", "sum"]
    # genes: 4 groups (embed, layers.0-1, layers.2-3, head) x (e1, e2); weight v -> gene v / 1.5
    np.testing.assert_array_equal(seeds["base"], np.zeros(8))
    np.testing.assert_allclose(seeds["expert:e1"], [2 / 3, 0] * 4)
    np.testing.assert_allclose(seeds["expert:e2"], [0, 2 / 3] * 4)
    np.testing.assert_allclose(seeds["uniform"], [1 / 3] * 8)  # task arithmetic 1/2 / 1/2
    np.testing.assert_allclose(seeds["sum"], [2 / 3] * 8)  # task arithmetic 1 / 1
    # each decodes to the recipe it names
    e1 = s.to_recipe(seeds["expert:e1"]).to_dict()["models"]
    assert [m["parameters"]["weight"] for m in e1] == [pytest.approx(1.0), 0.0]


def test_density_and_method_choices():
    s = _space("dare_ties", layer_groups=1, method_choices=["ties"])
    seeds = s.seed_genomes()
    assert list(seeds) == ["base", "expert:e1", "expert:e2", "uniform", "sum", "uniform:ties", "sum:ties"]
    names = s.names
    d = names.index("layers.0-3/e1/density")
    w1, w2 = names.index("layers.0-3/e1/weight"), names.index("layers.0-3/e2/weight")
    assert seeds["expert:e1"][d] == 1.0 and seeds["base"][d] == 1.0  # the sources keep every entry
    lo, hi = s.ranges["density"]
    assert seeds["uniform"][d] == pytest.approx((UNTUNED_DENSITY - lo) / (hi - lo))
    assert (seeds["expert:e1"][w1], seeds["expert:e1"][w2]) == (1.0, 0.0)
    # method genes: the seed's method at 2/3, the other at 1/3 (as from_recipe)
    np.testing.assert_allclose(seeds["sum"][-2:], [2 / 3, 1 / 3])
    np.testing.assert_allclose(seeds["sum:ties"][-2:], [1 / 3, 2 / 3])
    np.testing.assert_array_equal(seeds["sum"][:-2], seeds["sum:ties"][:-2])
    assert s.chosen_method(seeds["uniform:ties"]) == "ties"


def test_slerp_linear_clipping_and_duplicates():
    slerp = _space("slerp", models=("x/e1",), layer_groups=1)
    seeds = slerp.seed_genomes()
    assert list(seeds) == ["base", "expert:e1", "uniform"]
    assert [float(v[0]) for v in seeds.values()] == [0.0, 1.0, 0.5]
    # linear over no base: no base seed, and no "sum" (the weights are normalised)
    linear = _space("linear", base=None, layer_groups=1)
    assert list(linear.seed_genomes()) == ["expert:e1", "expert:e2", "uniform"]
    # a range that cannot hold a value clips it; a seed equal to an earlier one is left out
    narrow = _space(layer_groups=1, params=["weight"], ranges={"weight": (0.5, 1.0)})
    seeds = narrow.seed_genomes()
    assert list(seeds) == ["base", "expert:e1", "expert:e2", "sum"]  # uniform (0.5, 0.5) == base clipped
    np.testing.assert_array_equal(seeds["base"], np.zeros(6))
    # the seed recipes themselves are valid recipes of the space
    for recipe in seed_recipes(narrow).values():
        narrow.from_recipe(recipe)


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "dare_ties"])
def test_source_seeds_merge_to_the_sources(tiny_llama_family, method):
    base, experts = tiny_llama_family["base"], tiny_llama_family["experts"]
    s = ParameterSpace(method, str(base), [str(e) for e in experts], 2, layer_groups=2)
    seeds = s.seed_genomes()
    names = [f"expert:{n}" for n in s.expert_names]
    for label, path in [("base", base), *zip(names, experts)]:
        recipe = s.to_recipe(seeds[label])
        want = load_file(str(path / "model.safetensors"))
        got = dict(merged_tensors(recipe, pool_for_recipe(recipe)))
        assert set(got) == set(want)
        for name, tensor in want.items():
            torch.testing.assert_close(got[name], tensor, rtol=0, atol=1e-6, msg=f"{method} {label} {name}")
