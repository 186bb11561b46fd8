"""Random search: the box, batching independence, Latin hypercube strata, incumbent, errors."""

import numpy as np
import pytest
from conftest import BoxSpace, drive, evaluate

from evomerge.drivers import make_driver
from evomerge.drivers.base import Outcome
from evomerge.errors import ConfigError


def test_uniform_in_box_and_batching_does_not_matter():
    space = BoxSpace(3, lower=-1.0, upper=2.0)
    a = make_driver("random", space, seed=5)
    b = make_driver("random", space, seed=5)
    ga = np.array([c.genome for c in a.ask(7)])
    gb = np.array([c.genome for c in b.ask(3) + b.ask(4)])
    assert np.array_equal(ga, gb)
    g = np.array([c.genome for c in a.ask(2000)])
    assert g.min() >= -1.0 and g.max() <= 2.0
    assert np.allclose(g.mean(axis=0), 0.5, atol=0.1)  # mean of U(-1, 2)
    assert not np.array_equal(ga, np.array([c.genome for c in make_driver("random", space, seed=6).ask(7)]))


def test_latin_hypercube_blocks_hit_every_stratum_once():
    d = make_driver("random", BoxSpace(4, lower=0.0, upper=2.0), seed=0, sampling="lhs", lhs_size=8)
    g = np.array([c.genome for c in d.ask(3) + d.ask(13)])  # two whole blocks, asked unevenly
    for block in (g[:8], g[8:]):
        strata = np.floor(block / 2.0 * 8).astype(int)
        for gene in range(4):
            assert sorted(strata[:, gene]) == list(range(8))


def test_incumbent_tracks_the_best_and_skips_failures():
    d = make_driver("random", BoxSpace(2), seed=0)
    c = d.ask(3)
    d.tell(
        c,
        [
            Outcome(c[0].id, np.array([1.0])),
            Outcome(c[1].id, np.array([9.0]), failed=True),
            Outcome(c[2].id, np.array([1.5])),
        ],
    )
    assert d.best_id == c[2].id and d.best_value == pytest.approx(1.5)
    cands = drive(d, lambda x: float(x.sum()), 50)
    assert d.best_value == max([1.5] + [float(x.genome.sum()) for x in cands])


def test_multi_objective_keeps_no_incumbent():
    # several objectives: nothing is scalarised in the driver; the run's Pareto front is the answer
    d = make_driver("random", BoxSpace(2), seed=0, n_objectives=2)
    c = d.ask(2)
    d.tell(c, [Outcome(x.id, np.array([1.0, 2.0])) for x in c])
    assert d.best_id is None and d.pending_ids == []


def test_needs_a_finite_box_and_known_sampling():
    with pytest.raises(ConfigError, match=r"^drivers.random: needs a finite box"):
        make_driver("random", BoxSpace(2, lower=-np.inf))
    with pytest.raises(ConfigError) as exc:
        make_driver("random", BoxSpace(2), sampling="sobol")
    assert str(exc.value) == "key 'driver.options.sampling': Input should be 'uniform' or 'lhs' (got 'sobol')"
    with pytest.raises(ConfigError) as exc:
        make_driver("random", BoxSpace(2), lhs_size=0)
    assert str(exc.value) == "key 'driver.options.lhs_size': Input should be greater than or equal to 1 (got 0)"


def test_tell_checks_ids():
    d = make_driver("random", BoxSpace(2), seed=0)
    c = d.ask(2)
    with pytest.raises(ValueError, match="outcome for id 1 given for candidate 0"):
        d.tell(c[:1], evaluate(lambda x: 0.0, c[1:]))


@pytest.mark.parametrize("name", ["cmaes", "m2n2", "optuna", "random"])
def test_every_driver_implements_the_protocol(name):
    from evomerge.drivers import Driver, driver_names

    assert name in driver_names()
    d = make_driver(name, BoxSpace(3), seed=0)
    assert isinstance(d, Driver)
    assert d.generational is (name == "cmaes")
    cands = d.ask(2)
    assert [c.id for c in cands] == list(range(len(cands))) and cands
