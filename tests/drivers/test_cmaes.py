"""CMA-ES driver: convergence on a shifted sphere, bounds, batching, failures, IPOP, options."""

import cmaes
import numpy as np
import pytest
from conftest import BoxSpace, drive, evaluate

from evomerge.drivers import make_driver
from evomerge.drivers.base import Outcome
from evomerge.errors import ConfigError

OPT = np.array([0.21, 0.74, 0.38, 0.93, 0.12, 0.55])


def sphere(x):
    return -float(np.sum((x - OPT[: len(x)]) ** 2))


def test_reaches_shifted_sphere_optimum():
    # Tolerance: after 1500 evaluations the mean and the best genome are within 1e-4 of the
    # optimum in every coordinate (the sphere has its optimum inside the box, off-centre).
    d = make_driver("cmaes", BoxSpace(6), seed=0)
    cands = drive(d, sphere, 1500, batch=d.population_size)
    best = max(cands, key=lambda c: sphere(c.genome))
    assert np.max(np.abs(best.genome - OPT)) < 1e-4
    assert np.max(np.abs(d.mean - OPT)) < 1e-4
    assert d.population_size == 4 + int(np.floor(3 * np.log(6)))


def test_stays_in_bounds_when_optimum_is_outside():
    # the sphere's centre lies outside the box: the constrained optimum is on two faces
    centre = np.array([1.3, 0.5, -0.2, 0.7])
    d = make_driver("cmaes", BoxSpace(4), seed=1)
    cands = drive(d, lambda x: -float(np.sum((x - centre) ** 2)), 480, batch=100)
    g = np.array([c.genome for c in cands])
    assert g.min() >= 0.0 and g.max() <= 1.0
    assert np.max(np.abs(d.mean - np.clip(centre, 0, 1))) < 0.02


def test_generation_is_handed_out_in_parts_and_waits():
    d = make_driver("cmaes", BoxSpace(3), seed=0, population_size=6)
    first = d.ask(4)
    rest = d.ask(10)  # only what is left of the generation
    assert len(first) == 4 and len(rest) == 2
    assert d.ask(3) == []  # waiting for outstanding results
    d.tell(rest, evaluate(sphere, rest))
    assert d.ask(3) == [] and d.generation == 0
    d.tell(first[:1], evaluate(sphere, first[:1]))
    d.tell(first[1:], evaluate(sphere, first[1:]))
    assert d.generation == 1
    nxt = d.ask(10)
    assert [c.meta["generation"] for c in nxt] == [1] * 6
    assert [c.id for c in nxt] == list(range(6, 12))


def test_split_asks_equal_one_big_ask():
    a = make_driver("cmaes", BoxSpace(3), seed=4)
    b = make_driver("cmaes", BoxSpace(3), seed=4)
    ga = drive(a, sphere, 60, batch=a.population_size)
    gb = drive(b, sphere, 60, batch=2)
    assert all(np.array_equal(x.genome, y.genome) for x, y in zip(ga, gb))


def test_failed_candidates_rank_last():
    d = make_driver("cmaes", BoxSpace(3), seed=0, population_size=6)
    seen = []
    real_tell = d._optimizer.tell
    d._optimizer.tell = lambda pairs: (seen.append([f for _, f in pairs]), real_tell(pairs))
    cands = d.ask(6)
    outs = evaluate(sphere, cands)
    outs[0] = Outcome(cands[0].id, np.array([0.0]), failed=True, error="boom")
    outs[1] = Outcome(cands[1].id, np.array([np.nan]))
    d.tell(cands, outs)
    f = [sphere(c.genome) for c in cands[2:]]
    # cmaes minimises: it is told -f, and a failure gets -(min f - 1)
    assert seen[0][2:] == [-v for v in f]
    assert seen[0][0] == seen[0][1] == -(min(f) - 1.0)
    cands = d.ask(6)  # every member failing is still a complete generation
    d.tell(cands, [Outcome(c.id, np.zeros(1), failed=True) for c in cands])
    assert d.generation == 2 and seen[1] == [0.0] * 6


