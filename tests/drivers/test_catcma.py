"""CatCMA driver: categorical genes as categories, continuous genes as CMA-ES, x0 first, options."""

import json

import numpy as np
import pytest
from conftest import BoxSpace, drive, evaluate

from evomerge.drivers import make_driver
from evomerge.drivers.base import Outcome
from evomerge.errors import ConfigError
from evomerge.space import DataFlowSpace
from evomerge.space.base import category_of, category_value

CATS = [2, 2, 3, 2, 4, 2, 2, 3, 2, 2, 0, 0, 0]  # 10 categorical genes, 3 continuous
WANT = [1, 0, 2, 1, 3, 0, 1, 0, 1, 1]  # the optimum's categories
OPT_X = np.array([0.21, 0.74, 0.38])


def mixed_space(**kw):
    return BoxSpace(len(CATS), categories=CATS, **kw)


def cats_of(genome):
    return [category_of(genome[i], k) for i, k in enumerate(CATS) if k]


def mixed(x):
    wrong = sum(c != w for c, w in zip(cats_of(x), WANT))
    return -float(wrong) - float(np.sum((x[10:] - OPT_X) ** 2))


def test_genomes_hold_category_centres_and_continuous_genes_in_the_box():
    d = make_driver("catcma", mixed_space(), seed=0)
    cands = drive(d, mixed, 5 * d.population_size, batch=d.population_size)
    centres = {k: [category_value(c, k) for c in range(k)] for k in set(CATS) if k}
    for c in cands:
        assert all(c.genome[i] in centres[k] for i, k in enumerate(CATS) if k)
        assert np.all((c.genome[10:] >= 0) & (c.genome[10:] <= 1))


def test_first_candidate_is_x0_and_flip_prob_sets_the_start():
    x0 = np.array([category_value(1, k) if k else 0.5 for k in CATS])
    d = make_driver("catcma", mixed_space(x0=x0), seed=1, population_size=400, flip_prob=0.2)
    cands = d.ask(400)
    np.testing.assert_array_equal(cands[0].genome, x0)  # include_x0 (default): exactly x0
    assert cands[0].meta == {"generation": 0, "index": 0}
    q = d.category_probabilities()
    assert q.shape == (10, 4)
    for row, k in zip(q, [k for k in CATS if k]):  # x0's category 1 gets 1 - flip_prob
        np.testing.assert_allclose(row[:k], [0.2 / (k - 1)] + [0.8] + [0.2 / (k - 1)] * (k - 2))
    # the other 399 draws leave x0's category with probability 0.2 (binomial sd 0.006)
    flips = np.mean([[c != 1 for c in cats_of(cand.genome)] for cand in cands[1:]])
    assert abs(flips - 0.2) < 0.025
    # the continuous genes start at x0 with step sigma0 = 1/6
    xs = np.array([c.genome[10:] for c in cands[1:]])
    assert np.all(np.abs(xs.mean(0) - 0.5) < 0.03) and np.all(np.abs(xs.std(0) - 1 / 6) < 0.02)
    off = make_driver("catcma", mixed_space(x0=x0), seed=1, include_x0=False)
    assert not np.array_equal(off.ask(1)[0].genome, x0)


def test_default_flip_prob_is_one_over_the_categorical_genes():
    assert make_driver("catcma", mixed_space(), seed=0).flip_prob == pytest.approx(0.1)
    assert make_driver("catcma", BoxSpace(3), seed=0).flip_prob == 0.0  # no categorical gene


def test_solves_a_mixed_problem():
    # 10 categorical genes (2-4 categories) + 3 continuous: all categories right and the
    # continuous genes within 1e-2 of the optimum after 1500 evaluations
    d = make_driver("catcma", mixed_space(), seed=0)
    cands = drive(d, mixed, 1500, batch=d.population_size)
    best = max(cands, key=lambda c: mixed(c.genome))
    assert cats_of(best.genome) == WANT
    assert np.max(np.abs(best.genome[10:] - OPT_X)) < 1e-2


def test_categorical_only_space_and_dataflow_path():
    # a data-flow space without scale genes is all categorical: find the path A.0 B.1 B.2 A.3
    s = DataFlowSpace({"A": 4, "B": 4}, repeats=1, encoding="choice", scale_mode="none")
    want = [("A", 0), ("B", 1), ("B", 2), ("A", 3)]

    def f(x):
        seq = s.to_recipe(x).layer_sequence()
        return -float(sum(a != b for a, b in zip(seq, want)) + abs(len(seq) - len(want)))

    d = make_driver("catcma", s, seed=0)
    cands = drive(d, f, 20 * d.population_size, batch=d.population_size)
    assert s.to_recipe(cands[0].genome).layer_sequence() == [("A", i) for i in range(4)]  # model A first
    assert max(f(c.genome) for c in cands) == 0.0


def test_failed_candidates_rank_last():
    d = make_driver("catcma", mixed_space(), seed=0, population_size=6)
    seen = []
    real_tell = d._optimizer.tell
    d._optimizer.tell = lambda pairs: (seen.append([f for _, f in pairs]), real_tell(pairs))
    cands = d.ask(6)
    outs = evaluate(mixed, cands)
    outs[0] = Outcome(cands[0].id, np.array([0.0]), failed=True, error="boom")
    outs[1] = Outcome(cands[1].id, np.array([np.inf]))
    d.tell(cands, outs)
    f = [mixed(c.genome) for c in cands[2:]]
    assert sorted(seen[0]) == sorted([-(min(f) - 1.0)] * 2 + [-v for v in f])
    assert d.generation == 1


