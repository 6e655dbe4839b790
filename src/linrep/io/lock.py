"""An exclusive, process-lifetime lock on an output folder: ``flock`` on a lock file beside it.

The kernel releases an ``flock`` when its holder's file descriptor is closed, including when the
process dies (``kill -9``), so a stale lock can never block a later run. The holder writes its pid
into the file so the second process can name it. On release the holder deletes the file while still
holding the lock; a process that locked the file just before it was deleted notices (the path no
longer names its inode) and tries again.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import InputError
from .files import show

__all__ = ["FolderLock", "is_locked"]


class FolderLock:
    """``with FolderLock(lock_path, folder):`` holds an exclusive lock for ``folder``.

    Args:
        path: the lock file (created if needed, deleted on release).
        folder: the folder it protects (named in the error message).

    Raises:
        InputError: another process holds the lock, or the lock file cannot be created.
    """

    def __init__(self, path: Path, folder: Path):
        self.path = Path(path)
        self.folder = folder
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        while self._fd is None:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                os.close(fd)
                who = f" (pid {holder})" if holder.isdigit() else ""
                raise InputError(
                    f"--out '{show(self.folder)}' is in use by another linrep process{who}; wait for it "
                    "to finish or choose another --out"
                ) from None
            if self._still_linked(fd):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
                self._fd = fd
            else:  # the previous holder deleted the file between our open and flock: retry
                os.close(fd)
        return self

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise InputError(
                f"cannot create the lock file '{show(self.path)}' for --out '{show(self.folder)}': "
                f"{e.strerror or e}; choose an --out inside a writable folder"
            ) from None

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while holding the lock (see the module docstring)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(path: Path) -> bool:
    """True if another open file description holds an ``flock`` on the lock file ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
