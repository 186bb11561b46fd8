"""Telling a user's Ctrl-C from a ``KeyboardInterrupt`` that candidate code raised itself.

The scheduler's Ctrl-C handler (:func:`evomerge.scheduler.interrupt.two_stage_sigint`) counts every
SIGINT here (:func:`press`) while it is installed (:func:`watching`). A worker that sees a
``KeyboardInterrupt`` escape a candidate re-raises it when it is real — no handler is installed (the
default handler raised it), or a press arrived during the evaluation — and otherwise records a
failed candidate (a library raised it), as it does for ``SystemExit``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_state = {"presses": 0, "watching": 0}


def press() -> None:
    _state["presses"] += 1


def presses() -> int:
    return _state["presses"]


def watching() -> bool:
    return _state["watching"] > 0


@contextmanager
def watch() -> Iterator[None]:
    """While inside, presses are counted by the caller's handler (see the module docstring)."""
    _state["watching"] += 1
    try:
        yield
    finally:
        _state["watching"] -= 1


def is_user_interrupt(exc: BaseException, presses_before: int) -> bool:
    """``exc`` (escaped a candidate) is the user's Ctrl-C: it must stop the run."""
    return isinstance(exc, KeyboardInterrupt) and (not watching() or presses() > presses_before)


__all__ = ["is_user_interrupt", "press", "presses", "watch", "watching"]
