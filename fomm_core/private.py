"""Folders and files only this user can touch: for caches and scratch space that another local user could plant
first (a shared temp folder, a cache path someone else created).

`private_dir` makes a folder 0700 or accepts an existing one only when it is a real folder (not a link) owned by
us; `create_new` opens a file that did not exist, never through a link, mode 0600; `open_plain` opens a file
only when it is a plain file reached without a link, and never blocks on a pipe planted at its name. On Windows the owner and mode
checks do not apply (ACLs decide there) and only the link checks are made.
"""
from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path

from fomm_core.errors import FommError

_POSIX = sys.platform != "win32"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)   # a FIFO at the name must not hang the open


def _refuse(path: Path, why: str) -> FommError:
    return FommError(f"{path} {why}; it is not used, since another user could read or replace what goes there "
                     f"(remove it, or point the cache elsewhere).")


def check_private(path: Path, st: os.stat_result) -> None:
    """Raise FommError unless `st` (an lstat of `path`) is a folder of ours that only we can write."""
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "is a link")
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "is not a folder")
    if _POSIX and st.st_uid != os.getuid():
        raise _refuse(path, f"belongs to another user (uid {st.st_uid})")


def private_dir(path: Path) -> Path:
    """Make `path` (and missing parents) or accept it as it is, then insist that it is ours: a real folder, owned
    by us, mode 0700 (group and other access is taken away from a folder of ours)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise FommError(f"cannot create the folder {path} ({err.strerror or err}).") from None
    st = os.lstat(path)
    check_private(path, st)
    if _POSIX and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def create_new(path: Path, mode: int = 0o600) -> int:
    """Open `path` for writing only if it does not exist yet and is not a link: a file descriptor, or
    FileExistsError (a name someone planted, a link included)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_BINARY", 0), mode)


def open_plain(path: Path, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """A file descriptor of `path` when it is a plain file reached without a link (created with `mode` when
    `flags` has O_CREAT); OSError otherwise: ELOOP for a link, EINVAL for a folder, device or pipe."""
    path = Path(path)
    if not _NOFOLLOW and path.is_symlink():   # Windows has no O_NOFOLLOW
        raise OSError(errno.ELOOP, "is a link", str(path))
    try:
        fd = os.open(path, flags | _NOFOLLOW | _NONBLOCK | getattr(os, "O_BINARY", 0), mode)
    except OSError as err:
        if err.errno == errno.ENXIO:   # a FIFO with no reader, opened for writing
            raise OSError(errno.EINVAL, "not a plain file", str(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a plain file", str(path))
    return fd
