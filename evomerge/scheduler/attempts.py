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

from collections import deque
from collections.abc import Iterable, Mapping

from evomerge.evaluator.base import EvalRequest, EvalResult
from evomerge.scheduler.events import InFlight, Starting


def given_up(request: EvalRequest, attempts: int, max_attempts: int) -> EvalResult:
    """The failed result of a candidate the process died on ``attempts`` (>= ``max_attempts``) times."""
    return EvalResult.failure(
        EvalRequest(request.candidate_id, request.recipe, request.split, request.must_beat, attempts),
        f"CandidateKilledProcess: the process died {attempts} times while evaluating candidate "
        f"{request.candidate_id} (out of memory, a crash in native code, os._exit?); recorded as failed "
        f"without evaluating it again (run.max_attempts={max_attempts})",
        worker="scheduler",
    )


class AttemptGate:
    """The scheduler's bookkeeping of deaths: ``deaths`` (candidate id → times the process died
    evaluating it, from the resume), the given-up results waiting to be recorded (``waiting``), and
    the candidate of the last :class:`Starting` event."""

    def __init__(self, deaths: Mapping[int, int], max_attempts: int | None):
        self.max_attempts = max_attempts
        self.deaths = {int(k): int(v) for k, v in dict(deaths).items()}
        self.waiting: deque[EvalResult] = deque()
        self._announced: int | None = None

    def adopt(self, flights: Iterable[InFlight]) -> None:
        """Raise each flight's ``attempts`` to the deaths noted for its candidate."""
        for f in flights:
            f.attempts = max(f.attempts, self.deaths.get(int(f.candidate.id), 0))

    def admit(self, flight: InFlight, request: EvalRequest) -> bool:
        """True: submit ``request``; False: its candidate reached ``max_attempts`` and its failed
        result is queued in ``waiting`` instead."""
        self.adopt([flight])
        if self.max_attempts is not None and flight.attempts >= self.max_attempts:
            self.waiting.append(given_up(request, flight.attempts, self.max_attempts))
            return False
        return True

    def announce(self, backend) -> list[Starting]:
        """:class:`Starting` for the request an in-process backend's next ``wait`` evaluates (once
        per candidate; none for a backend without ``next_local``)."""
        next_local = getattr(backend, "next_local", None)
        request = next_local() if next_local is not None else None
        if request is None or request.candidate_id == self._announced:
            return []
        self._announced = request.candidate_id
        return [Starting(request.candidate_id, self.deaths.get(request.candidate_id, 0))]


__all__ = ["AttemptGate", "given_up"]
