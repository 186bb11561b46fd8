"""The M2N2 digits world: data split, experts, the counted evaluator, and a short M2N2 run."""

import numpy as np
import pytest

from evomerge.drivers import make_driver
from evomerge.drivers.base import Outcome
from evomerge.space.base import SearchSpace
from evomerge.toyworld.digits import DigitsProblem


@pytest.fixture(scope="module")
def problem():
    return DigitsProblem(seed=0)


def test_split_and_space(problem):
    assert problem.x_train.shape == (1437, 64) and problem.x_test.shape == (360, 64)
    assert problem.x_train.max() <= 1.0
    space = problem.space
    assert isinstance(space, SearchSpace)
    assert space.dim == 64 * 256 + 256 + 256 * 10 + 10 == len(space.names)
    assert space.group_boundaries == [0, 16384, 16640, 19200, 19210]
    g = problem.experts[0]
    assert np.array_equal(space.from_recipe(space.to_recipe(g)), g.astype(np.float32).astype(float))


def test_experts_master_their_own_half(problem):
    a, b = problem.experts
    assert problem.accuracy_on_digits(a, range(5)) >= 0.9
    assert problem.accuracy_on_digits(b, range(5, 10)) >= 0.9
    assert problem.accuracy_on_digits(a, range(5, 10)) < 0.2  # and fail the other half
    assert not np.array_equal(a, b)
    again = DigitsProblem(seed=0)
    assert np.array_equal(again.experts, problem.experts)  # seeded


def test_evaluate_shapes_and_counting(problem):
    before = problem.forward_passes
    correct, train_acc, test_acc = problem.evaluate(problem.experts[0])
    assert correct.shape == (1437,) and correct.dtype == bool
    assert train_acc == pytest.approx(correct.mean())
    assert 0.3 < test_acc < 0.6
    assert problem.forward_passes == before + 1  # test-set passes are not counted


def test_short_m2n2_run_beats_both_experts(problem):
    d = make_driver("m2n2", problem.space, seed=0, initial=problem.experts, split="any", archive_size=20)
    expert_best = max(float(problem.train_correct(g).mean()) for g in problem.experts)
    best = 0.0
    for _ in range(300):
        (c,) = d.ask(1)
        correct = problem.train_correct(c.genome)
        best = max(best, float(correct.mean()))
        d.tell([c], [Outcome(c.id, np.array([correct.mean()]), correct.astype(float))])
    # measured: ≈ 0.70 after 300 passes from experts at ≈ 0.48
    assert best >= expert_best + 0.1, (best, expert_best)
    assert d.best_value == pytest.approx(best)
