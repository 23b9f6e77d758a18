"""Folders and files only this user can touch: for caches and scratch space that another local user could plant
first (a shared temp folder, a cache path someone else created).

`private_dir` makes a folder 0700 or accepts an existing one only when it is a real folder (not a link) owned by
us; `create_new` opens a file that did not exist, never through a link, mode 0600. On Windows the owner and mode
checks do not apply (ACLs decide there) and only the link checks are made.
"""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from fomm_core.errors import FommError

_POSIX = sys.platform != "win32"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


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
