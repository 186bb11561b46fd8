"""The failure breaker: a run whose candidates keep failing stops, naming the most common error.

Counted over the new results of one process (what a resume replays from the log does not count),
so a resume after a fix starts afresh. It trips when (``run.failure_breaker``)

* the first ``first`` results all failed (a scorer bug, a broken model, a wrong device), or
* more than ``fraction`` of the last ``window`` results failed (something broke mid-run).

:func:`failure_summary` words the most common error of a list of records the same way for the
breaker and for a run that ended with no successful candidate.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import Any


def most_common_error(errors: Iterable[str | None]) -> tuple[str, int]:
    counts = Counter((e or "unknown error").splitlines()[0] if e else "unknown error" for e in errors)
    error, n = counts.most_common(1)[0]
    return error, n


def failure_summary(records: list[dict[str, Any]]) -> str:
    """``most common error (n of m): …`` over the failed records."""
    failed = [r for r in records if r.get("status") != "ok"]
    if not failed:
        return "no failures"
    error, n = most_common_error(r.get("error") for r in failed)
    return f"most common error ({n} of {len(failed)}): {error}"


class FailureBreaker:
    def __init__(self, first: int, window: int, fraction: float):
        self.first, self.window, self.fraction = int(first), int(window), float(fraction)
        self.seen = 0
        self.any_ok = False
        self.recent: deque[tuple[bool, str | None]] = deque(maxlen=max(1, self.window))
        self.errors: list[str | None] = []

    def observe(self, ok: bool, error: str | None) -> str | None:
        """Note one new result; the reason to stop (one line) when the breaker trips, else None."""
        self.seen += 1
        self.any_ok |= ok
        self.recent.append((ok, error))
        if not ok:
            self.errors.append(error)
        if self.first and self.seen == self.first and not self.any_ok:
            error, n = most_common_error(self.errors)
            return f"the first {self.first} candidates all failed; most common error ({n} of {self.first}): {error}"
        if self.window and len(self.recent) == self.window:
            failed = [e for good, e in self.recent if not good]
            if len(failed) > self.fraction * self.window:
                error, n = most_common_error(failed)
                return (
                    f"{len(failed)} of the last {self.window} candidates failed (more than {self.fraction:.0%}); "
                    f"most common error ({n} of {len(failed)}): {error}"
                )
        return None


__all__ = ["FailureBreaker", "failure_summary", "most_common_error"]
