"""M2N2's mutation (fixed and the 1/5 rule), the seeded archive and the extra uniform draws."""

import json
import pickle

import numpy as np
import pytest
from conftest import BoxSpace, SeededBox, evaluate

from evomerge.drivers import make_driver
from evomerge.drivers.base import Outcome
from evomerge.drivers.m2n2 import ADAPT_DAMPING, SIGMA_MAX
from evomerge.errors import ConfigError


def tell_rows(driver, cands, rows):
    driver.tell(cands, [Outcome(c.id, np.array([np.mean(r)]), np.asarray(r, float)) for c, r in zip(cands, rows)])


def test_mutation_leaves_the_span_of_the_archive_and_stays_in_the_box():
    init = [np.full(6, 0.2), np.full(6, 0.9)]
    spans = {}
    for sigma in (0.0, 0.1):
        d = make_driver("m2n2", BoxSpace(6), seed=4, initial=init, crossover="linear", mutation_std=sigma)
        tell_rows(d, d.ask(2), [[1, 0], [0, 1]])
        kids = np.array([k.genome for k in d.ask(300)])
        spans[sigma] = (kids.min(), kids.max())
        assert np.all((kids >= 0.0) & (kids <= 1.0))
    assert spans[0.0][0] >= 0.2 - 1e-12 and spans[0.0][1] <= 0.9 + 1e-12  # crossover alone: inside the span
    assert spans[0.1][0] < 0.15 and spans[0.1][1] > 0.95


def test_mutation_noise_has_the_given_sigma():
    # identical parents: every crossover gives the parent itself, so child - parent is the noise
    d = make_driver("m2n2", BoxSpace(8), seed=5, initial=[np.full(8, 0.5)] * 2, mutation_std=0.05)
    tell_rows(d, d.ask(2), [[1, 0], [0, 1]])
    kids = d.ask(250)
    noise = np.array([k.genome for k in kids]) - 0.5
    assert all(k.meta["sigma"] == 0.05 for k in kids)
    assert abs(noise.mean()) < 0.005 and 0.047 < noise.std() < 0.053  # 2000 draws: ±3 standard errors


def test_one_fifth_rule_by_hand():
    s0 = 0.05
    d = make_driver(
        "m2n2",
        BoxSpace(3),
        seed=0,
        archive_size=3,
        initial=[[0.1, 0.1, 0.1], [0.9, 0.9, 0.9]],
        mutation_std=s0,
        mutation_adapt="one_fifth",
    )
    tell_rows(d, d.ask(2), [[1, 0, 0, 0], [0, 1, 0, 0]])  # values 0.25 each; initial genomes: no step
    assert d.mutation_std == s0 and d.adapt_counts == [0, 0]
    (c,) = d.ask(1)
    assert c.meta["origin"] == "crossover" and c.meta["sigma"] == s0
    tell_rows(d, [c], [[0, 0, 1, 1]])  # 0.5 beats both parents (0.25): success
    up = s0 * np.exp(1.0 / ADAPT_DAMPING)
    assert d.mutation_std == pytest.approx(up) and d.adapt_counts == [1, 1]
    (c,) = d.ask(1)
    assert c.meta["sigma"] == pytest.approx(up)
    tell_rows(d, [c], [[0, 1, 0, 0]])  # 0.25 beats no parent (each has >= 0.25): failure
    down = up * np.exp(-0.25 / ADAPT_DAMPING)
    assert d.mutation_std == pytest.approx(down) and d.adapt_counts == [1, 2]
    (c,) = d.ask(1)
    d.tell([c], [Outcome(c.id, np.zeros(1), failed=True)])  # a failed child is a failure too
    assert d.mutation_std == pytest.approx(down * np.exp(-0.25 / ADAPT_DAMPING)) and d.adapt_counts == [1, 3]
    # two children asked at one σ, told later: both count; rising values: successes all the way
    for k in range(15):
        a, b = d.ask(2)
        d.tell([a, b], [Outcome(x.id, np.array([1.0 + 2 * k + i]), np.ones(4)) for i, x in enumerate((a, b))])
    assert d.adapt_counts == [31, 33] and d.mutation_std == SIGMA_MAX  # σ stops at SIGMA_MAX


def test_one_fifth_rule_counts_crossover_children_only():
    d = make_driver(
        "m2n2", BoxSpace(2), seed=0, initial=[[0.1, 0.1], [0.9, 0.9]], mutation_std=0.1, mutation_adapt="one_fifth"
    )
    cands = d.ask(4)  # two initial genomes, then two crosses of them before any result: no parents' values
    assert [c.meta["origin"] for c in cands] == ["initial"] * 2 + ["initial-crossover"] * 2
    tell_rows(d, cands, [[1, 0], [0, 1], [1, 1], [1, 1]])
    assert d.mutation_std == 0.1 and d.adapt_counts == [0, 0]
    with pytest.raises(ConfigError) as exc:
        make_driver("m2n2", BoxSpace(2), mutation_adapt="one_fifth")
    assert str(exc.value) == "drivers.m2n2: mutation_adapt needs mutation_std > 0 (the starting σ)"


