"""The partial file of a download and what remembers it between runs, in the download cache folder:

    <key>.part       the bytes so far
    <key>.part.json  the sidecar: URL (masked), ETag, size and, for parallel ranges, which ranges are done
    <key>.lock       the OS lock two runs of the same download take turns on

The key is the expected sha256 (so any mirror can continue the file) or a hash of the first URL. A finished,
verified part file is moved to its destination with a rename, so the destination is either absent or whole.
"""
import hashlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fomm_doctor.errors import ExitCode
from fomm_doctor.net.digests import is_sha256
from fomm_doctor.net.failures import DownloadError


@dataclass
class Segment:
    """One byte range of a parallel download: [start, end) of the file, `done` bytes of it on disk. The
    sidecar keeps it as [start, end, done]."""
    start: int
    end: int
    done: int = 0

    @property
    def pos(self) -> int:
        """The next byte of the file to fetch."""
        return self.start + self.done

    @property
    def left(self) -> int:
        return self.end - self.pos

    def as_list(self) -> list:
        return [self.start, self.end, self.done]

    @classmethod
    def read_all(cls, data) -> Optional[list]:
        """Segments from a sidecar's lists; None when they are not [start, end, done] integers."""
        if not isinstance(data, list):
            return None
        if not all(isinstance(s, list) and len(s) == 3 and all(type(x) is int for x in s) for s in data):
            return None
        return [cls(*s) for s in data]


def partial_paths(urls: list, sha256: Optional[str], cache_dir: Path):
    """(part file, sidecar) for a download: keyed by the expected sha256 (so any mirror can continue it)
    or by the first URL's hash. The key becomes a file name, so it must be a sha256 and nothing else, and
    the files must stay in `cache_dir` (a part file linked elsewhere is refused, never written through)."""
    if sha256 and not is_sha256(sha256):
        raise DownloadError(f"the published sha256 {sha256[:80]!r} is not a sha256 (64 hex digits).")
    key = sha256.lower() if sha256 else "url-" + hashlib.sha256(urls[0].encode()).hexdigest()[:32]
    cache_dir = Path(cache_dir)
    part, sidecar = cache_dir / f"{key}.part", cache_dir / f"{key}.part.json"
    for path in (part, sidecar):
        if not stays_in_folder(path, cache_dir):
            raise DownloadError(f"{path} leads outside the cache folder {cache_dir} (a link?), so it was not "
                                f"used; delete it and run this again.", ExitCode.USAGE)
    return part, sidecar


def stays_in_folder(path, folder) -> bool:
    """Whether `path`, links followed, is a file directly in `folder` (links followed too): a name or a link
    that leads elsewhere is never written through."""
    return os.path.dirname(os.path.realpath(path)) == os.path.realpath(folder)


class PartFile:
    """The part file, sidecar and lock file of one download (see the module's docstring)."""

    def __init__(self, urls: list, sha256: Optional[str], cache_dir: Path):
        self.path, self.sidecar = partial_paths(urls, sha256, cache_dir)
        self.lock_file = self.path.with_suffix(".lock")
        self._saving = threading.Lock()  # parallel ranges save the sidecar from several threads

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> dict:
        """The sidecar of an earlier run; {} when there is none or it cannot be read (start over, never guess)."""
        try:
            meta = json.loads(self.sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(meta, dict) or not isinstance(meta.get("size"), (int, type(None))):
            return {}
        if "segments" in meta:
            meta["segments"] = Segment.read_all(meta["segments"])
            if meta["segments"] is None:
                return {}
        return meta

    def save(self, meta: dict):
        """Write the sidecar whole or not at all (a temp file renamed over it)."""
        data = dict(meta)
        if "segments" in data:
            data["segments"] = [seg.as_list() for seg in data["segments"]]
        with self._saving:
            tmp = self.sidecar.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, self.sidecar)

    def preallocate(self, total: int):
        """Make the part file `total` bytes long, so each range can be written at its own offset."""
        with open(self.path, "ab") as f:
            f.truncate(total)

    def discard(self):
        for p in (self.path, self.sidecar):
            p.unlink(missing_ok=True)

    def place(self, dest: Path):
        """Move the verified part file to `dest` atomically (through a temp file beside `dest` when the two are
        on different filesystems), then drop the sidecar."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(self.path, dest)
        except OSError:
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix="." + dest.name, suffix=".tmp")
            os.close(fd)
            try:
                shutil.copyfile(self.path, tmp)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self.path.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)
