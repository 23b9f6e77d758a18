"""Every file of an install fetched at once: torch and each dependency downloaded side by side (each large file
over byte ranges, net/download.py), so that a link throttling each connection is paid once, not once per file.

    with Prefetch(index_url, py, cache, opts) as pre:
        torch = pre.submit_file(urls, dest, sha256, size)              # known from the plan
        pre.add(["sympy>=1.13", "jinja2", "opencv-python>=4.5"])      # torch's Requires-Dist, the project's deps
        deps = pre.wait()                                             # every wheel the requirements lead to

Which files: each requirement read against the index page of its project (install/index.py, as for torch),
the newest wheel the target accepts (its tags, its Python, the version range, not yanked) is downloaded and
verified against the page's sha256, and its own METADATA names the next requirements. A project seen once is
not picked again, so two requirements on one project that disagree are not reconciled here: pip's resolver,
run on the downloaded files alone (`pip install --no-index FILES`), is the judge, and a set it refuses sends
the install back to pip's own online resolution. Why not `pip install --dry-run --report`: on an index without
PEP 658 metadata it downloads every wheel once, one connection at a time, just to learn their requirements,
which is the slow path this module replaces; reading METADATA from the wheels we download anyway costs nothing.

A requirement no wheel here can satisfy (an sdist-only project, a file without a published sha256, an index
that cannot be read) is kept in `Prefetched.missing` with its reason; the caller then lets pip fetch online.
"""
import threading
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from fomm_doctor.errors import UserError
from fomm_doctor.install import metadata
from fomm_doctor.install.choose import requires_python_ok
from fomm_doctor.install.index import IndexUnavailable, IndexFile, plain_filename, read_project
from fomm_doctor.install.machine import Interpreter
from fomm_doctor.net import download as dl
from fomm_doctor.net.failures import DownloadError
from fomm_doctor.net.job import WHEEL_CAP
from fomm_doctor.net.redact import with_credentials_of

# Files in flight at once. Each small file is one connection, each large one a few (download.py's auto mode):
# enough to fill a link that throttles every connection, few enough to be polite to one mirror.
FILES_AT_ONCE = 8


@dataclass(frozen=True)
class Wheel:
    """One downloaded, verified wheel."""
    project: str  # canonical name
    version: str
    path: Path
    bytes_fetched: int


@dataclass
class Prefetched:
    """What the requirements led to: the wheels on disk and what could not be fetched (project -> reason)."""
    wheels: dict = field(default_factory=dict)  # canonical project -> Wheel
    missing: dict = field(default_factory=dict)  # canonical project -> one clause saying why

    @property
    def complete(self) -> bool:
        return not self.missing


# ---- choosing a wheel (pure) ---------------------------------------------------------------------------------

def wheel_tags(filename: str) -> Optional[tuple]:
    """(project, version, tags) of a wheel file name; None for anything else (an sdist, a broken name)."""
    if not filename.endswith(".whl"):
        return None
    try:
        name, version, _build, tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, ValueError):
        return None
    return canonicalize_name(name), version, tags


def pick_wheel(files: list, req: Requirement, tags: tuple, python_version: str) -> Optional[IndexFile]:
    """The wheel pip would prefer for `req` on a target accepting `tags` (most preferred first) and running
    Python `python_version`: the newest version in range (pre-releases only when the range names one), then the
    most preferred tag. Yanked files, sdists and other projects' files are never picked. None when none fits."""
    rank = {Tag(*t.split("-")) if isinstance(t, str) else t: i for i, t in enumerate(tags)}
    project = canonicalize_name(req.name)
    best, best_key = None, None
    for f in files:
        parsed = wheel_tags(f.filename)
        if parsed is None or parsed[0] != project or f.yanked:
            continue
        _name, version, ftags = parsed
        if not req.specifier.contains(version, prereleases=None) or not requires_python_ok(f.requires_python,
                                                                                          python_version):
            continue
        fit = min((rank[t] for t in ftags if t in rank), default=None)
        if fit is None:
            continue
        key = (version, -fit)
        if best_key is None or key > best_key:
            best, best_key = f, key
    return best


def applicable(requires: list, env: dict, extras: frozenset = frozenset()) -> list:
    """The requirements of `requires` (Requires-Dist strings) that apply on the target, with the extras asked
    for; unreadable ones are left out (pip's final check sees the wheel's own)."""
    out = []
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.marker is None or any(req.marker.evaluate(dict(env, extra=e)) for e in ("", *sorted(extras))):
            out.append(req)
    return out


# ---- fetching them all -----------------------------------------------------------------------------------------

