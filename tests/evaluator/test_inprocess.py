"""The in-process backend and the worker: FIFO, failures as results, time limits, JSON."""

from __future__ import annotations

import json
import math

import pytest

from evomerge.errors import ConfigError
from evomerge.evaluator import (
    EvalRequest,
    EvalResult,
    FunctionWorkerSpec,
    InProcessBackend,
    Worker,
    make_backend,
)

SPHERE = FunctionWorkerSpec("evomerge.evaluator.synthetic:sphere")


def test_fifo_order_and_hand_computed_scores():
    backend = InProcessBackend(SPHERE)
    for i, genome in enumerate([[0.3, 0.3], [0.0, 0.3], [1.0, 0.0]]):
        backend.submit(EvalRequest(i, {"genome": genome}))
    assert backend.pending() == 3
    got = []
    while backend.pending():
        got += backend.wait()
    assert backend.wait() == []  # nothing pending: returns at once
    assert [r.candidate_id for r in got] == [0, 1, 2]
    assert [r.objectives["score"] for r in got] == pytest.approx([0.0, -0.09, -(0.49 + 0.09)])
    # per example j scores 1 - |x_(j mod 2) - 0.3|
    assert got[2].per_example == {"sphere": pytest.approx([0.3, 0.7] * 4)}
    assert all(r.ok and r.worker == "inprocess" and r.attempt == 0 for r in got)
    assert all(r.eval_seconds >= 0 and r.merge_seconds == 0 for r in got)


def test_every_failure_is_a_result_and_the_worker_keeps_going():
    worker = Worker(SPHERE, worker_id="w")
    boom = worker.evaluate(EvalRequest(1, {"genome": [0.1], "raise": "CUDA out of memory. Tried to allocate 2 GiB"}))
    nan = worker.evaluate(EvalRequest(2, {"genome": [0.1], "nan": True}))
    slow = Worker(SPHERE, worker_id="w", timeout=0.1).evaluate(EvalRequest(3, {"genome": [0.1], "sleep": 5}))
    fine = worker.evaluate(EvalRequest(4, {"genome": [0.3]}, attempt=2))
    assert boom.status == "failed" and boom.error_line == "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB"
    assert "Traceback (most recent call last)" in boom.error and boom.objectives == {}
    assert nan.status == "failed" and nan.error_line == "FloatingPointError: objective score=nan is not finite"
    assert (
        slow.status == "failed" and slow.error_line == "EvaluationTimeout: evaluation exceeded its time limit of 0.1 s"
    )
    assert 0.09 < slow.eval_seconds < 2.0
    assert fine.ok and fine.objectives == {"score": 0.0} and fine.attempt == 2


def test_bad_return_types_fail_the_candidate_not_the_worker():
    def three(recipe):
        return {"a": 1.0}, None, "extra"

    def not_a_dict(recipe):
        return 0.5

    r1 = Worker(FunctionWorkerSpec(three)).evaluate(EvalRequest(0, {}))
    r2 = Worker(FunctionWorkerSpec(not_a_dict)).evaluate(EvalRequest(0, {}))
    assert r1.error_line == "TypeError: evaluate function returned a 3-tuple; expected (objectives, per_example)"
    assert r2.error_line == "TypeError: evaluate function returned objectives of type float; expected a dict"


def test_factory_spec_builds_once_and_kwargs_reach_the_function():
    calls = {"built": 0}

    def factory(offset):
        calls["built"] += 1
        return lambda recipe: ({"y": recipe["x"] + offset}, [recipe["x"]])

    backend = InProcessBackend(FunctionWorkerSpec(factory, {"offset": 10.0}, factory=True))
    for i in range(3):
        backend.submit(EvalRequest(i, {"x": float(i)}))
    results = [r for _ in range(3) for r in backend.wait()]
    assert calls["built"] == 1
    assert [r.objectives["y"] for r in results] == [10.0, 11.0, 12.0]
    assert results[1].per_example == {"scores": [1.0]}


