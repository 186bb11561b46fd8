"""Ctrl-C for a running search: the first press stops asking, the second abandons the work."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


@contextmanager
def two_stage_sigint(first: Callable[[], None], second: Callable[[], None], enabled: bool = True) -> Iterator[None]:
    """While inside: the first SIGINT calls ``first`` (finish running evaluations, then stop),
    the second calls ``second`` (abandon them) and restores the previous handler. Only the main
    thread can install a handler; elsewhere (or with ``enabled=False``) nothing changes."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    presses = [0]

    def on_sigint(signum, frame):
        presses[0] += 1
        if presses[0] == 1:
            log.warning("interrupted: finishing running evaluations, then stopping (Ctrl-C again to abandon them)")
            first()
            return
        log.warning("interrupted again: abandoning running evaluations")
        second()
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