class Prefetch:
    """A pool of downloads: known files (`submit_file`) and requirements (`add`) whose wheels, and the wheels
    their METADATA asks for, are found, fetched and verified concurrently. `wait()` blocks until every
    requirement added so far has its wheel on disk or a reason in `missing`."""

    def __init__(self, index_url: str, py: Interpreter, folder: Path, *, retries: int = 8, timeout: float = 15.0,
                 cache_dir: Optional[Path] = None, progress: Optional[Callable] = None,
                 workers: int = FILES_AT_ONCE):
        self.index_url, self.py, self.folder = index_url, py, Path(folder)
        self.retries, self.timeout = retries, timeout
        self.cache_dir = Path(cache_dir) if cache_dir else self.folder.parent
        self.env = metadata.marker_env(py)
        self.result = Prefetched()
        self._seen: dict = {}  # canonical project -> extras asked so far
        self._pending = 0
        self._idle = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="prefetch")
        self._bytes = _Bytes(progress)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._pool.shutdown(wait=exc[0] is None, cancel_futures=exc[0] is not None)

    # -- known files

    def submit_file(self, urls: list, dest: Path, sha256: Optional[str], size: Optional[int],
                    connections: Optional[int] = None) -> Future:
        """Download one file the caller already chose (torch) in the pool; the future holds its DownloadResult."""
        return self._pool.submit(dl.download, urls, dest, sha256=sha256, size=size, retries=self.retries,
                                 timeout=self.timeout, connections=connections, cache_dir=self.cache_dir,
                                 progress=self._bytes.for_file(size), expect_binary=True)

    # -- requirements

    def add(self, requirements) -> None:
        """Start fetching the wheel of each requirement not seen before (strings or Requirement objects)."""
        for req in requirements:
            if isinstance(req, str):
                try:
                    req = Requirement(req)
                except InvalidRequirement:
                    continue
            self._start(req)

    def wait(self) -> Prefetched:
        with self._idle:
            while self._pending:
                self._idle.wait(0.2)
        return self.result

    def _start(self, req: Requirement) -> None:
        name = canonicalize_name(req.name)
        with self._idle:
            if name in self._seen:
                return  # pip's final resolution judges a second, different range on the same project
            self._seen[name] = frozenset(req.extras)
            self._pending += 1
        self._pool.submit(self._one, req)

    def _one(self, req: Requirement) -> None:
        name = canonicalize_name(req.name)
        try:
            wheel, requires = self._fetch(req)
            with self._idle:
                self.result.wheels[name] = wheel
            self.add(applicable(requires, self.env, frozenset(req.extras)))
        except (IndexUnavailable, DownloadError, UserError, OSError, ValueError, zipfile.BadZipFile) as exc:
            with self._idle:
                self.result.missing[name] = str(exc).rstrip(".")
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _fetch(self, req: Requirement) -> tuple:
        """(Wheel, its Requires-Dist) for one requirement, or ValueError saying why there is none."""
        page = read_project(self.index_url, req.name, timeout=self.timeout, retries=min(self.retries, 4))
        f = pick_wheel(page.files, req, self.py.tags, self.py.version)
        if f is None:
            raise ValueError(f"no wheel on the index fits {req} for this Python")
        if not f.sha256:
            raise ValueError(f"{f.filename} has no published sha256")
        if not plain_filename(f.filename):
            raise ValueError(f"{f.filename!r} is not a plain file name")
        res = dl.download([with_credentials_of(self.index_url, f.url)], self.folder / f.filename, sha256=f.sha256, size=f.size, retries=self.retries,
                          timeout=self.timeout, cache_dir=self.cache_dir, progress=self._bytes.for_file(f.size),
                          expect_binary=True, max_size=WHEEL_CAP)
        requires = metadata.requires_dist(metadata.wheel_metadata(res.path))
        version = str(wheel_tags(f.filename)[1])
        return Wheel(canonicalize_name(req.name), version, res.path, res.bytes_fetched), requires


class _Bytes:
    """All files' progress as one `progress(done, total)`: the sum of every file's bytes so far."""

    def __init__(self, progress: Optional[Callable]):
        self.progress, self.lock = progress, threading.Lock()
        self.done, self.total, self.files = 0, 0, {}

    def for_file(self, size: Optional[int]) -> Optional[Callable]:
        if self.progress is None:
            return None
        key = object()
        with self.lock:
            self.files[key] = 0
            self.total += size or 0

        def one(done, _total):
            with self.lock:
                self.done += done - self.files[key]
                self.files[key] = done
                now, total = self.done, self.total
            self.progress(now, total or None)
        return one