def test_cancel_queued_and_close():
    backend = InProcessBackend(SPHERE)
    for i in range(3):
        backend.submit(EvalRequest(i, {"genome": [0.0]}))
    backend.wait()
    assert [r.candidate_id for r in backend.cancel_queued()] == [1, 2]
    assert backend.pending() == 0
    backend.close()
    with pytest.raises(RuntimeError):
        backend.submit(EvalRequest(9, {}))


def test_result_json_round_trip_is_exact():
    r = EvalResult(
        7,
        "ok",
        {"acc": 0.25, "nll": 1.5},
        {"t": [1.0, 0.0]},
        {"tasks": {}},
        None,
        0.5,
        1.25,
        "ray-1.0@h",
        1,
    )
    line = json.dumps(r.to_json())
    back = EvalResult.from_json(json.loads(line))
    assert back == r and back.busy_seconds == 1.75
    assert EvalResult.from_json({**r.to_json(), "written_by_a_newer_version": 1}) == r


@pytest.mark.parametrize(
    "kind, options, message",
    [
        ("slurm", {}, "unknown backend 'slurm' (known: inprocess, ray)"),
        ("inproces", {}, "unknown backend 'inproces' (did you mean 'inprocess'?)"),
        ("inprocess", {"num_gpus": 1}, "unknown key 'evaluator.num_gpus' (known keys: num_workers, timeout)"),
        ("inprocess", {"num_worker": 2}, "unknown key 'evaluator.num_worker' (did you mean 'evaluator.num_workers'?)"),
        (
            "inprocess",
            {"num_workers": 0},
            "key 'evaluator.num_workers': Input should be greater than or equal to 1 (got 0)",
        ),
        ("inprocess", {"timeout": -1}, "key 'evaluator.timeout': Input should be greater than 0 (got -1)"),
        (
            "ray",
            {"max_attempts": 0},
            "key 'evaluator.max_attempts': Input should be greater than or equal to 1 (got 0)",
        ),
        ("ray", {"num_gpu": 1}, "unknown key 'evaluator.num_gpu' (did you mean 'evaluator.num_gpus'?)"),
    ],
)
def test_make_backend_errors_are_one_line(kind, options, message):
    # Ray's options are checked before Ray is imported or started
    with pytest.raises(ConfigError) as exc:
        make_backend(kind, SPHERE, **options)
    assert str(exc.value) == message


def test_make_backend_builds_with_the_options():
    backend = make_backend("inprocess", SPHERE, timeout=3.0, num_workers=2)
    assert isinstance(backend, InProcessBackend)
    assert (backend.num_workers, backend.worker.timeout) == (2, 3.0)


def test_inprocess_slots_stand_in_for_a_pool_deterministically():
    """``num_workers`` slots: the scheduler sees a pool of that size (it keeps that many requests
    outstanding) while evaluation stays one at a time, in submission order."""
    backend = make_backend("inprocess", SPHERE, num_workers=3)
    assert backend.num_workers == 3 and InProcessBackend(SPHERE).num_workers == 1
    for i in range(3):
        backend.submit(EvalRequest(i, {"genome": [0.1 * i]}))
    assert backend.pending() == 3
    assert [r.candidate_id for r in backend.wait()] == [0]  # one result per wait, oldest first
    backend.submit(EvalRequest(3, {"genome": [0.3]}))
    assert [backend.wait()[0].candidate_id for _ in range(3)] == [1, 2, 3] and backend.pending() == 0


def test_synthetic_durations_are_seeded_and_in_range():
    from evomerge.evaluator.synthetic import uneven_durations

    a, b = uneven_durations(500, seed=3), uneven_durations(500, seed=3)
    assert (a == b).all() and a.min() >= 0.05 and a.max() <= 0.5
    slow = (a > 0.275).mean()
    assert 0.12 < slow < 0.28 and not math.isclose(a.mean(), 0.275)
