"""The Ray actor pool on the session's local Ray: concurrency, dead actors replaced with their
candidate re-queued (every candidate evaluated exactly once), failures, setup errors."""

from __future__ import annotations

import collections
import sys
import time

import numpy as np
import pytest

from evomerge.drivers.base import Candidate
from evomerge.errors import ModelError
from evomerge.evaluator import EvalRequest, FunctionWorkerSpec
from evomerge.evaluator.synthetic import uneven_durations
from evomerge.objectives import Objectives
from evomerge.scheduler import Budget, Evaluated, Scheduler

pytestmark = pytest.mark.ray

SPHERE = FunctionWorkerSpec("evomerge.evaluator.synthetic:sphere")
SPEC = Objectives([("score", "maximize", 1.0)])


class SteadyDriver:
    generational = False
    n_objectives = 1

    def __init__(self, dim=2, seed=0):
        self.rng = np.random.default_rng(seed)
        self.dim, self.next_id = dim, 0
        self.told = []

    def ask(self, n):
        out = [Candidate(self.next_id + i, self.rng.random(self.dim)) for i in range(n)]
        self.next_id += n
        return out

    def tell(self, candidates, outcomes):
        self.told += [(c.id, o) for c, o in zip(candidates, outcomes)]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@pytest.fixture(scope="module")
def pool(ray_session):
    from evomerge.evaluator.ray_pool import RayPoolBackend

    backend = RayPoolBackend(SPHERE, num_workers=2, num_cpus=0.5)
    # warm both actors up so timings below do not include process start-up
    for i in range(2):
        backend.submit(EvalRequest(-1 - i, {"genome": [0.0], "sleep": 0.2}))
    while backend.pending():
        backend.wait()
    yield backend
    backend.close()


def drain(backend):
    out = []
    while backend.pending():
        out += backend.wait(timeout=30)
    return out


def test_defaults_on_a_cpu_cluster_and_connect_reuses_ray(ray_session):
    from evomerge.evaluator.ray_connect import connect_ray
    from evomerge.evaluator.ray_pool import RayPoolBackend

    assert connect_ray() is ray_session and ray_session.is_initialized()
    backend = RayPoolBackend(SPHERE, num_cpus=1)
    try:
        assert backend.num_gpus == 0 and backend.num_workers == 2  # 2 CPUs / 1 each, no GPU
    finally:
        backend.close()


def test_requests_run_concurrently_and_each_comes_back_once(pool):
    start = time.monotonic()
    for i in range(8):
        pool.submit(EvalRequest(i, {"genome": [0.1 * i], "sleep": 0.15}))
    results = drain(pool)
    wall = time.monotonic() - start
    assert sorted(r.candidate_id for r in results) == list(range(8))
    assert {r.worker.split("@")[0] for r in results} == {"ray-0.0", "ray-1.0"}
    assert wall < 8 * 0.15 * 0.85  # two at a time, not one after the other
    assert results[0].objectives["score"] == pytest.approx(-((0.1 * results[0].candidate_id - 0.3) ** 2))


def test_failing_candidate_is_a_result_not_a_retry(pool):
    deaths = pool.deaths
    pool.submit(EvalRequest(0, {"genome": [0.1], "raise": "NaN loss"}))
    pool.submit(EvalRequest(1, {"genome": [0.1]}))
    results = {r.candidate_id: r for r in drain(pool)}
    assert results[0].status == "failed" and results[0].error_line == "RuntimeError: NaN loss"
    assert results[0].attempt == 0 and results[1].ok and pool.deaths == deaths


def test_actor_killed_mid_run_is_replaced_and_every_candidate_is_evaluated_exactly_once(ray_session, tmp_path):
    """One actor exits inside a chosen candidate (os._exit), another is killed from outside
    (ray.kill) while busy; the run still evaluates all 16 candidates, each exactly once."""
    from evomerge.evaluator.ray_pool import RayPoolBackend

    backend = RayPoolBackend(SPHERE, num_workers=2, num_cpus=0.5)
    durations = uneven_durations(16, seed=5, low=0.05, high=0.3)
    die_file = tmp_path / "died"

    def to_recipe(c):
        r = {"genome": c.genome.tolist(), "sleep": float(durations[c.id])}
        if c.id == 5:
            r["die_once"] = str(die_file)
        if c.id == 11:
            r["sleep"] = 3.0  # long enough to be killed from outside while it runs
        return r

    logged = collections.Counter()
    killed = []

    def on_evaluated(e):
        logged[e.candidate.id] += 1
        running = backend.running()
        if not killed and 11 in running:
            ray_session.kill(running[11], no_restart=True)
            killed.append(11)

    driver = SteadyDriver()
    try:
        sched = Scheduler(driver, backend, SPEC, budget=Budget(max_evals=16), to_recipe=to_recipe)
        for event in sched.events():
            if isinstance(event, Evaluated):
                on_evaluated(event)
        summary = sched.summary()
    finally:
        backend.close()
    assert killed == [11] and die_file.exists()
    assert sorted(logged) == list(range(16)) and set(logged.values()) == {1}  # none missing, no duplicates
    assert sorted(cid for cid, _ in driver.told) == list(range(16)) and summary.told == 16
    assert backend.deaths == 2 and summary.failed == 0
    assert not any(o.failed for _, o in driver.told)


