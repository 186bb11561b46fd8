"""Atomic, checksummed checkpoints of a run's search state.

A checkpoint is one pickle of a dict (driver ``state_dict()``, Pareto archive, RNG states, the
number of evaluations told, …) framed as::

    MAGIC (8 bytes) | sha256(payload) (32 bytes) | payload

and written the only way that survives a kill at any instant (:func:`evomerge.io.atomic_write_bytes`):
temporary file in the same directory, ``fsync``, ``os.replace`` onto ``ckpt-<n>.pkl``, ``fsync`` of the
directory. Only the
newest ``keep`` (default 2) are kept, so that a latest checkpoint that is nevertheless unreadable
(a disk that lied about fsync, a user's editor) leaves the previous one to fall back on.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import sys
from pathlib import Path
from typing import Any

from evomerge.io import atomic_write_bytes
from evomerge.runs.crash import maybe_crash

MAGIC = b"EVMCKPT1"
_NAME = re.compile(r"^ckpt-(\d+)\.pkl$")


class CorruptCheckpoint(Exception):
    pass


def encode(state: dict[str, Any]) -> bytes:
    payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    return MAGIC + hashlib.sha256(payload).digest() + payload


def decode(data: bytes) -> dict[str, Any]:
    if len(data) < len(MAGIC) + 32 or not data.startswith(MAGIC):
        raise CorruptCheckpoint("not an evomerge checkpoint (bad header)")
    digest, payload = data[len(MAGIC) : len(MAGIC) + 32], data[len(MAGIC) + 32 :]
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptCheckpoint("checksum mismatch")
    try:
        return pickle.loads(payload)
    except Exception as exc:  # a checksum-valid but unloadable pickle: a class moved or changed
        raise CorruptCheckpoint(f"cannot unpickle: {exc}") from None


class CheckpointDir:
    """``RUN_DIR/checkpoints``: ``save(n, state)`` and ``load_latest()`` with fallback."""

    def __init__(self, path: str | Path, keep: int = 2):
        self.path = Path(path)
        self.keep = max(1, int(keep))

    def list(self) -> list[tuple[int, Path]]:
        """(n, path) of every checkpoint file, newest first."""
        if not self.path.is_dir():
            return []
        found = []
        for p in self.path.iterdir():
            m = _NAME.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found, reverse=True)

    def save(self, n: int, state: dict[str, Any]) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / f"ckpt-{n:08d}.pkl"
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

    def load_latest(self, log=None) -> tuple[int, dict[str, Any]] | None:
        """The newest readable checkpoint as (n, state), or None when there is none.

        Each unreadable one is reported on stderr (one line) and skipped for the previous one.
        """
        log = log or (lambda msg: print(msg, file=sys.stderr))
        candidates = self.list()
        for i, (n, path) in enumerate(candidates):
            try:
                state = decode(path.read_bytes())
            except (OSError, CorruptCheckpoint) as exc:
                nxt = candidates[i + 1][1].name if i + 1 < len(candidates) else "the start of the log"
                log(f"warning: checkpoint {path} is corrupted ({exc}); falling back to {nxt}")
                continue
            return n, state
        return None
