"""The resume replay: results the log holds after the checkpoint, told again instead of evaluated.

A resumed driver re-proposes the candidates it proposed before the crash. Those whose result the
log holds (a :class:`KnownResult` each, **in log order**) are never evaluated again: the scheduler
hands each re-proposed one to :meth:`Replay.take` (which checks that the logged genome is the
re-proposed one) and later tells it from :meth:`Replay.next`, in log order.

Log order alone is not enough for a driver whose proposals depend on what it was told (M2N2): the
asks must be interleaved with those tells as they were. Each logged result carries ``proposed``
(the log's ``asked`` field: candidates the driver had handed out when the result arrived), so
before the known result ``k`` is told the scheduler asks until it has handed out ``k.proposed``
and no further (:meth:`Replay.ask_limit`). The resumed driver then re-proposes exactly the logged
candidates on any backend — also on a Ray pool, whose completion order no rerun reproduces. This
assumes, as all our drivers guarantee, that ``ask(a + b)`` proposes what ``ask(a)`` then ``ask(b)``
would.

Should the log and the driver disagree anyway (a log written without ``asked``, a driver that is
not deterministic), the replay stops gating the asks and tells known results as their candidates
come back (the earliest in the log first); the ones never re-proposed are :attr:`Replay.unreplayed`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from evomerge.drivers.base import Candidate
from evomerge.errors import RunDirError
from evomerge.evaluator.base import EvalResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownResult:
    """One logged result: what the worker returned, the genome it was for and ``proposed`` (the
    record's ``asked``: candidates handed out when it arrived; ``None`` in an old log)."""

    result: EvalResult
    genome: np.ndarray | None = None
    proposed: int | None = None

    @property
    def candidate_id(self) -> int:
        return int(self.result.candidate_id)


class Replay:
    """The known results of a resumed run, told in log order with the asks interleaved as logged."""

    def __init__(self, known: Iterable[KnownResult] = ()):
        self._known: dict[int, KnownResult] = {}
        for k in known:
            if k.candidate_id in self._known:
                raise RunDirError(f"the log holds candidate {k.candidate_id} twice after the checkpoint")
            self._known[k.candidate_id] = k
        self._order: deque[int] = deque(self._known)  # the head is the next to tell
        self._log_pos = {cid: pos for pos, cid in enumerate(self._known)}
        self._taken: dict[int, Candidate] = {}  # re-proposed, awaiting their tell
        self._gating = True

    def __len__(self) -> int:
        """Known results not told yet."""
        return len(self._known)

    @property
    def waiting(self) -> int:
        """Re-proposed known candidates waiting to be told (they count as in flight)."""
        return len(self._taken)

    @property
    def unreplayed(self) -> list[int]:
        """Known results not told (yet: at the end of a run, never re-proposed), in log order."""
        return list(self._known)

    def take(self, candidate: Candidate) -> bool:
        """``True`` when ``candidate``'s result is known: it is kept to be told by :meth:`next`
        instead of being evaluated. A logged genome that differs is a :class:`RunDirError`."""
        cid = int(candidate.id)
        known = self._known.get(cid)
        if known is None:
            return False
        _check_genome(candidate, known)
        self._taken[cid] = candidate
        return True

    def next(self) -> tuple[Candidate, KnownResult] | None:
        """The next re-proposed known result to tell: the next in log order, or — when the log
        and the driver disagree — the earliest one taken. ``None`` when none is waiting."""
        if not self._taken:
            return None
        head = self._head()
        cid = head if head in self._taken else min(self._taken, key=self._log_pos.__getitem__)
        return self._taken.pop(cid), self._known.pop(cid)

    def ask_limit(self, proposed: int, free: int, *, nothing_in_flight: bool) -> int:
        """How many candidates a steady-state scheduler may ask for now, ``free`` being what its
        workers could take: the asks still due before the next known result is told (``0``: tell
        it first); ``free`` once nothing constrains the order. ``proposed``: candidates handed out
        so far; ``nothing_in_flight``: no result is on its way (so none can come back to tell)."""
        head = self._head()
        if not self._gating or head is None:
            return free
        due_at = self._known[head].proposed
        if due_at is None:
            return free
        due = int(due_at) - int(proposed)
        if due > 0:
            return due
        if nothing_in_flight:
            log.warning("resume: the log's order of asks and results cannot be replayed; continuing without it")
            self._gating = False
            return free
        return 0

    def _head(self) -> int | None:
        while self._order and self._order[0] not in self._known:
            self._order.popleft()  # told already
        return self._order[0] if self._order else None


def _check_genome(candidate: Candidate, known: KnownResult) -> None:
    if known.genome is None:
        return
    ours = np.asarray(candidate.genome, dtype=np.float64).reshape(-1)
    logged = np.asarray(known.genome, dtype=np.float64).reshape(-1)
    if ours.shape != logged.shape or not np.allclose(ours, logged, rtol=0.0, atol=1e-12):
        diff = (
            f"shape {logged.shape} vs {ours.shape}"
            if ours.shape != logged.shape
            else f"max |difference| {float(np.max(np.abs(ours - logged))):.3g}"
        )
        raise RunDirError(
            f"candidate {candidate.id}: the resumed driver proposed a different genome than "
            f"evaluations.jsonl holds ({diff}); the checkpoint and the log do not belong together"
        )


__all__ = ["KnownResult", "Replay"]
