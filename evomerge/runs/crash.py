"""Deterministic crash injection for the kill-and-resume tests.

``EVOMERGE_CRASH_AT="point:N"`` (several separated by commas) makes the process die with
``os._exit(137)`` — the status of a SIGKILL, and like one it runs no ``finally`` blocks and flushes
nothing — the N-th time (counting from 1) execution reaches ``point`` in this process. Points:

- ``log-append``: half of one evaluations.jsonl line is on disk (a torn line);
- ``after-append``: a whole log line is on disk, the next checkpoint is not;
- ``checkpoint-write``: half of a checkpoint's bytes are in its temporary file;
- ``checkpoint-rename``: the new checkpoint is in place, older ones not yet pruned;
- ``stage-start``: a staged run (:mod:`evomerge.runs.stages`) has recorded the next stage's model A
  in meta.json but not yet written the stage's first checkpoint.

Library code calls :func:`maybe_crash` at those points; it costs one dict lookup when unset.
"""

from __future__ import annotations

import os

_counts: dict[str, int] = {}
_plan: dict[str, int] | None = None


def _load_plan() -> dict[str, int]:
    plan: dict[str, int] = {}
    for item in os.environ.get("EVOMERGE_CRASH_AT", "").split(","):
        item = item.strip()
        if not item:
            continue
        point, _, n = item.partition(":")
        plan[point] = int(n or 1)
    return plan


def maybe_crash(point: str) -> None:
    global _plan
    if _plan is None:
        _plan = _load_plan()
    if not _plan or point not in _plan:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == _plan[point]:
        os._exit(137)
