import math
import random

import pytest

from evomerge.fitness import EarlyStoppingConfig, Fitness, FitnessResult, generators
from evomerge.fitness.early_stop import mean_bounds, per_look_delta, radius, stage_sizes

N = 256


@pytest.fixture(scope="module")
def race_fitness():
    generators.register("test.race", lambda n=N: [{"id": f"x{i}", "prompt": "p"} for i in range(n)])
    fit = Fitness.from_dict(
        {
            "tasks": [
                {
                    "name": "sim",
                    "source": {"type": "generator", "name": "test.race"},
                    "scorer": {"type": "callable", "fn": "fitness_helpers:lookup_scores", "bounded": True},
                    "splits": {"calibration": N, "seed": 0},
                }
            ],
            "early_stopping": {"enabled": True, "min_examples": 16, "growth": 2.0, "confidence": 0.95},
        }
    )
    yield fit
    generators.unregister("test.race")


def candidate(acc: float, seed: int) -> dict:
    """Per-example 0/1 scores with exactly round(acc * N) ones, placed at random."""
    rng = random.Random(seed)
    ones = set(rng.sample(range(N), round(acc * N)))
    return {f"x{i}": float(i in ones) for i in range(N)}


def test_stage_sizes_and_bounds():
    assert stage_sizes(256, 16, 2.0) == [16, 32, 64, 128, 256]
    assert stage_sizes(200, 16, 2.0) == [16, 32, 64, 128, 200]
    assert stage_sizes(10, 16, 2.0) == [10]
    assert stage_sizes(20, 4, 1.1) == [4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 20]
    # Hoeffding-Serfling by hand: n=16 of N=256, delta=0.01 -> rho = 1 - 15/256
    assert radius([0.0] * 16, 256, 0.01) == pytest.approx(math.sqrt((1 - 15 / 256) * math.log(100) / 32))
    # above N/2 the correction is (1 - n/N)(1 + 1/n); the whole population has no uncertainty
    assert radius([1.0] * 200, 256, 0.01) == pytest.approx(math.sqrt((56 / 256) * (201 / 200) * math.log(100) / 400))
    assert radius([0.5] * 256, 256, 0.01, "bernstein") == 0.0
    assert mean_bounds([1.0] * 16, 256, 0.01) == (pytest.approx(1 - radius([1.0] * 16, 256, 0.01)), 1.0)
    assert per_look_delta(0.95, 2, 4) == pytest.approx(0.05 / 8)


@pytest.mark.parametrize("kind", ["hoeffding", "bernstein"])
def test_bounds_cover_the_population_mean(kind):
    # sampling without replacement from fixed populations: the UCB misses the mean w.p. <= delta
    rng = random.Random(0)
    delta, misses, trials = 0.1, 0, 1500
    for t in range(trials):
        pop = [float(rng.random() < 0.3 + 0.4 * (t % 2)) for _ in range(100)]
        mu = sum(pop) / len(pop)
        sample = rng.sample(pop, 20)
        misses += mean_bounds(sample, 100, delta, kind)[1] < mu
    assert misses / trials <= delta


def test_stops_a_clearly_worse_candidate_and_says_why(race_fitness):
    worse = candidate(0.2, seed=1)
    res = race_fitness.evaluate(worse, None, "calibration", must_beat=0.8)
    ts = res.tasks["sim"]
    assert res.stopped_early and ts.stopped_early
    assert ts.n_evaluated == 16 and ts.n_total == N and worse["_calls"] == 16
    assert ts.example_ids == [e.id for e in race_fitness.tasks["sim"].examples("calibration")[:16]]
    assert res.stop_reason.startswith("stopped after sim: 16/256 calibration examples: upper bound ")
    assert res.stop_reason.endswith("(hoeffding, confidence 0.95) < must_beat 0.8000")
    # what the search sees: the honest prefix mean, below must_beat (and below the bound)
    assert res.values[0] == pytest.approx(sum(ts.scores) / 16)
    assert res.scalar <= res.upper_bound < 0.8
    back = FitnessResult.from_json(res.to_json())
    assert back.stopped_early and back.tasks["sim"].stop_reason == res.stop_reason


def test_never_stops_a_better_candidate(race_fitness):
    for seed in range(40):
        acc = 0.8 + 0.005 * (seed % 10)
        cand = candidate(acc, seed=100 + seed)
        res = race_fitness.evaluate(cand, None, "calibration", must_beat=0.8)
        assert not res.stopped_early, (seed, res.stop_reason)
        assert res.tasks["sim"].n_evaluated == N and res.values[0] == pytest.approx(round(acc * N) / N)


def test_no_racing_without_must_beat_or_off_calibration(race_fitness):
    worse = candidate(0.1, seed=3)
    for kwargs, why in [
        ({"must_beat": None}, "no must_beat given"),
        ({"must_beat": 0.9, "early_stopping": False}, "off"),
    ]:
        res = race_fitness.evaluate(dict(worse), None, "calibration", **kwargs)
        assert not res.stopped_early and res.tasks["sim"].n_evaluated == N and res.meta["early_stopping"] == why


def test_racing_saves_evaluations_at_equal_final_choice(race_fitness):
    # a sequential search: the incumbent is the best full-evaluation score so far
    accs = [0.3, 0.5, 0.45, 0.7, 0.2, 0.65, 0.72, 0.1, 0.6, 0.75, 0.4, 0.74]
    cands = [candidate(a, seed=10 + i) for i, a in enumerate(accs)]
    best_plain = max(range(len(cands)), key=lambda i: sum(v for k, v in cands[i].items() if k != "_calls"))
    incumbent, best, calls = None, None, 0
    for i, c in enumerate(cands):
        c = dict(c)
        res = race_fitness.evaluate(c, None, "calibration", must_beat=incumbent)
        calls += c["_calls"]
        if not res.stopped_early and (incumbent is None or res.scalar > incumbent):
            incumbent, best = res.scalar, i
    assert best == best_plain
    assert calls < 0.75 * N * len(cands)


def test_bernstein_option_and_unbounded_objectives_are_not_raced(race_fitness, tmp_path):
    fit = race_fitness
    saved = fit.early_stopping
    try:
        fit.early_stopping = EarlyStoppingConfig(enabled=True, bound="bernstein")
        res = fit.evaluate(candidate(0.05, seed=5), None, "calibration", must_beat=0.9)
        assert res.stopped_early and "(bernstein, confidence 0.95)" in res.stop_reason
    finally:
        fit.early_stopping = saved
    generators.register("test.race_small", lambda: [{"id": f"x{i}", "prompt": "p"} for i in range(40)])
    try:
        loss = Fitness.from_dict(
            {
                "tasks": [
                    {
                        "name": "loss",
                        "source": {"type": "generator", "name": "test.race_small"},
                        "scorer": {
                            "type": "callable",
                            "fn": "fitness_helpers:lookup_scores",
                            "higher_is_better": False,
                        },
                        "splits": {"calibration": 40},
                    }
                ],
                "early_stopping": {"enabled": True},
            }
        )
        res = loss.evaluate({f"x{i}": 5.0 for i in range(40)}, None, "calibration", must_beat=0.0)
    finally:
        generators.unregister("test.race_small")
    assert not res.stopped_early and res.tasks["loss"].n_evaluated == 40
    assert res.meta["early_stopping"] == "objective on task 'loss' is not a mean of [0, 1] scores"
    assert res.objectives[0].direction == "minimize" and res.scalar == -5.0
