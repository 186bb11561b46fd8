"""Pareto tools against hand-computed fronts, volumes and crowding distances."""

import itertools
import pickle

import numpy as np
import pytest

from evomerge.pareto import (
    ParetoArchive,
    crowding_distance,
    dominates,
    hypervolume,
    hypervolume_mc,
    non_dominated_sort,
    nondominated,
)


def test_dominates_is_strict_and_maximising():
    assert dominates([2, 2], [1, 2])
    assert not dominates([2, 2], [2, 2])
    assert not dominates([3, 1], [1, 3])
    assert not dominates([1, 2], [2, 2])


def test_nondominated_hand_example():  # (moved from tests/runs/test_store.py)
    v = [[1, 0], [0, 1], [0.5, 0.5], [0.4, 0.4], [1, 0]]
    assert nondominated(v).tolist() == [0, 1, 2, 4]
    assert nondominated(np.zeros((0, 2))).tolist() == []


def test_nondominated_is_the_first_front():
    rng = np.random.default_rng(3)
    for _ in range(20):
        v = rng.integers(0, 4, size=(30, 3)).astype(float)  # many ties and duplicates
        assert nondominated(v).tolist() == sorted(non_dominated_sort(v)[0].tolist())


def test_non_dominated_sort_hand_example():
    v = np.array([[3, 1], [1, 3], [2, 2], [1, 1], [2, 0.5], [0, 0]])
    fronts = [sorted(f.tolist()) for f in non_dominated_sort(v)]
    # (1,1) and (2,0.5) are both dominated by (2,2) only among the rest; (0,0) by everything.
    assert fronts == [[0, 1, 2], [3, 4], [5]]


def test_crowding_distance_hand_example():
    v = np.array([[0.0, 4.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0]])
    d = crowding_distance(v)
    assert np.isinf(d[0]) and np.isinf(d[3])
    # inner points: (3-0)/4 + (4-1)/4 = 1.5 and (4-1)/4 + (3-0)/4 = 1.5
    assert d[1] == pytest.approx(1.5) and d[2] == pytest.approx(1.5)


def test_hypervolume_2d_staircase():
    # union of [0,1]x[0,3], [0,2]x[0,2], [0,3]x[0,1] = 3 + 2 + 1
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [0, 0]) == pytest.approx(6.0)
    # shifted reference, dominated and non-dominating points are ignored
    pts = [[1, 3], [2, 2], [3, 1], [1, 1], [5, -1]]
    assert hypervolume(pts, [0.5, 0.5]) == pytest.approx(0.5 * 2.5 + 1 * 1.5 + 1 * 0.5)
    assert hypervolume([], [0, 0]) == 0.0
    assert hypervolume([[-1, 5]], [0, 0]) == 0.0


def test_hypervolume_3d_inclusion_exclusion():
    assert hypervolume([[1, 2, 3]], [0, 0, 0]) == pytest.approx(6.0)
    # three boxes of volume 2, pairwise overlaps 1, triple overlap 1: 6 - 3 + 1
    assert hypervolume([[2, 1, 1], [1, 2, 1], [1, 1, 2]], [0, 0, 0]) == pytest.approx(4.0)


def test_hypervolume_matches_brute_force_cell_count():
    rng = np.random.default_rng(0)
    for d in (2, 3, 4):
        pts = rng.integers(1, 6, size=(7, d)).astype(float)
        # count unit cells [c, c+1]^d of [0,5]^d whose upper corner is dominated by some point
        cells = 0
        for c in itertools.product(range(5), repeat=d):
            upper = np.array(c) + 1.0
            cells += bool(np.any(np.all(pts >= upper, axis=1)))
        assert hypervolume(pts, np.zeros(d)) == pytest.approx(cells), d
        assert hypervolume(pts[::-1], np.zeros(d)) == pytest.approx(cells)


def test_hypervolume_monte_carlo_is_seeded_and_close():
    pts = [[2, 1, 1], [1, 2, 1], [1, 1, 2]]
    est, se = hypervolume_mc(pts, [0, 0, 0], samples=40_000, seed=3)
    assert hypervolume_mc(pts, [0, 0, 0], samples=40_000, seed=3) == (est, se)
    assert abs(est - 4.0) < 4 * se + 1e-9 and se < 0.05


def test_pareto_archive_add_and_round_trip():
    arch = ParetoArchive(2)
    assert arch.add(0, [1, 1])
    assert arch.add(1, [2, 0.5])
    assert not arch.add(2, [0.5, 0.5])  # dominated by id 0
    assert arch.add(3, [2, 2])  # dominates 0 and 1
    assert arch.ids == [3]
    assert arch.add(4, [2, 2])  # equal: kept
    assert arch.add(5, [3, 0])
    assert not arch.add(6, [np.nan, 9])
    assert arch.ids == [3, 4, 5]
    assert arch.hypervolume([0, 0]) == pytest.approx(2 * 2 + 1 * 0)  # (3,0) adds no area
    restored = ParetoArchive(2)
    restored.load_state_dict(pickle.loads(pickle.dumps(arch.state_dict())))
    assert restored.ids == arch.ids
    assert np.array_equal(restored.values(), arch.values())
    with pytest.raises(ValueError):
        ParetoArchive(3).load_state_dict(arch.state_dict())
