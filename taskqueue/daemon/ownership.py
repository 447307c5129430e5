"""One owner per data directory: a lock that a second daemon on the same data cannot take.

Two ``taskqueue run`` in one directory would start two embedded Redis servers on one
append-only file (which both then write), and the second's exit would delete the first's
``redis.url``. So the daemon takes an exclusive ``flock`` on ``taskqueue.lock`` in the data
directory before it touches anything there, and holds it for the life of the process; the
kernel releases it when the process ends, however it ends, so a crash leaves no stale lock.
The holder's pid is written in the file, for the message the second one prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

__all__ = ["LOCK_FILE", "DataDirectoryBusy", "own_data_dir"]

LOCK_FILE: Final = "taskqueue.lock"


class DataDirectoryBusy(Exception):
    """Another process holds the data directory's lock."""

    def __init__(self, directory: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"data directory {directory} is in use by {holder} (another taskqueue run?): stop "
            "it first, or give this one its own redis.data_dir"
        )
        self.directory = directory
        self.pid = pid


def _holder(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode("ascii").strip())
    return None


@contextlib.contextmanager
def own_data_dir(directory: Path) -> Iterator[Path]:
    """Hold ``directory``'s lock for the block (creating both as needed), with this process's
    pid in it; raise :class:`DataDirectoryBusy` at once if another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    # Not O_TRUNC: the holder's pid must still be there to read if the lock is taken.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirectoryBusy(directory, _holder(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a new owner)
