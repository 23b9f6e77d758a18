"""Manifest records bound to their folder and to this user, so a line someone else wrote cannot decide a job.

Each record carries `sig`: an HMAC-SHA256 of its other fields, under a key made from a secret kept in this
user's cache (a private folder, a 0600 file of 32 random bytes) and the output folder's resolved path. A record
that does not verify (a planted `failed` that would skip a job and show its planter's text, a `done` for a file
someone put there, a line copied from another folder, a line from a version before records were sealed) is
ignored, and its job runs again. Moving the output folder, or resuming it as another user, runs its jobs again.
"""
from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import secrets
import stat
import sys
from pathlib import Path

from fomm_core.cache import user_cache_dir
from fomm_core.errors import FommError
from fomm_core.private import create_new, open_plain, private_dir

KEY_FILE = "records.key"
KEY_BYTES = 32


class Seal:
    """sign(fields) -> hex; verifies(fields, sig). One per output folder."""

    def __init__(self, key: bytes):
        self._key = key

    @classmethod
    def for_folder(cls, folder: Path) -> "Seal":
        where = os.fsencode(os.path.realpath(folder))
        return cls(hmac.new(secret(), b"fomm-batch records\0" + where, hashlib.sha256).digest())

    def sign(self, fields: dict) -> str:
        text = json.dumps(fields, sort_keys=True, ensure_ascii=True, default=str)
        return hmac.new(self._key, text.encode("ascii"), hashlib.sha256).hexdigest()

    def verifies(self, fields: dict, sig) -> bool:
        return isinstance(sig, str) and hmac.compare_digest(self.sign(fields), sig)


def secret() -> bytes:
    """This user's secret, made on first use: a file in a private folder, never read through a link."""
    folder = private_dir(user_cache_dir("batch"))
    path = folder / KEY_FILE
    for _ in range(3):
        try:
            return _read_key(path)
        except FileNotFoundError:
            _make_key(folder, path)
    raise FommError(f"{path} keeps disappearing; another program removes it.")


def _read_key(path: Path) -> bytes:
    try:
        fd = open_plain(path)
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise FileNotFoundError(path) from None
        why = {errno.ELOOP: "is a link", errno.EINVAL: "is not a key this program wrote"}
        raise _bad(path, why.get(err.errno, f"cannot be read ({err.strerror})")) from None
    try:
        st = os.fstat(fd)
        if st.st_size != KEY_BYTES:
            raise _bad(path, "is not a key this program wrote")
        if sys.platform != "win32" and (st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077):
            raise _bad(path, "can be read or was written by another user")
        return os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)


def _make_key(folder: Path, path: Path) -> None:
    """Write the key whole under a private name, then link it into place: a run that starts at the same moment
    reads either no key or the whole of one, and the first to link wins."""
    spare = folder / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = create_new(spare)
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(spare, path)
    except FileExistsError:
        pass
    finally:
        spare.unlink(missing_ok=True)


def _bad(path: Path, why: str) -> FommError:
    return FommError(f"{path} {why}; remove it (a new key is made, and the batches' earlier records run again).")
