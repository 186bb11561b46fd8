"""Atomic, checksummed checkpoints of a run's search state — data only, never a pickle.

A checkpoint is one state dict with named sections (the driver's ``state_dict()``, the RNG states,
the number of evaluations told, the in-flight candidates, …; see :mod:`evomerge.runs.session`)
written with :func:`evomerge.state.pack` — JSON plus raw numeric arrays, read back without running
any code — and framed as::

    MAGIC (8 bytes) | sha256(payload) (32 bytes) | payload

It is written the only way that survives a kill at any instant (:func:`evomerge.io.atomic_write_bytes`):
temporary file in the same directory, ``fsync``, ``os.replace`` onto ``ckpt-<n>.ckpt``, ``fsync`` of
the directory. Only the newest ``keep`` (default 2) are kept, so that a latest checkpoint that is
nevertheless unreadable (a disk that lied about fsync, a user's editor) leaves the previous one to
fall back on. Unreadable means: a bad header or checksum, a payload that is not a state, or — found
when the run restores it (:meth:`CheckpointDir.load_latest` with ``restore``) — a state whose
structure is wrong (a missing key, a wrong type or shape).

evomerge v1 wrote pickles (``ckpt-<n>.pkl``). They are never read, since unpickling a file can run
code and a pickle cannot be read any other way; :meth:`CheckpointDir.refuse_legacy` says what to do.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from evomerge.errors import RunDirError
from evomerge.io import atomic_write_bytes
from evomerge.runs.crash import maybe_crash
from evomerge.state import StateError, pack, unpack

MAGIC = b"EVMCKPT2"
LEGACY_MAGIC = b"EVMCKPT1"
SUFFIX = ".ckpt"
_NAME = re.compile(r"^ckpt-(\d+)\.ckpt$")
_LEGACY = re.compile(r"^ckpt-(\d+)\.pkl$")

#: What restoring a checksum-valid checkpoint may raise when its structure is wrong: the state
#: readers' StateError, and the plain errors third-party constructors raise on bad values.
RESTORE_ERRORS = (StateError, KeyError, TypeError, ValueError, IndexError, AssertionError)

R = TypeVar("R")


class CorruptCheckpoint(Exception):
    pass


def encode(state: dict[str, Any]) -> bytes:
    payload = pack(state)
    return MAGIC + hashlib.sha256(payload).digest() + payload


def decode(data: bytes) -> dict[str, Any]:
    if data.startswith(LEGACY_MAGIC):
        raise CorruptCheckpoint("a pickle written by evomerge v1, never loaded")
    if len(data) < len(MAGIC) + 32 or not data.startswith(MAGIC):
        raise CorruptCheckpoint("not an evomerge checkpoint (bad header)")
    digest, payload = data[len(MAGIC) : len(MAGIC) + 32], data[len(MAGIC) + 32 :]
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptCheckpoint("checksum mismatch")
    try:
        state = unpack(payload)
    except StateError as exc:
        raise CorruptCheckpoint(f"malformed ({exc})") from None
    if not isinstance(state, dict):
        raise CorruptCheckpoint(f"malformed (a {type(state).__name__}, not a mapping of sections)")
    return state


class CheckpointDir:
    """``RUN_DIR/checkpoints``: ``save(n, state)`` and ``load_latest()`` with fallback."""

    def __init__(self, path: str | Path, keep: int = 2):
        self.path = Path(path)
        self.keep = max(1, int(keep))

    def _matching(self, pattern: re.Pattern) -> list[tuple[int, Path]]:
        if not self.path.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.path.iterdir() if (m := pattern.match(p.name))]
        return sorted(found, reverse=True)

    def list(self) -> list[tuple[int, Path]]:
        """(n, path) of every checkpoint file, newest first."""
        return self._matching(_NAME)

    def legacy(self) -> list[tuple[int, Path]]:
        """(n, path) of every v1 pickle checkpoint, newest first (never read)."""
        return self._matching(_LEGACY)

    def save(self, n: int, state: dict[str, Any]) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / f"ckpt-{n:08d}{SUFFIX}"
        atomic_write_bytes(target, encode(state), midway=lambda: maybe_crash("checkpoint-write"))
        maybe_crash("checkpoint-rename")
        for _, old in self.list()[self.keep :]:
            old.unlink(missing_ok=True)
        self.remove_temporaries()
        return target

    def remove_temporaries(self) -> None:
        """Temporary files left by a writer that was killed mid-write: never valid, always safe to drop."""
        if self.path.is_dir():
            for p in self.path.iterdir():
                if p.name.startswith(".") and ".tmp-" in p.name:
                    p.unlink(missing_ok=True)

    def refuse_legacy(self, log_name: str = "evaluations.jsonl") -> None:
        """A v1 pickle checkpoint newer than every data checkpoint: one line saying what to do."""
        legacy, current = self.legacy(), self.list()
        if legacy and (not current or legacy[0][0] > current[0][0]):
            raise RunDirError(
                f"{legacy[0][1]}: a pickle checkpoint written by evomerge v1, which is never loaded (unpickling a "
                f"file can run code); move {self.path}/ckpt-*.pkl out of the run directory and resume again: the "
                f"search is then rebuilt by replaying {log_name} (nothing is evaluated twice)"
            )

    def load_latest(
        self, restore: Callable[[dict[str, Any]], R] | None = None, log=None
    ) -> tuple[int, R | dict[str, Any]] | None:
        """The newest readable checkpoint as ``(n, restore(state))`` (``restore`` defaults to
        returning the state), or None when there is none.

        Each unreadable one — bad bytes, or a state ``restore`` rejects with one of
        :data:`RESTORE_ERRORS` — is reported on stderr (one line) and skipped for the previous one.
        """
        for n, _, restored in self.readable(restore, log):
            return n, restored
        return None

    def readable(self, restore: Callable[[dict[str, Any]], R] | None = None, log=None):
        """Every readable checkpoint, newest first, as ``(n, path, restore(state))``: each
        unreadable one is reported (one line) and skipped, as in :meth:`load_latest`. A caller
        that finds a yielded state malformed later (a staged run, whose drivers are built per
        stage) reports it with :meth:`report_malformed` and takes the next one."""
        log = log or (lambda msg: print(msg, file=sys.stderr))
        for n, path in self.list():
            try:
                state = decode(path.read_bytes())
                restored = restore(state) if restore is not None else state
            except (OSError, CorruptCheckpoint, *RESTORE_ERRORS) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
                if isinstance(exc, RESTORE_ERRORS):
                    why = f"malformed: {why}"
                log(f"warning: checkpoint {path} is corrupted ({why}); falling back to {self._next(path)}")
                continue
            yield n, path, restored

    def report_malformed(self, path: Path, exc: BaseException, log=None) -> None:
        """The warning for a checkpoint found malformed after :meth:`readable` yielded it."""
        log = log or (lambda msg: print(msg, file=sys.stderr))
        log(f"warning: checkpoint {path} is corrupted (malformed: {exc}); falling back to {self._next(path)}")

    def _next(self, path: Path) -> str:
        names = [p for _, p in self.list()]
        later = names[names.index(path) + 1 :] if path in names else []
        return later[0].name if later else "the start of the log"


__all__ = ["MAGIC", "RESTORE_ERRORS", "CheckpointDir", "CorruptCheckpoint", "decode", "encode"]