def test_seeded_archive_then_uniform_draws_then_crosses():
    d = make_driver("m2n2", SeededBox(3), seed=2, initial="seeded", initial_random=2, crossover="linear")
    cands = d.ask(8)
    assert [c.meta.get("seed") for c in cands[:4]] == ["low", "high", "q1", "q3"]
    for c, v in zip(cands, [0.0, 1.0, 0.25, 0.75]):
        np.testing.assert_array_equal(c.genome, np.full(3, v))
    assert [c.meta["origin"] for c in cands] == ["initial"] * 6 + ["initial-crossover"] * 2
    assert all("seed" not in c.meta for c in cands[4:])
    draws = np.array([c.genome for c in cands[4:6]])
    assert np.all((draws >= 0) & (draws <= 1)) and len({tuple(r) for r in draws}) == 2
    # nothing told yet: the fillers cross two of the six initial genomes
    assert all(len(set(c.meta["initial"])) == 2 and max(c.meta["initial"]) < 6 for c in cands[6:])


def test_seeded_errors_are_one_line():
    with pytest.raises(ConfigError) as exc:
        make_driver("m2n2", BoxSpace(3), initial="seeded")
    assert str(exc.value) == (
        "drivers.m2n2: initial='seeded' needs a space with seed genomes (space kind parameter), got BoxSpace"
    )
    with pytest.raises(ConfigError) as exc:
        make_driver("m2n2", BoxSpace(3, lower=-np.inf, upper=np.inf), initial_random=2)
    assert str(exc.value) == "drivers.m2n2: initial_random needs a finite box"
    with pytest.raises(ConfigError, match=r"driver.options.initial_random"):
        make_driver("m2n2", BoxSpace(3), initial_random=-1)


def test_seeded_from_a_parameter_space():
    from evomerge.space import ParameterSpace

    space = ParameterSpace("task_arithmetic", "b", ["x/e1", "x/e2"], 4, layer_groups=2, params=["weight"])
    d = make_driver("m2n2", space, seed=0, initial="seeded")
    seeds = space.seed_genomes()
    cands = d.ask(len(seeds))
    assert [c.meta["seed"] for c in cands] == list(seeds)
    assert all(np.array_equal(c.genome, g) for c, g in zip(cands, seeds.values()))


def test_a_checkpoint_from_before_seeds_and_adaptation_still_loads():
    def build():
        return make_driver("m2n2", BoxSpace(3), seed=9, initial="random", archive_size=4)

    def objective(x):
        per = (x > 0.5).astype(float)
        return np.array([per.mean()]), per

    ref, d = build(), build()
    for drv in (ref, d):
        c = drv.ask(6)
        drv.tell(c, evaluate(objective, c))
    state = pickle.loads(pickle.dumps(d.state_dict()))
    for key in ("initial_names", "children", "mutation_std", "adapt_counts", "values"):  # the keys added with them
        del state[key]
    fresh = build()
    fresh.load_state_dict(state)
    for _ in range(5):
        a, b = ref.ask(2), fresh.ask(2)
        assert all(np.array_equal(x.genome, y.genome) and x.id == y.id for x, y in zip(a, b))
        ref.tell(a, evaluate(objective, a))
        fresh.tell(b, evaluate(objective, b))


def _plain(obj, path="state"):
    """Assert ``obj`` is plain data (dict / list / str / int / float / bool / None, numpy float arrays)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, (str, int)) and not isinstance(k, bool), f"{path}: key {k!r}"
            _plain(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _plain(v, f"{path}[{i}]")
    elif isinstance(obj, np.ndarray):
        assert obj.dtype.kind in "fiub", f"{path}: dtype {obj.dtype}"
    else:
        assert obj is None or type(obj) in (str, int, float, bool), f"{path}: {type(obj).__name__}"


def _to_json(obj):
    if isinstance(obj, dict):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def test_state_is_plain_data_and_survives_json_with_children_outstanding():
    # mid-run: seeds, uniform draws, crossover children asked and not yet told (the 1/5 rule's
    # pending parents' values), σ already adapted; the state as JSON (arrays as lists, int keys as
    # strings, -inf as JSON's -Infinity) continues exactly as the live driver
    def build():
        return make_driver(
            "m2n2",
            SeededBox(3),
            seed=3,
            archive_size=4,
            initial="seeded",
            initial_random=1,
            mutation_std=0.05,
            mutation_adapt="one_fifth",
        )

    def objective(x):
        per = np.concatenate([x, 1 - x])
        return np.array([per.mean() + x[0]]), per

    ref, d = build(), build()
    waiting = {}
    for key, drv in (("ref", ref), ("d", d)):
        asked = drv.ask(9)
        drv.tell(asked[:6], evaluate(objective, asked[:6]))
        more = drv.ask(3)
        drv.tell(more[:1], evaluate(objective, more[:1]))
        waiting[key] = asked[6:] + more[1:]
    state = d.state_dict()
    _plain(state)
    assert len(state["children"]) >= 2 and d.adapt_counts[1] >= 1 and d.mutation_std != 0.05
    fresh = build()
    fresh.load_state_dict(json.loads(json.dumps(_to_json(state))))
    for drv, cands in ((ref, waiting["ref"]), (fresh, waiting["d"])):
        drv.tell(cands, evaluate(objective, cands))
    assert fresh.mutation_std == ref.mutation_std and fresh.adapt_counts == ref.adapt_counts
    for _ in range(6):
        a, b = ref.ask(3), fresh.ask(3)
        assert [x.id for x in a] == [y.id for y in b]
        assert all(np.array_equal(x.genome, y.genome) and x.meta == y.meta for x, y in zip(a, b))
        ref.tell(a, evaluate(objective, a))
        fresh.tell(b, evaluate(objective, b))
