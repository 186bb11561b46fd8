"""Atomic writes: a reader (or a resumed run) sees the old output or the new one, never a mix.

* :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json` — one file:
  write a temporary sibling ``.NAME.tmp-…`` (same directory, so same filesystem), flush and
  ``fsync`` it, ``os.replace`` it onto ``NAME``, ``fsync`` the directory. The file gets the mode
  the umask gives any new file (not the 0600 of ``mkstemp``).
* :func:`atomic_dir` — a whole directory: the caller fills a temporary sibling; on success its
  files and folders are ``fsync``-ed and it is put in place. An existing output is renamed aside
  to a hidden sibling (``.NAME.old-…``) first, the new one renamed in, and only then the old one
  removed, so there is no moment without a complete output; if the swap fails the old one is
  moved back.

On any error — an exception in the caller's block, a full disk, ``KeyboardInterrupt`` — the
temporary is removed and the old output is left as it was. A process killed outright (``kill
-9``) can leave a temporary behind; its name starts with ``.`` and holds ``.tmp-``, so a reader
can recognise and drop it. An ``OSError`` leaves as an :class:`~evomerge.io.oserrors.OSFailure`
naming the output (not the temporary) and ``what`` was being written: ``OUT: No space left on
device (while writing the best recipe)``. Which outputs may be replaced at all is decided by
:mod:`evomerge.io.outputs`; every byte goes through ``os.write`` (tests simulate a full disk there).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from evomerge.io.oserrors import wrap


def fsync_dir(path: str | Path) -> None:
    """``fsync`` a directory, so that renames and new entries in it are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_parents(path: str | Path) -> None:
    """Create the folders above ``path``; a file where one belongs is ``ENOTDIR`` (mkdir would say
    "File exists", which misleads)."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(parent)) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_name(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may be short, e.g. near a full disk)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def atomic_write_bytes(
    path: str | Path, data: bytes, *, what: str | None = None, midway: Callable[[], None] | None = None
) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring).

    ``what`` names the file in an error (``"the Pareto front"``; default: the file). ``midway``
    is called once half of ``data`` is durable in the temporary file (the kill -9 tests crash
    the process there: :func:`evomerge.runs.crash.maybe_crash`).
    """
    path = Path(path)
    tmp = _temporary_name(path, "tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)  # 0o666 & ~umask
        try:
            try:
                if midway is not None:
                    half = len(data) // 2
                    write_all(fd, data[:half])
                    os.fsync(fd)
                    midway()
                    write_all(fd, data[half:])
                else:
                    write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
    except OSError as exc:
        raise wrap(exc, path=path, doing=f"writing {what or 'the file'}") from None


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8", what: str | None = None) -> None:
    atomic_write_bytes(path, text.encode(encoding), what=what)


def atomic_write_json(path: str | Path, obj: Any, *, what: str | None = None, **dumps_options: Any) -> None:
    """``json.dumps(obj, **dumps_options)`` written atomically (no trailing newline added)."""
    atomic_write_text(path, json.dumps(obj, **dumps_options), what=what)


def _fsync_tree(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(folder)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(out_dir: str | Path, *, what: str | None = None) -> Iterator[Path]:
    """``with atomic_dir(out) as tmp:`` fill ``tmp``; on success it becomes ``out`` (see above).

    ``tmp`` is an empty sibling of ``out`` with the mode a plain ``mkdir`` would give it. An
    existing ``out`` (a directory or a file) is replaced only after the block succeeded. ``out``
    must name a folder below its parent that does not hold the current directory: ``/``, ``.``
    and ``..`` are refused (ValueError; a user's path is checked by
    :func:`evomerge.io.outputs.check_replaceable` first).
    """
    out_dir = Path(os.path.abspath(os.path.expanduser(out_dir)))
    cwd = Path(os.path.realpath(os.curdir))
    real = Path(os.path.realpath(out_dir))
    if out_dir.name in ("", ".", "..") or real == cwd or real in cwd.parents:
        raise ValueError(f"atomic_dir: {out_dir} cannot be replaced as a whole (it is or holds the current directory)")
    doing = f"writing {what or 'the output directory'}"
    try:
        make_parents(out_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as exc:
        raise wrap(exc, path=out_dir, doing=doing) from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        yield tmp
        _fsync_tree(tmp)
        _swap(tmp, out_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise wrap(exc, path=out_dir, doing=doing) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap(tmp: Path, out_dir: Path) -> None:
    """Put ``tmp`` at ``out_dir``, keeping an existing ``out_dir`` until the new one is in place."""
    old = None
    if out_dir.exists() or out_dir.is_symlink():
        old = _temporary_name(out_dir, "old")
        os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        if old is not None:
            os.replace(old, out_dir)
        raise
    fsync_dir(out_dir.parent)
    if old is not None:
        _remove(old)