def test_candidate_that_always_kills_its_worker_is_failed_after_max_attempts(ray_session):
    from evomerge.evaluator.ray_pool import RayPoolBackend

    backend = RayPoolBackend(SPHERE, num_workers=1, num_cpus=0.5, max_attempts=2)
    try:
        backend.submit(EvalRequest(0, {"genome": [0.1], "die": True}))
        backend.submit(EvalRequest(1, {"genome": [0.3]}))
        results = {r.candidate_id: r for r in drain(backend)}
    finally:
        backend.close()
    assert results[0].status == "failed"
    assert results[0].error_line.startswith("worker died 2 times while evaluating candidate 0: ")
    assert results[1].ok and results[1].worker.startswith("ray-0.2@")  # third incarnation of slot 0
    assert backend.deaths == 2


def test_an_evaluation_stuck_past_its_time_limit_gets_its_actor_replaced(ray_session):
    from evomerge.evaluator.ray_pool import RayPoolBackend

    backend = RayPoolBackend(SPHERE, num_workers=1, num_cpus=0.5, timeout=0.3, hard_timeout_grace=0.5)
    try:
        backend.submit(EvalRequest(0, {"genome": [0.1], "sleep": 5}))  # interruptible: the worker's own limit
        backend.submit(EvalRequest(1, {"genome": [0.1], "stuck": 30}))  # ignores SIGALRM: the pool's limit
        backend.submit(EvalRequest(2, {"genome": [0.3]}))
        results = {r.candidate_id: r for r in drain(backend)}
    finally:
        backend.close()
    assert results[0].error_line == "EvaluationTimeout: evaluation exceeded its time limit of 0.3 s"
    assert results[0].worker.startswith("ray-0.0@")
    assert results[1].error_line == "EvaluationTimeout: evaluation exceeded 0.3 s and did not stop; worker replaced"
    assert results[2].ok and results[2].worker.startswith("ray-0.1@")
    assert 0.8 <= results[1].eval_seconds < 10


def _broken_worker(path):
    raise ModelError(f"{path}: no such model directory")


def test_a_worker_that_cannot_be_built_raises_the_users_error(ray_session):
    from ray import cloudpickle

    from evomerge.evaluator.ray_pool import RayPoolBackend

    # this test module is not importable in Ray's workers: ship its functions by value (Ray
    # pickles with its own copy of cloudpickle)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        backend = RayPoolBackend(
            FunctionWorkerSpec(_broken_worker, {"path": "/nope"}, factory=True), num_workers=1, num_cpus=0.5
        )
        backend.submit(EvalRequest(0, {}))
        with pytest.raises(ModelError, match=r"^/nope: no such model directory$"):
            backend.wait(timeout=60)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_an_actor_that_cannot_start_is_one_clear_error_not_a_retry_loop(ray_session):
    from evomerge.errors import EvomergeError
    from evomerge.evaluator.ray_pool import RayPoolBackend

    # pickled by reference: the workers cannot import this test module
    backend = RayPoolBackend(
        FunctionWorkerSpec(_broken_worker, {"path": "/nope"}, factory=True), num_workers=1, num_cpus=0.5
    )
    backend.submit(EvalRequest(0, {}))
    with pytest.raises(
        EvomergeError,
        match=r"^Ray worker ray-0 could not start: ModuleNotFoundError: No module named 'test_ray_pool' \(evomerge",
    ):
        backend.wait(timeout=60)
    assert backend.deaths == 0


def test_steady_state_scheduler_keeps_actors_busy(pool):
    durations = uneven_durations(24, seed=9, low=0.05, high=0.4)
    summary = Scheduler(
        SteadyDriver(seed=1),
        pool,
        SPEC,
        budget=Budget(max_evals=24),
        to_recipe=lambda c: {"genome": c.genome.tolist(), "sleep": float(durations[c.id])},
    ).run()
    assert summary.evaluated == 24
    # the only idle time allowed: the tail when the budget ran out (≤ one longest evaluation per
    # actor) and round trips; the machine is shared, so leave room for scheduling noise
    assert summary.utilization > 0.75, summary
