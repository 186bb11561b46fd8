"""Reading a run directory as data: the log's records checked field by field, files opened
without following links, and every path a record names kept inside the run directory.

A run directory may come from anywhere (a colleague, a shared disk, a download), so nothing read
from it decides where evomerge reads or writes:

* ``evaluations.jsonl`` and the files beside it are opened with ``O_NOFOLLOW`` and must be
  regular files (a link, a FIFO or a device is refused with one line);
* a record's ``id`` must be a non-negative integer (an id is used in output names:
  ``export --which pareto`` writes ``OUT/candidate-<id>.yaml``), its ``status`` a string, and a
  ``{"path": …}`` in ``genome`` or ``per_example`` a plain relative path inside ``genomes/`` or
  ``per_example/``; :func:`inside` resolves such a path and refuses one that leaves the run
  directory through a link.

A bad record is one line naming the file, the line and the field.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from pathlib import Path, PurePosixPath
from typing import Any

from evomerge.errors import RunDirError
from evomerge.io.oserrors import wrap

#: The folder each kind of side file lives in (the writers: ``RunStore.append``, ``make_record``).
SIDE_FOLDERS = {"genome": "genomes", "per_example": "per_example"}


def read_regular(path: Path, *, what: str) -> bytes:
    """The bytes of ``path``, a regular file opened without following a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RunDirError(
                f"{path}: is a symbolic link; evomerge reads {what} only from a regular file in the run directory"
            ) from None
        raise wrap(exc, path=path, doing=f"reading {what}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RunDirError(f"{path}: is not a regular file; expected {what}")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise wrap(exc, path=path, doing=f"reading {what}") from None
    finally:
        os.close(fd)


def _bad(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_record(rec: dict[str, Any]) -> None:
    """Raise ValueError naming the first field of ``rec`` a reader cannot rely on."""
    missing = [k for k in ("id", "status") if k not in rec]
    if missing:
        raise ValueError(f"no {' or '.join(repr(k) for k in missing)} field")
    cid = rec["id"]
    if not isinstance(cid, int) or isinstance(cid, bool) or cid < 0:
        raise ValueError(f"field 'id': expected a non-negative integer, got {_bad(cid)}")
    if not isinstance(rec["status"], str):
        raise ValueError(f"field 'status': expected a string, got {_bad(rec['status'])}")
    for key in ("asked", "attempt"):
        v = rec.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise ValueError(f"field {key!r}: expected a non-negative integer, got {_bad(v)}")
    for key, folder in SIDE_FOLDERS.items():
        v = rec.get(key)
        if isinstance(v, dict) and "path" in v:
            rel = v["path"]
            if not _plain_relative(rel, folder):
                raise ValueError(
                    f"field '{key}.path': expected a file under {folder}/ of the run directory, got {_bad(rel)}"
                )


def _plain_relative(rel: Any, folder: str) -> bool:
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        return False
    p = PurePosixPath(rel)
    return not p.is_absolute() and len(p.parts) == 2 and p.parts[0] == folder and p.parts[1] not in ("..", ".")


def inside(root: Path, rel: str, *, field: str) -> Path:
    """``root / rel`` once it is known to stay inside ``root`` with every link resolved."""
    folder = SIDE_FOLDERS.get(field, "")
    if not _plain_relative(rel, folder):
        raise RunDirError(
            f"{root}: field '{field}.path' {_bad(rel)} is not a file under {folder}/ of the run directory"
        )
    path = root / rel
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real_root not in real.parents:
        raise RunDirError(f"{path}: leads outside the run directory (to {real}); evomerge does not follow it")
    return path


def parse_log(data: bytes, log_path: Path, *, repair: bool, warn) -> list[dict[str, Any]]:
    """The records of the log's bytes. A torn last line (no newline, or not JSON) is dropped with
    a warning, and cut off the file when ``repair``; any other bad line is a RunDirError."""
    records: list[dict[str, Any]] = []
    pos = 0
    lineno = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        lineno += 1
        last = end == -1 or end == len(data) - 1
        chunk = data[pos:] if end == -1 else data[pos:end]
        torn = end == -1
        try:
            if torn:
                raise ValueError("no newline")
            try:
                rec = json.loads(chunk)
            except ValueError:
                torn = True
                raise ValueError("not JSON") from None
            if not isinstance(rec, dict):
                raise ValueError(f"a JSON {type(rec).__name__}, not an object")
            check_record(rec)
        except ValueError as why:
            if last and torn:
                if repair:
                    _truncate(log_path, pos)
                (warn or (lambda m: print(m, file=sys.stderr)))(
                    f"warning: {log_path} ends in a partly written line (line {lineno}); dropped it"
                )
                break
            raise RunDirError(
                f"{log_path}: line {lineno} is not a valid evaluation record ({why}); the log is damaged"
            ) from None
        records.append(rec)
        if end == -1:
            break
        pos = end + 1
    return records


def _truncate(log_path: Path, size: int) -> None:
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise wrap(exc, path=log_path, doing="cutting the partly written last line off the evaluation log") from None


__all__ = ["SIDE_FOLDERS", "check_record", "inside", "parse_log", "read_regular"]
