"""Ray actors that cannot go on are replaced, on a CPU: one whose candidate hit an error that
poisons a CUDA context (a fake ``CUDA error`` message that, like the real one, fails every later
call in that process), and one stuck in code that ignores its time limit; a hung Python
evaluation is failed by the worker's own limit and the actor is kept."""

from __future__ import annotations

import time

import pytest

from evomerge.evaluator import EvalRequest, FunctionWorkerSpec

pytestmark = pytest.mark.ray

SPHERE = FunctionWorkerSpec("evomerge.evaluator.synthetic:sphere")
ILLEGAL = "CUDA error: an illegal memory access was encountered"


def _drain(backend, limit=60.0):
    out, deadline = {}, time.monotonic() + limit
    while backend.pending() and time.monotonic() < deadline:
        for r in backend.wait(timeout=0.5):
            out[r.candidate_id] = r
    assert not backend.pending(), "the pool did not finish"
    return out


def test_an_actor_with_a_poisoned_context_is_replaced(ray_session):
    from evomerge.evaluator.ray_pool import RayPoolBackend

    with RayPoolBackend(SPHERE, num_workers=1, num_cpus=0.5) as backend:
        backend.submit(EvalRequest(0, {"genome": [0.3], "sticky": ILLEGAL}))
        first = _drain(backend)[0]
        assert first.error_line == f"RuntimeError: {ILLEGAL}" and first.worker.startswith("ray-0.0@")
        for i in (1, 2):
            backend.submit(EvalRequest(i, {"genome": [0.3]}))
        later = _drain(backend)
        assert [later[i].ok for i in (1, 2)] == [True, True]
        assert all(later[i].worker.startswith("ray-0.1@") for i in (1, 2))
        assert backend.sticky == 1 and backend.deaths == 0


def test_an_ordinary_error_keeps_the_actor(ray_session):
    from evomerge.evaluator.ray_pool import RayPoolBackend

    with RayPoolBackend(SPHERE, num_workers=1, num_cpus=0.5) as backend:
        backend.submit(EvalRequest(0, {"genome": [0.3], "raise": "boom"}))
        backend.submit(EvalRequest(1, {"genome": [0.3]}))
        got = _drain(backend)
        assert got[0].error_line == "RuntimeError: boom" and got[1].ok
        assert got[1].worker.startswith("ray-0.0@") and backend.sticky == 0


def test_timeouts_on_ray(ray_session):
    from evomerge.evaluator.ray_pool import RayPoolBackend

    with RayPoolBackend(SPHERE, num_workers=1, num_cpus=0.5, timeout=0.5, hard_timeout_grace=1.0) as backend:
        backend.submit(EvalRequest(0, {"genome": [0.3], "sleep": 30}))  # Python: the worker's limit stops it
        backend.submit(EvalRequest(1, {"genome": [0.3], "stuck": 30}))  # ignores SIGALRM: the actor is replaced
        backend.submit(EvalRequest(2, {"genome": [0.3]}))
        started = time.monotonic()
        got = _drain(backend)
        assert time.monotonic() - started < 25
        assert got[0].error_line == "EvaluationTimeout: evaluation exceeded its time limit of 0.5 s"
        assert got[1].error_line == "EvaluationTimeout: evaluation exceeded 0.5 s and did not stop; worker replaced"
        assert got[2].ok and got[2].worker.startswith("ray-0.1@")
