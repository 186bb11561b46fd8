"""One writer per run directory.

The lock is a file ``RUN_DIR/lock`` holding ``pid hostname``; the owner keeps an exclusive
``fcntl.flock`` on it for the whole run. The kernel drops a flock when its process dies (even by
SIGKILL), so a lock whose flock can be taken belongs to a dead process and is taken over: the
pid text is only there to name the owner in the error a second writer gets.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path

from evomerge.errors import RunDirError
from evomerge.io.oserrors import wrap

LOCK_NAME = "lock"


class RunLock:
    """``with RunLock(run_dir):`` — exclusive ownership of ``run_dir`` for the block."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None
        self.took_over_from: str | None = None  # "pid@host" of a dead previous owner, if any

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        try:  # never through a link: a tampered run directory must not make us truncate another file
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RunDirError(f"{self.path}: is a symbolic link; the run's lock must be a regular file") from None
            raise wrap(exc, path=self.path, doing="taking the run's lock") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise RunDirError(
                f"run directory {self.run_dir} is locked by {owner} (another evomerge process is writing it)"
            ) from None
        previous = _read_owner(fd)
        if previous != "an unknown process":
            self.took_over_from = previous
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # an empty lock file reads as "nobody", never as a stale pid
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_owner(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 256).decode(errors="replace").split()
    except OSError:
        return "an unknown process"
    if not text:
        return "an unknown process"
    pid = text[0]
    host = text[1] if len(text) > 1 else "?"
    return f"pid {pid} on {host}"
