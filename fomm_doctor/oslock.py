"""One process at a time: an OS lock on a small file, for work that two runs must not do at once (the same
download, the same batch output folder). The file holds the holder's pid, so the refusal can name it.

The lock file is opened never through a link (a link there would have this write a pid into the file it points
at) and only as a plain file; a lock that cannot be made (a link, a read-only folder) is one sentence."""
import errno
import os
import stat
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted at the name must not hang the open

if sys.platform == "win32":
    import msvcrt

    _LOCK_AT = 1 << 20  # lock a byte past the recorded pid, so that a waiting run can still read it

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _LOCK_AT, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int):
        try:
            os.lseek(fd, _LOCK_AT, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass  # closing the file lets go as well
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP):
                return True  # a file system without locks (some network mounts): go on unguarded, as before
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        return True

    def _unlock(fd: int):
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass  # closing the file lets go as well


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _lock_holder(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            pid = f.read(32).decode("ascii", "replace").strip()
    except OSError:
        pid = ""
    return f"in process {pid}" if pid.isdigit() else "in another process"


@contextmanager
def locked(path: Path, wait: float, busy: Callable[[str], Exception]):
    """Hold the OS lock on `path` (created if missing) for the block; wait up to `wait` seconds for another
    process that holds it, then raise busy(words naming that process, e.g. 'in process 4242')."""
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        fd = _open(Path(path))
        if _try_lock(fd):
            if _same_file(fd, path):
                break
            _unlock(fd)  # the holder removed the file as we opened it: lock the one now at `path`
            os.close(fd)
            continue
        os.close(fd)
        left = deadline - time.monotonic()
        if left <= 0:
            raise busy(_lock_holder(path))
        time.sleep(min(0.1, left))
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid():<20}".encode())  # fixed width: no truncate, no leftover digits
        yield
    finally:
        _release(fd, path)


def _open(path: Path) -> int:
    """The lock file, created if missing: a plain file, never what a link at `path` points to."""
    if not _NOFOLLOW and path.is_symlink():  # Windows: no O_NOFOLLOW
        raise _unusable(path, "is a link", LINK)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise _unusable(path, "is a link", LINK) from None
        raise _unusable(path, f"could not be created ({exc.strerror or exc})",
                        "make its folder writable, or choose another") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _unusable(path, "is not a plain file", "remove it")
    return fd


LINK = "remove the link (what it points to is left alone)"


class UnusableLock(OSError):
    """The lock file cannot be used (a link, not a plain file, a folder that cannot be written); `sentence` says
    which and what to do. An OSError, so a caller that reports failed writes reports this one too."""

    def __init__(self, path: Path, sentence: str):
        super().__init__(errno.EPERM, sentence, str(path))
        self.sentence = sentence


def _unusable(path: Path, why: str, fix: str) -> UnusableLock:
    return UnusableLock(path, f"the lock file {path} {why}; {fix}.")


def _release(fd: int, path: Path):
    """Remove the lock file and let go. On POSIX it is removed while still held, so a run that opened it
    meanwhile notices (_same_file) and locks a fresh one; Windows cannot remove a file someone has open."""
    if sys.platform != "win32":
        _forget(path)
    _unlock(fd)
    os.close(fd)
    if sys.platform == "win32":
        _forget(path)


def _forget(path: Path):
    try:
        path.unlink()
    except OSError:
        pass  # already gone, or (Windows) open in the run that waits for it: it takes it over
