"""Candidates that kill the process: failed after ``max_attempts`` deaths, not resubmitted forever.

An in-process backend evaluates in the run's own process, so a candidate that crashes it (the OOM
killer, a segfault, ``os._exit``, the stuck-evaluation watchdog) would come back on every resume —
a deterministic driver re-proposes it — and the run could never pass it. Before such an evaluation
starts the scheduler yields :class:`~evomerge.scheduler.events.Starting` (the run notes it
durably: :mod:`evomerge.runs.attempts`); a resumed run passes how often its process died during
each candidate (:attr:`~evomerge.scheduler.events.ResumePoint.attempts`, kept in every in-flight
candidate of a checkpoint too), and a candidate that reached ``max_attempts`` is recorded as failed
— an ``Evaluated`` event with the result below, told to the driver as usual — without being
evaluated again.
"""

from __future__ import annotations

from evomerge.evaluator.base import EvalRequest, EvalResult


def given_up(request: EvalRequest, attempts: int, max_attempts: int) -> EvalResult:
    """The failed result of a candidate the process died on ``attempts`` (>= ``max_attempts``) times."""
    return EvalResult.failure(
        EvalRequest(request.candidate_id, request.recipe, request.split, request.must_beat, attempts),
        f"CandidateKilledProcess: the process died {attempts} times while evaluating candidate "
        f"{request.candidate_id} (out of memory, a crash in native code, os._exit?); recorded as failed "
        f"without evaluating it again (run.max_attempts={max_attempts})",
        worker="scheduler",
    )


__all__ = ["given_up"]