def test_tell_outside_the_generation_is_refused():
    d = make_driver("catcma", mixed_space(), seed=0, population_size=4)
    cands = d.ask(4)
    d.tell(cands, evaluate(mixed, cands))
    with pytest.raises(ValueError, match="not in the current CatCMA generation"):
        d.tell(cands[:1], evaluate(mixed, cands[:1]))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"flip_prob": 1.0}, "key 'driver.options.flip_prob': Input should be less than 1 (got 1.0)"),
        ({"population_size": 3}, "key 'driver.options.population_size': Input should be greater than or equal to 4"),
        ({"x0": [0.5]}, "drivers.catcma: x0 must have 13 values, got 1"),
        ({"x0": [2.0] * 13}, "drivers.catcma: x0 lies outside the space's bounds"),
        ({"sigma": 0.1}, "unknown key 'driver.options.sigma' (did you mean 'driver.options.sigma0'?)"),
    ],
)
def test_option_errors_are_one_line(options, message):
    with pytest.raises(ConfigError) as exc:
        make_driver("catcma", mixed_space(), **options)
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)


def test_space_errors():
    with pytest.raises(ConfigError, match=r"^drivers.catcma: needs a finite box"):
        make_driver("catcma", BoxSpace(3, lower=-np.inf, upper=np.inf, x0=np.zeros(3)))
    with pytest.raises(ConfigError, match=r"^drivers.catcma: the space declares a gene with fewer than 2 categories$"):
        make_driver("catcma", BoxSpace(3, categories=[2, 1, 0]))
    with pytest.raises(ConfigError, match=r"^drivers.catcma: categorical genes must live in \[0, 1\]"):
        make_driver("catcma", BoxSpace(3, lower=-1.0, upper=1.0, categories=[2, 0, 0]))
    with pytest.raises(ConfigError, match=r"^drivers.catcma: catcma is single-objective"):
        make_driver("catcma", mixed_space(), n_objectives=2)


def _to_json(tree):
    """``tree`` as JSON text, arrays as {"nd": dtype, "shape", "data"}; TypeError for anything else."""

    def enc(o):
        if isinstance(o, np.ndarray):
            return {"nd": o.dtype.str, "shape": list(o.shape), "data": o.ravel().tolist()}
        raise TypeError(f"not plain data: {type(o).__name__}")

    return json.dumps(tree, default=enc)


def _from_json(text):
    def dec(d):
        return np.array(d["data"], dtype=d["nd"]).reshape(d["shape"]) if set(d) == {"nd", "shape", "data"} else d

    return json.loads(text, object_hook=dec)


def _leaves(tree):
    if isinstance(tree, dict):
        assert all(isinstance(k, (str, int)) for k in tree)
        for v in tree.values():
            yield from _leaves(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _leaves(v)
    else:
        yield tree


@pytest.mark.parametrize("space", ["mixed", "dataflow"])
def test_state_is_plain_data_and_a_json_round_trip_resumes_exactly(space):
    # a generation half told, after several full ones: through JSON + arrays (no pickle), a fresh
    # driver continues with exactly the candidates of the uninterrupted one
    if space == "mixed":
        build = lambda: make_driver("catcma", mixed_space(), seed=5, population_size=6)  # noqa: E731
        f = mixed
    else:
        s = DataFlowSpace({"A": 3, "B": 3}, repeats=2, encoding="indicator", scale_mode="per_layer")
        build = lambda: make_driver("catcma", s, seed=5)  # noqa: E731
        f = lambda x: -float(np.sum((x - 0.4) ** 2))  # noqa: E731
    ref = build()
    ref_cands = drive(ref, f, 40, batch=4)
    d = build()
    first = drive(d, f, 20, batch=4)
    half = d.ask(2)
    d.tell(half[:1], evaluate(f, half[:1]))
    state = d.state_dict()
    for leaf in _leaves(state):
        assert leaf is None or isinstance(leaf, (str, int, float, bool, np.ndarray)), type(leaf)
        assert not isinstance(leaf, (np.generic, bytes))
    text = _to_json(state)
    rest_live = [half[1]] + drive_rest(d, f, half[1:], 40 - 22)
    resumed = build()
    resumed.load_state_dict(_from_json(text))
    rest = [half[1]] + drive_rest(resumed, f, half[1:], 40 - 22)
    want = ref_cands[22:]
    assert [c.id for c in first + half] == [c.id for c in ref_cands[:22]]
    for got in (rest, rest_live):
        assert [c.id for c in got[1:]] == [c.id for c in want]
        assert all(np.array_equal(a.genome, b.genome) for a, b in zip(got[1:], want))
    np.testing.assert_array_equal(resumed.category_probabilities(), ref.category_probabilities())


def drive_rest(driver, f, outstanding, n_new):
    """Tell ``outstanding``, then ask/tell ``n_new`` more in batches of 4; the new candidates."""
    driver.tell(outstanding, evaluate(f, outstanding))
    return drive(driver, f, n_new, batch=4)


def test_a_checkpoint_of_another_optimizer_is_refused():
    d = make_driver("catcma", mixed_space(), seed=0, population_size=6)
    state = d.state_dict()
    state["optimizer"]["attrs"].pop("_q")
    with pytest.raises(ConfigError, match=r"^drivers.catcma: the checkpoint's optimizer differs from this one in _q$"):
        make_driver("catcma", mixed_space(), seed=0, population_size=6).load_state_dict(state)
    state = make_driver("catcma", mixed_space(), seed=0, population_size=6).state_dict()
    state["optimizer"]["attrs"]["_q"] = np.zeros((3, 3))
    with pytest.raises(
        ConfigError, match=r"checkpoint optimizer _q is float64\[3, 3\], this optimizer's is float64\[10, 4\]"
    ):
        make_driver("catcma", mixed_space(), seed=0, population_size=6).load_state_dict(state)
