"""User-facing errors.

Anything a user can cause (a bad file, key, tensor, value) raises :class:`EvomergeError` with
one line that names the problem: the file, the key or tensor, and expected vs got. The CLI prints
``error: <message>`` and exits with status 2; it never shows a traceback for these. Internal bugs
stay ordinary exceptions so that they do show one.

:func:`did_you_mean` words the tail of every "unknown name" message the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EvomergeError(Exception):
    """A problem with the user's input, reported as one line."""

    exit_code = 2

    def __init__(self, message: str):
        if "\n" in message:
            message = " ".join(part.strip() for part in message.splitlines() if part.strip())
        super().__init__(message)


class ConfigError(EvomergeError):
    """A config or recipe file is invalid (unknown key, bad value, missing field)."""


class ModelError(EvomergeError):
    """A model cannot be loaded, or models are incompatible (architecture, tensor names, shapes)."""


class RunDirError(EvomergeError):
    """A run directory is locked, missing, or cannot be resumed."""


def did_you_mean(
    name: str, known: Iterable[str], *, prefix: str = "", label: str = "known", always_list: bool = False
) -> str:
    """The tail of an "unknown name" message: ``" (did you mean 'x'?)"`` when a known name is close
    to ``name`` (difflib ratio ≥ 0.6), else ``" (known: a, b)"``; ``""`` when nothing is known.

    ``prefix`` is put before the suggested name (``'space.layer_groups'`` for a nested key),
    ``label`` replaces ``known`` in the list (``"known keys"``), and ``always_list`` lists the
    known names after the suggestion too: ``" (did you mean 'x'? known: a, b)"``.
    """
    known = [str(k) for k in known]
    hint = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    listing = f"{label}: {', '.join(known)}"
    if hint:
        return f" (did you mean '{prefix}{hint[0]}'?{' ' + listing if always_list else ''})"
    return f" ({listing})" if known else ""
