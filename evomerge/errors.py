"""User-facing errors.

Anything a user can cause (a bad file, key, tensor, value) raises :class:`EvomergeError` with
one line that names the problem: the file, the key or tensor, and expected vs got. The CLI prints
``error: <message>`` and exits with status 2; it never shows a traceback for these. Internal bugs
stay ordinary exceptions so that they do show one.
"""


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
