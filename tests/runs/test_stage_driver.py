"""StageDriver: a stage's driver with ids shifted, meta.stage set and an identity start — and
nothing else changed in what the wrapped driver proposes or learns."""

import numpy as np
import pytest

from evomerge.drivers import make_driver
from evomerge.drivers.base import Outcome
from evomerge.errors import RunDirError
from evomerge.runs.stage_driver import StageDriver


class Box:
    def __init__(self, dim):
        self.dim, self.lower, self.upper = dim, np.zeros(dim), np.ones(dim)
        self.x0, self.sigma0 = np.full(dim, 0.5), 1 / 6
        self.names, self.group_boundaries = [f"x{i}" for i in range(dim)], [0, dim]


def _outcomes(cands):
    return [Outcome(c.id, np.array([-float(np.sum((c.genome - 0.3) ** 2))])) for c in cands]


def test_generational_driver_gets_the_identity_as_a_generation_of_its_own():
    space = Box(3)
    bare = make_driver("cmaes", space, seed=5, population_size=4)
    wrapped = StageDriver(
        make_driver("cmaes", space, seed=5, population_size=4), stage="dfs", offset=10, identity=[0.1, 0.2, 0.3]
    )
    first = wrapped.ask(1 << 16)
    assert [(c.id, c.genome.tolist(), c.meta) for c in first] == [
        (10, [0.1, 0.2, 0.3], {"stage": "dfs", "start": "identity"})
    ]
    assert wrapped.ask(4) == [] and wrapped.pending_ids == [10]
    wrapped.tell(first, _outcomes(first))  # never reaches the wrapped driver
    assert wrapped.identity == "told" and wrapped.pending_ids == []
    for _ in range(3):  # then exactly the bare driver's generations, ids shifted past the identity
        mine, theirs = wrapped.ask(1 << 16), bare.ask(1 << 16)
        assert [c.id for c in mine] == [c.id + 11 for c in theirs]
        assert all(np.array_equal(a.genome, b.genome) for a, b in zip(mine, theirs))
        assert all(a.meta == {**b.meta, "stage": "dfs"} for a, b in zip(mine, theirs))
        assert wrapped.pending_ids == [c.id for c in mine]
        wrapped.tell(mine[::-1], _outcomes(mine[::-1]))
        bare.tell(theirs[::-1], _outcomes(theirs[::-1]))
    assert wrapped.state_dict().keys() == bare.state_dict().keys()


def test_steady_state_driver_asks_its_own_beside_the_identity():
    space = Box(2)
    bare = make_driver("random", space, seed=1)
    wrapped = StageDriver(make_driver("random", space, seed=1), stage="ps", offset=0, identity=space.x0)
    got = wrapped.ask(3)
    assert [c.id for c in got] == [0, 1, 2] and got[0].meta["start"] == "identity"
    theirs = bare.ask(2)
    assert all(np.array_equal(a.genome, b.genome) for a, b in zip(got[1:], theirs))
    wrapped.tell(got[2:], _outcomes(got[2:]))  # any order: the identity is told last
    assert wrapped.identity == "asked" and wrapped.pending_ids == [0, 1]
    wrapped.tell(got[:2], _outcomes(got[:2]))
    assert wrapped.identity == "told" and wrapped.pending_ids == []


def test_without_identity_only_ids_and_stage_change():
    space = Box(2)
    bare, wrapped = make_driver("random", space, seed=2), StageDriver(make_driver("random", space, seed=2), stage="ps")
    assert [(c.id, c.meta) for c in wrapped.ask(2)] == [(c.id, {**c.meta, "stage": "ps"}) for c in bare.ask(2)]
    with pytest.raises(RunDirError, match="identity 'told'; stage 'ps' expects none"):
        wrapped.restore_identity("told")
