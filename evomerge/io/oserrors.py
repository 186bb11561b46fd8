"""An operating-system error as one line: ``PATH: <strerror> (while writing …)``.

A read-only filesystem, a full disk, a file where a folder is expected (``ENOTDIR``), a folder
where a file is expected (``EISDIR``), a permission error — none of them is a bug, and none may
reach the user as a traceback. :class:`OSFailure` is both an :class:`~evomerge.errors.EvomergeError`
(the CLI prints ``error: <line>`` and exits 2) and an :class:`OSError` (code that handles a
particular errno still can), and it names the path the *user* knows — the output, not the
temporary sibling it was being written through.

:func:`writing` turns any ``OSError`` raised inside its block into one; :func:`describe` words
an ``OSError`` that was never wrapped (the CLI's last resort).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from evomerge.errors import EvomergeError


def _strerror(exc: OSError) -> str:
    if exc.strerror:
        return exc.strerror
    if exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


class OSFailure(EvomergeError, OSError):
    """``PATH: <strerror> (while DOING)``; ``errno`` / ``strerror`` / ``filename`` as the OSError had them."""

    def __init__(self, exc: OSError, *, path: str | os.PathLike | None, doing: str):
        shown = os.fspath(path) if path is not None else exc.filename
        OSError.__init__(self, exc.errno, _strerror(exc), None if shown is None else os.fspath(shown))
        where = f"{os.fspath(shown)}: " if shown is not None else ""
        self.line = f"{where}{_strerror(exc)} (while {doing})"
        self.args = (self.line,)

    def __str__(self) -> str:
        return self.line


def describe(exc: OSError, *, doing: str) -> str:
    """The one line for an ``OSError`` (its own ``filename``) that no writer wrapped."""
    if isinstance(exc, OSFailure):
        return exc.line
    return OSFailure(exc, path=exc.filename, doing=doing).line


def wrap(exc: OSError, *, path: str | os.PathLike | None, doing: str) -> OSFailure:
    """``exc`` as an :class:`OSFailure` (an existing one is kept: the innermost writer knows best)."""
    if isinstance(exc, OSFailure):
        return exc
    return OSFailure(exc, path=path, doing=doing)


@contextlib.contextmanager
def writing(what: str, path: str | os.PathLike | Path | None = None, *, verb: str = "writing") -> Iterator[None]:
    """``with writing("the merged checkpoint", out):`` — an ``OSError`` in the block becomes
    ``OUT: <strerror> (while writing the merged checkpoint)``."""
    try:
        yield
    except OSError as exc:
        raise wrap(exc, path=path, doing=f"{verb} {what}") from None


__all__ = ["OSFailure", "describe", "wrap", "writing"]
