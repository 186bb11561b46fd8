"""Ctrl-C for a running search: the first press stops asking, the second abandons the work, a
third interrupts an evaluation that is still running in this process."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from evomerge.evaluator import sigint

log = logging.getLogger(__name__)


@contextmanager
def two_stage_sigint(first: Callable[[], None], second: Callable[[], None], enabled: bool = True) -> Iterator[None]:
    """While inside: the first SIGINT calls ``first`` (finish running evaluations, then stop),
    the second calls ``second`` (abandon them), any further one raises ``KeyboardInterrupt`` where
    the main thread is (inside an in-process evaluation: the worker re-raises it,
    :mod:`evomerge.evaluator.sigint`). Every press is counted there. Only the main thread can
    install a handler; elsewhere (or with ``enabled=False``) nothing changes. The previous handler
    is restored on leaving."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    presses = [0]

    def on_sigint(signum, frame):
        presses[0] += 1
        sigint.press()
        if presses[0] == 1:
            log.warning("interrupted: finishing running evaluations, then stopping (Ctrl-C again to abandon them)")
            first()
            return
        if presses[0] == 2:
            log.warning("interrupted again: abandoning running evaluations")
            second()
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with sigint.watch():
            yield
    finally:
        signal.signal(signal.SIGINT, previous)