def test_is_single_objective():
    # the run tells CMA-ES its scalarisation (evomerge.objectives); the driver weighs nothing itself
    with pytest.raises(ConfigError) as exc:
        make_driver("cmaes", BoxSpace(6), n_objectives=2)
    assert str(exc.value) == (
        "drivers.cmaes: cmaes is single-objective (it is told the run's scalarisation), got n_objectives=2"
    )


def test_separable_auto_threshold():
    assert isinstance(make_driver("cmaes", BoxSpace(5), sep_threshold=4)._optimizer, cmaes.SepCMA)
    assert isinstance(make_driver("cmaes", BoxSpace(5))._optimizer, cmaes.CMA)
    assert isinstance(make_driver("cmaes", BoxSpace(5), separable=True)._optimizer, cmaes.SepCMA)


def test_ipop_doubles_population_on_stagnation():
    d = make_driver("cmaes", BoxSpace(3), seed=0, population_size=4, restarts="ipop", patience=2)
    drive(d, lambda x: 1.0, 12, batch=4)  # flat: no improvement after generation 0
    assert d.restart == 1
    assert len(d.ask(100)) == 8
    d2 = make_driver("cmaes", BoxSpace(3), seed=0, population_size=4)
    drive(d2, lambda x: 1.0, 12, batch=4)
    assert d2.restart == 0 and len(d2.ask(100)) == 4


def test_ipop_restarts_when_cmaes_stops():
    d = make_driver("cmaes", BoxSpace(2), seed=0, restarts="ipop", max_restarts=1)
    pop0 = d.population_size
    # a 2-D sphere converges until cmaes's own stopping test fires, then IPOP restarts once
    drive(d, lambda x: -float(np.sum((x - 0.3) ** 2)), 3000, batch=1000)
    assert d.restart == 1 and len(d.ask(1000)) == 2 * pop0


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"population_size": 2},
            "key 'driver.options.population_size': Input should be greater than or equal to 4 (got 2)",
        ),
        ({"restarts": "bipop"}, "key 'driver.options.restarts': Input should be 'ipop' or 'none' (got 'bipop')"),
        ({"sigma0": 0}, "key 'driver.options.sigma0': Input should be greater than 0 (got 0)"),
        ({"inc_popsize": 0}, "key 'driver.options.inc_popsize': Input should be greater than or equal to 1 (got 0)"),
        ({"separable": "maybe"}, "key 'driver.options.separable': Input should be 'auto' (got 'maybe')"),
        ({"x0": [0.5, 0.5]}, "drivers.cmaes: x0 must have 3 values, got 2"),
        ({"x0": [0.5, 0.5, 2.0]}, "drivers.cmaes: x0 lies outside the space's bounds"),
        ({"weights": [1, 1]}, "unknown key 'driver.options.weights' (known keys: population_size, sigma0, x0,"),
        ({"sigma": 0.3}, "unknown key 'driver.options.sigma' (did you mean 'driver.options.sigma0'?)"),
    ],
)
def test_option_errors_are_one_line(options, message):
    with pytest.raises(ConfigError) as exc:
        make_driver("cmaes", BoxSpace(3), **options)
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)


def test_separable_needs_two_genes():
    with pytest.raises(ConfigError) as exc:
        make_driver("cmaes", BoxSpace(1), separable=True)
    assert str(exc.value) == "drivers.cmaes: separable CMA-ES needs a genome of dimension >= 2, got 1"


def test_unknown_driver_lists_known():
    with pytest.raises(ConfigError, match=r"^unknown driver 'pso' \(known: cmaes, catcma, m2n2, optuna, random\)$"):
        make_driver("pso", BoxSpace(3))


def test_space_arrays_are_not_modified():
    # cmaes updates its mean in place: the driver must hand it a copy of space.x0
    space = BoxSpace(3)
    before = (space.x0.copy(), space.lower.copy(), space.upper.copy())
    drive(make_driver("cmaes", space, seed=0), sphere, 60, batch=10)
    assert all(np.array_equal(a, b) for a, b in zip(before, (space.x0, space.lower, space.upper)))
