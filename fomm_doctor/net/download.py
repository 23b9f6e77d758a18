"""Downloads that survive a bad network: resume with HTTP Range, retry, fail over between mirrors, verify sha256.

    result = download([mirror_url, upstream_url], Path("torch.whl"), sha256="...", size=...)

`connections=None` (the default) is auto: a file of AUTO_MIN_SIZE or more from a server that answers Range
requests with 206 comes over AUTO_CONNECTIONS parallel byte ranges (a link that throttles each connection
is then that many times faster); small files, and servers that ignore Range, use one connection. The first
request decides (with a known large size it asks `bytes=0-`; with no size, a plain answer's Accept-Ranges
invites the split and the other ranges must come back 206), so auto mode costs no extra round trip and its
first answer becomes the first range. An integer forces that many connections (1 = one connection).

The partial file lives in a cache directory (`<cache>/<sha256 or url hash>.part`, with a small JSON sidecar
that remembers the URL, ETag, size and, for parallel downloads, which byte ranges are done), so a second run
after Ctrl-C or a crash continues where the first stopped. The finished file is verified, then moved into
place with a rename: `dest` either does not exist or is complete and correct.

Servers are not trusted: a body never grows past the size the file should have (`size`, else what the server
announced, else `max_size`), a compressed answer is refused rather than unpacked (its bytes are not the file),
and an unreadable header is a sentence, not a crash. Two runs of the same download take turns: a lock file
beside the part file (`<key>.lock`, an OS lock the OS drops when its process dies, so a killed run never blocks
the next) makes a second run wait up to `lock_wait` seconds, then say that another download is running.
Every error is a `DownloadError` with one sentence, credentials in URLs masked.

No terminal output here: `progress(bytes_done, total)` is called as bytes arrive; the CLI draws the bar.
"""
import errno
import hashlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable, Optional

import requests
import urllib3

from fomm_doctor.errors import ExitCode, NetworkError
from fomm_doctor.net.redact import redact

CHUNK = 64 * 1024
MIN_SEGMENT = 256 * 1024  # smaller files are not worth splitting between connections
SIDECAR_EVERY = 1024 * 1024  # parallel mode: write the done-ranges to disk about every MiB
AUTO_MIN_SIZE = 8 * 1024 * 1024  # auto mode splits files from this size up; below it one connection is enough
AUTO_CONNECTIONS = 4  # enough to outrun a per-connection throttle without hammering a mirror
MAX_AUTO_CONNECTIONS = 8
MAX_SIZE = 64 * 1024 ** 3  # a file of unknown size is cut off here: far above any wheel or checkpoint
LOCK_WAIT = 5.0  # seconds a second run of the same download waits for the first before saying so

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


class DownloadError(NetworkError):
    """A download failed for good (every mirror tried); the message says why in one sentence."""


class ChecksumMismatch(DownloadError):
    """The bytes arrived but are not the file we asked for, twice."""


class HtmlInsteadOfFile(DownloadError):
    """The server answered a web page (a login, quota or "confirm download" page) instead of the file."""

    def __init__(self, response_text_head: str, url: str):
        super().__init__(f"{redact(url)} answered a web page instead of the file (a sign-in, quota or "
                         f"confirmation page).")
        self.response_text_head = response_text_head
        self.url = url


@dataclass
class DownloadResult:
    path: Path
    sha256: str
    bytes_fetched: int  # bytes that came over the network in this run
    resumed: bool  # some request continued a partial file with a Range request
    url_used: str
    attempts: int  # HTTP requests made


class _Retryable(Exception):
    """One attempt failed in a way that is worth retrying (drop, stall, 5xx); `wait` is the server's hint."""

    def __init__(self, message: str, wait: Optional[float] = None):
        super().__init__(message)
        self.wait = wait


class _UrlDead(Exception):
    """This URL will not give us the file (404, wrong size): move to the next mirror at once."""


class _RangeIgnored(Exception):
    """The server answered a Range request with the whole file: parallel mode cannot continue."""


class _SplitHere(Exception):
    """Auto mode: the first answer shows a large file from a server that does ranges. `resp`, still open and
    positioned at byte `have`, becomes the first of the parallel ranges, so no request is wasted."""

    def __init__(self, url: str, resp, have: int):
        super().__init__(f"split {url} from byte {have}")
        self.url, self.resp, self.have = url, resp, have


def default_cache_dir() -> Path:
    """Per-user cache: %LOCALAPPDATA%, ~/Library/Caches or $XDG_CACHE_HOME, then fomm-doctor/downloads."""
    env = os.environ.get("FOMM_DOCTOR_CACHE")
    if env:
        return Path(env) / "downloads"
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "fomm-doctor" / "downloads"


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_CONTENT_RANGE = re.compile(r"bytes +([0-9]{1,40})-([0-9]{1,40})/([0-9]{1,40}|\*)", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]{1,40}")  # 40 digits are far past any file; longer is a server playing games


def is_sha256(value) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def partial_paths(urls: list, sha256: Optional[str], cache_dir: Path):
    """(part file, sidecar) for a download: keyed by the expected sha256 (so any mirror can continue it)
    or by the first URL's hash. The key becomes a file name, so it must be a sha256 and nothing else, and
    the files must stay in `cache_dir` (a part file linked elsewhere is refused, never written through)."""
    if sha256 and not is_sha256(sha256):
        raise DownloadError(f"the published sha256 {sha256[:80]!r} is not a sha256 (64 hex digits).")
    key = sha256.lower() if sha256 else "url-" + hashlib.sha256(urls[0].encode()).hexdigest()[:32]
    cache_dir = Path(cache_dir)
    part, sidecar = cache_dir / f"{key}.part", cache_dir / f"{key}.part.json"
    folder = os.path.realpath(cache_dir)
    for path in (part, sidecar):
        if os.path.dirname(os.path.realpath(path)) != folder:
            raise DownloadError(f"{path} leads outside the cache folder {cache_dir} (a link?), so it was not "
                                f"used; delete it and run this again.", ExitCode.USAGE)
    return part, sidecar


def parse_content_range(value: str) -> Optional[tuple]:
    """`bytes START-END/TOTAL` (or `/*`) -> (start, end inclusive, total or None); None for anything else,
    including a range that ends before it starts or past the total."""
    m = _CONTENT_RANGE.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        return None
    start, end = int(m.group(1)), int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if end < start or (total is not None and end >= total):
        return None
    return start, end, total


def parse_length(value: Optional[str]) -> Optional[int]:
    """A Content-Length as an int; None when absent or not plain ASCII digits."""
    value = (value or "").strip()
    return int(value) if _DIGITS.fullmatch(value) else None


def _bytes_words(n: int) -> str:
    """1536 -> '1.5 KiB': for sentences about disk space, where exact byte counts do not help."""
    if n < 1024:
        return f"{n:,} bytes"
    size, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:,.1f} {unit}"


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file, read a MiB at a time (sha256; md5 where a source publishes only that)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Retry-After as seconds: either a number or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):  # not str.isdigit(): that admits "²", which float() refuses
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (now if now is not None else time.time()))


def looks_like_html(head: bytes) -> bool:
    start = head.lstrip()[:15].lower()
    return start.startswith(b"<!doctype") or start.startswith(b"<html")


def _short(exc: BaseException) -> str:
    """A one-line reason from a requests/urllib3 exception chain."""
    text = str(exc)
    for key, words in (("Read timed out", "the server stopped sending (read timed out)"),
                       ("ConnectTimeout", "the connection timed out"),
                       ("Connection refused", "the connection was refused"),
                       ("Connection reset", "the connection was reset"),
                       ("Connection broken", "the connection broke mid-file"),
                       ("IncompleteRead", "the connection broke mid-file"),
                       ("Name or service not known", "the host name could not be resolved"),
                       ("getaddrinfo failed", "the host name could not be resolved")):
        if key in text:
            return words
    return redact(text.splitlines()[0][:160]) if text else type(exc).__name__


def _blocks(resp):
    """The body as it came over the wire: never un-gzipped (requests' iter_content would unpack a compressed
    body, so 100 KiB could become 100 GiB), network errors as _Retryable. Write errors are the caller's."""
    try:
        yield from resp.raw.stream(CHUNK, decode_content=False)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise _Retryable(_short(exc)) from None


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
def _locked(path: Path, wait: float, name: str):
    """Hold the OS lock on `path` (created if missing) for the block; wait up to `wait` seconds for another
    process that holds it, then raise a DownloadError that names that process."""
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        if _try_lock(fd):
            if _same_file(fd, path):
                break
            _unlock(fd)  # the holder removed the file as we opened it: lock the one now at `path`
            os.close(fd)
            continue
        os.close(fd)
        left = deadline - time.monotonic()
        if left <= 0:
            raise DownloadError(f"another download of {name} is running ({_lock_holder(path)}); let it finish, "
                                f"then run this again.", ExitCode.USAGE)
        time.sleep(min(0.1, left))
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid():<20}".encode())  # fixed width: no truncate, no leftover digits
        yield
    finally:
        _release(fd, path)


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


class ResumableDownload:
    """One file, several candidate URLs. `run()` returns a DownloadResult or raises a DownloadError."""

    def __init__(self, urls, dest, *, sha256=None, size=None, retries=8, timeout=15.0, connections=None,
                 cache_dir=None, progress: Optional[Callable] = None, expect_binary=False, session=None,
                 backoff=0.5, max_wait=30.0, max_size=MAX_SIZE, lock_wait=LOCK_WAIT):
        self.urls = [u for u in ([urls] if isinstance(urls, str) else list(urls)) if u]
        if not self.urls:
            raise ValueError("no URL to download from")
        self.dest = Path(dest)
        if self.dest.name in ("", ".", "..") or self.dest.is_dir():
            raise DownloadError(f"'{self.dest}' is a folder, not a file name to download to.", ExitCode.USAGE)
        if sha256 and not is_sha256(sha256):
            raise DownloadError(f"the published sha256 for {self.dest.name} is not a sha256 (64 hex digits), "
                                f"so it was not downloaded.")
        self.sha256 = sha256.lower() if sha256 else None
        self.size = size
        self.max_size = max_size
        self.lock_wait = lock_wait
        self.retries = max(1, int(retries))
        self.timeout = float(timeout)
        self.auto = connections is None  # auto: parallel ranges for large files when the server allows
        self.connections = min(AUTO_CONNECTIONS, MAX_AUTO_CONNECTIONS) if self.auto else max(1, int(connections))
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.progress = progress
        self.expect_binary = expect_binary
        self.session = session or requests.Session()
        self.backoff = backoff  # first wait between retries, doubled each time, capped at max_wait
        self.max_wait = max_wait
        self.part, self.sidecar = partial_paths(self.urls, self.sha256, self.cache_dir)
        self.lock_file = self.part.with_suffix(".lock")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.attempts = 0
        self.bytes_fetched = 0
        self.resumed = False
        self._done = 0
        self._total = size

    # ---- small helpers
    def _count_attempt(self):
        with self._lock:
            self.attempts += 1

    def _advance(self, n: int):
        with self._lock:
            self.bytes_fetched += n
            self._done += n
            done, total = self._done, self._total
        if self.progress:
            self.progress(done, total)

    def _wait(self, failures: int, hint: Optional[float]):
        delay = hint if hint is not None else self.backoff * (2 ** (failures - 1))
        delay = min(self.max_wait, max(0.0, delay)) * (1.0 if hint is not None else random.uniform(0.8, 1.2))
        if self._stop.wait(delay):
            raise KeyboardInterrupt

    def _load_sidecar(self) -> dict:
        try:
            meta = json.loads(self.sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) and isinstance(meta.get("size"), (int, type(None))) else {}

    def _save_sidecar(self, meta: dict):
        tmp = self.sidecar.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp, self.sidecar)

    def _discard_partial(self):
        for p in (self.part, self.sidecar):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def _get(self, url: str, start: int = 0, end: Optional[int] = None, if_range: Optional[str] = None,
             ranged: bool = False):
        """GET with a Range header when `start`/`end` ask for part of the file, or `ranged` asks for `bytes=0-`
        (auto mode's way of learning from the first answer whether the server does ranges)."""
        headers = {"Accept-Encoding": "identity"}  # byte offsets must mean file offsets
        if start or end is not None or ranged:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
            if if_range:
                headers["If-Range"] = if_range
        self._count_attempt()
        try:
            resp = self.session.get(url, headers=headers, stream=True, timeout=(self.timeout, self.timeout),
                                    allow_redirects=True)
        except requests.RequestException as exc:
            raise _Retryable(_short(exc)) from None
        code = resp.status_code
        if code == 429 or code >= 500:
            wait = retry_after_seconds(resp.headers.get("Retry-After"))
            resp.close()
            raise _Retryable(f"the server answered HTTP {code}", wait)
        if code == 416:
            return resp
        if code >= 400:
            resp.close()
            raise _UrlDead(f"the server answered HTTP {code}")
        if self.expect_binary and "text/html" in resp.headers.get("Content-Type", "").lower():
            try:
                head = next(resp.iter_content(4096), b"")
            except requests.RequestException:
                head = b""  # a page that broke off is still a page, not the file
            resp.close()
            raise HtmlInsteadOfFile(head.decode("utf-8", "replace"), url)
        encoding = resp.headers.get("Content-Encoding", "").strip()
        if encoding.lower() not in ("", "identity"):
            resp.close()  # the bytes would be the packed file, not the file: another mirror may do better
            raise _UrlDead(f"{redact(url)} answered a compressed body (Content-Encoding: {encoding[:40]}) where "
                           f"the file itself was asked for")
        return resp

    @staticmethod
    def _range_of(resp, url: str) -> tuple:
        """(start, end, total or None) of a 206 answer; _UrlDead when its Content-Range cannot be read."""
        parsed = parse_content_range(resp.headers.get("Content-Range", ""))
        if parsed is None:
            raise _UrlDead(f"{redact(url)} answered part of the file without a readable Content-Range")
        return parsed

    def _total_from(self, resp, url: str = "") -> Optional[int]:
        if resp.status_code == 206:
            return self._range_of(resp, url)[2]
        if resp.status_code == 200:
            return parse_length(resp.headers.get("Content-Length"))
        return None

    def _check_total(self, total: Optional[int], url: str):
        if total is None:
            return
        if self.size is not None and total != self.size:
            raise _UrlDead(f"{redact(url)} serves {total} bytes where {self.size} were expected")
        if self.size is None and total > self.max_size:
            raise _UrlDead(f"{redact(url)} announces {total:,} bytes, more than the {self.max_size:,} a download "
                           f"may have")
        with self._lock:
            self._total = total
        self._check_space(total)

    def _check_space(self, total: int):
        """Fail before writing when the rest of the file cannot fit on the cache folder's disk."""
        with self._lock:
            need = max(0, total - self._done)
        free = shutil.disk_usage(self.cache_dir).free
        if need > free:
            raise DownloadError(f"{self.dest.name} needs {_bytes_words(need)} in {self.cache_dir} but only "
                                f"{_bytes_words(free)} is free there; free some space or choose another cache "
                                f"folder.", ExitCode.USAGE)

    # ---- auto mode: decide from the first answer whether to split the file between connections
    def _segment_count(self, span: int) -> int:
        """Connections for `span` bytes: no segment under MIN_SEGMENT, and auto mode never above its cap."""
        n = min(self.connections, span // MIN_SEGMENT)
        return max(1, min(n, MAX_AUTO_CONNECTIONS) if self.auto else n)

    def _large(self) -> bool:
        return self.auto and self._total is not None and self._total >= AUTO_MIN_SIZE

    def _splittable(self, resp, have: int, asked_range: bool) -> bool:
        """Auto mode: split a large file when the server does ranges. A 206 proves it; for a first request
        made without Range (size unknown) `Accept-Ranges: bytes` is enough to try, the other ranges confirm it.
        A 200 answer to a Range request, or `Accept-Ranges: none`, means one connection."""
        if not self._large() or self._segment_count(self._total - have) < 2:
            return False
        accept = resp.headers.get("Accept-Ranges", "").lower()
        if "none" in accept:
            return False
        if resp.status_code == 206:
            return True
        return not asked_range and have == 0 and "bytes" in accept

    # ---- one connection, streaming to the end of the part file
    def _single_attempt(self, url: str, meta: dict) -> bool:
        """Fetch from where the part file ends. True when the file is complete. Raises _Retryable/_UrlDead,
        or _SplitHere (auto mode) with the open answer when the file should come in parallel ranges."""
        have = self.part.stat().st_size if self.part.exists() else 0
        if self._total is not None and have > self._total:
            self._discard_partial()
            have = 0
        if have and self._total is not None and have == self._total:
            return True
        if_range = meta.get("etag") if meta.get("url") == redact(url) else None
        asked_range = bool(have) or self._large()  # a known large size: ask `bytes=0-` to learn about ranges
        resp = self._get(url, start=have, if_range=if_range, ranged=asked_range)
        if resp.status_code == 416:
            with resp:
                # nothing left past `have` (complete) or the partial is bogus: start over next time
                if have and self._total in (None, have):
                    return True
                self._discard_partial()
                raise _Retryable("the server refused the resume range")
        try:
            self._check_total(self._total_from(resp, url), url)
            if resp.status_code == 206 and self._range_of(resp, url)[0] != have:
                self._discard_partial()
                raise _Retryable("the server answered a different range than asked")
            split = self._splittable(resp, have, asked_range)
        except BaseException:
            resp.close()
            raise
        if split:
            raise _SplitHere(url, resp, have)
        return self._stream_single(url, resp, have)

    def _stream_single(self, url: str, resp, have: int) -> bool:
        """Write the answer to the part file: appended after `have` for a 206, from byte 0 for a 200."""
        with resp:
            if resp.status_code == 206:
                if have:
                    self.resumed = True
                mode = "ab"
            else:  # 200: the whole file, from the first byte (the server ignores Range, or nothing to resume)
                if have:
                    with self._lock:
                        self._done -= have
                    have = 0
                mode = "wb"
            meta = {"url": redact(url), "etag": resp.headers.get("ETag"), "size": self._total,
                    "last_modified": resp.headers.get("Last-Modified")}
            self._save_sidecar(meta)
            try:
                self._write_body(url, resp, have, mode)
            except (HtmlInsteadOfFile, _UrlDead):
                self._discard_partial()
                raise
        got = self.part.stat().st_size
        if self._total is not None and got < self._total:
            raise _Retryable("the connection closed before the end of the file")
        return True

    def _end_of(self, resp, url: str) -> int:
        """Where this answer must stop: the end of its range, the file's size, or `max_size` when nobody knows."""
        end = self._range_of(resp, url)[1] + 1 if resp.status_code == 206 else self.max_size
        return end if self._total is None else min(end, self._total)

    def _too_long(self, url: str, limit: int, resp) -> "_UrlDead":
        if resp.status_code == 206 or parse_length(resp.headers.get("Content-Length")) is not None:
            return _UrlDead(f"{redact(url)} sends more than the {limit:,} bytes it announced")
        if self._total is not None:
            return _UrlDead(f"{redact(url)} sends more than the {limit:,} bytes the file has")
        return _UrlDead(f"{redact(url)} sent more than the {limit:,} bytes a download may have without saying "
                        f"how long the file is")

    def _write_body(self, url: str, resp, have: int, mode: str):
        """Append the answer to the part file (from byte `have`), never past where it must stop."""
        limit = self._end_of(resp, url)
        room = limit - have
        first = not have
        with open(self.part, mode) as f:
            for block in _blocks(resp):
                if first and self.expect_binary and looks_like_html(block):
                    raise HtmlInsteadOfFile(block[:4096].decode("utf-8", "replace"), url)
                first = False
                if len(block) > room:
                    raise self._too_long(url, limit, resp)
                f.write(block)
                room -= len(block)
                self._advance(len(block))
                if self._stop.is_set():
                    raise KeyboardInterrupt

    def _fetch_single(self, meta: dict) -> str:
        """Loop over URLs and attempts until the part file is complete; returns the URL that finished it."""
        last = "no attempt was made"
        for url in self.urls:
            failures = 0
            high = self.part.stat().st_size if self.part.exists() else 0
            while failures < self.retries:
                try:
                    if self._single_attempt(url, meta):
                        return url
                except _UrlDead as exc:
                    last = str(exc)
                    break
                except _Retryable as exc:
                    last = str(exc)
                    now = self.part.stat().st_size if self.part.exists() else 0
                    if now > high:  # progress: a drop after new bytes does not count against this mirror;
                        high, failures = now, 0  # reconnect at once (unless the server asked for a pause)
                        if exc.wait:
                            self._wait(1, exc.wait)
                        meta = self._load_sidecar()
                        continue
                    failures += 1
                    if failures < self.retries:
                        self._wait(failures, exc.wait)
                meta = self._load_sidecar()
        raise DownloadError(f"Could not download {self.dest.name}: {redact(last)} (tried {len(self.urls)} "
                            f"source{'s' if len(self.urls) > 1 else ''}, {self.attempts} requests); "
                            f"run the same command again to continue where it stopped.")

    # ---- several connections, each fetching its own byte range into the preallocated part file
    def _probe(self):
        """(url, total, etag) from a one-byte Range request on the first URL that answers 206; None if none does."""
        for url in self.urls:
            for failure in range(1, self.retries + 1):
                try:
                    resp = self._get(url, start=0, end=0)
                except _Retryable as exc:
                    if failure < self.retries:
                        self._wait(failure, exc.wait)
                    continue
                except _UrlDead:
                    break
                with resp:
                    if resp.status_code != 206:
                        return None
                    try:
                        total = self._total_from(resp, url)
                        self._check_total(total, url)
                    except _UrlDead:
                        break
                    return (url, total, resp.headers.get("ETag")) if total is not None else None
        return None

    def _segment_worker(self, seg: list, meta: dict, resp=None):
        """seg = [start, end_exclusive, done]: fetch until done, writing at offset start+done. `resp`: an answer
        already open at this range's first byte (auto mode's first request), used before asking for more."""
        url_index = 0
        failures = 0
        with open(self.part, "r+b") as f:
            while seg[0] + seg[2] < seg[1]:
                if self._stop.is_set():
                    raise KeyboardInterrupt
                url = self.urls[url_index]
                pos = seg[0] + seg[2]
                before = seg[2]
                handed, resp = resp, None
                try:
                    answer = handed if handed is not None else self._get(url, start=pos, end=seg[1] - 1)
                    with answer:
                        self._check_range_answer(answer, pos, url, handed is not None)
                        if pos > seg[0]:
                            self.resumed = True
                        self._stream_range(f, answer, seg, meta, url)
                    if seg[0] + seg[2] < seg[1]:
                        raise _Retryable("the connection closed before the end of its range")
                except _Retryable as exc:
                    failures = 0 if seg[2] > before else failures + 1
                    if failures >= self.retries:
                        url_index, failures = url_index + 1, 0
                        if url_index >= len(self.urls):
                            raise DownloadError(f"Could not download {self.dest.name}: {exc} on every source; "
                                                f"run the same command again to continue where it stopped.")
                    elif failures or exc.wait:  # a drop after progress reconnects at once
                        self._wait(max(1, failures), exc.wait)
                except _UrlDead as exc:
                    url_index, failures = url_index + 1, 0
                    if url_index >= len(self.urls):
                        raise DownloadError(f"Could not download {self.dest.name}: {exc}.")
                finally:
                    f.flush()
                    self._save_segments(meta)

    def _check_range_answer(self, resp, pos: int, url: str, handed: bool):
        """A range must come back as 206 from `pos`; a handed-over first answer may be the whole file (200)."""
        ranged = resp.status_code == 206 and self._range_of(resp, url)[0] == pos
        if not ranged and not (handed and pos == 0 and resp.status_code == 200):
            raise _RangeIgnored()
        self._check_total(self._total_from(resp, url), url)

    def _stream_range(self, f, resp, seg: list, meta: dict, url: str):
        """Write the answer at the segment's offset until the segment is full or the answer ends."""
        f.seek(seg[0] + seg[2])
        unsaved = 0
        check_html = self.expect_binary and seg[0] + seg[2] == 0
        for block in _blocks(resp):
            if check_html and looks_like_html(block):
                raise HtmlInsteadOfFile(block[:4096].decode("utf-8", "replace"), url)
            check_html = False
            block = block[:seg[1] - seg[0] - seg[2]]
            f.write(block)
            seg[2] += len(block)
            unsaved += len(block)
            self._advance(len(block))
            if unsaved >= SIDECAR_EVERY:
                f.flush()
                self._save_segments(meta)
                unsaved = 0
            if self._stop.is_set():
                raise KeyboardInterrupt
            if seg[0] + seg[2] >= seg[1]:
                break  # an open-ended first answer runs on past this range: the next ones are fetched apart

    def _save_segments(self, meta: dict):
        with self._lock:
            self._save_sidecar(meta)

    def _new_segments(self, url: str, total: int, etag: Optional[str], have: int) -> dict:
        """Split bytes have..total into ranges ([0, have) is already on disk), preallocate, record them."""
        n = self._segment_count(total - have)
        step = -(-(total - have) // n)
        segments = ([[0, have, have]] if have else []) + [
            [s, min(total, s + step), 0] for s in range(have, total, step)]
        with open(self.part, "ab") as f:
            f.truncate(total)
        meta = {"url": redact(url), "etag": etag, "size": total, "segments": segments}
        self._save_sidecar(meta)
        return meta

    def _parallel_meta(self, meta: dict, split: Optional["_SplitHere"]) -> Optional[dict]:
        """The segments to work on: from auto mode's first answer, from the sidecar (a resume), or after
        a one-byte probe (explicit connections); None when the server cannot do ranges."""
        if split is not None:
            return self._new_segments(split.url, self._total, split.resp.headers.get("ETag"), split.have)
        if meta.get("segments") and meta.get("size") and self.part.exists() \
                and self.part.stat().st_size == meta["size"]:
            self._total = meta["size"]
            if any(s[2] for s in meta["segments"]):
                self.resumed = True
            return meta
        probed = self._probe()
        if probed is None:
            return None
        url, total, etag = probed
        self._check_total(total, url)
        if total < 2 * MIN_SEGMENT:
            return None
        have = self.part.stat().st_size if self.part.exists() and meta.get("segments") is None else 0
        return self._new_segments(url, total, etag, min(have, total))

    def _fetch_parallel(self, meta: dict, split: Optional["_SplitHere"] = None) -> Optional[str]:
        """Parallel ranges; returns the URL used, or None when the server cannot do ranges (fall back)."""
        try:
            meta = self._parallel_meta(meta, split)
            if meta is None:
                return None
            segments = meta["segments"]
            # the sidecar keeps the URL masked (it is a file on disk): find the real one it stands for
            url = next((u for u in self.urls if redact(u) == meta.get("url")), self.urls[0])
            with self._lock:
                self._done = sum(s[2] for s in segments)
            self.urls = [url] + [u for u in self.urls if u != url]  # start with the URL that answered first
            todo = [s for s in segments if s[0] + s[2] < s[1]]
            handed = {id(todo[0]): split.resp} if split is not None and todo and todo[0][0] == split.have else {}
            errors = self._run_segments(todo, meta, handed)
        finally:
            if split is not None:
                split.resp.close()  # unused when nothing was left to fetch or the workers never started
        if errors:
            if any(isinstance(e, _RangeIgnored) for e in errors):
                self._discard_partial()
                self._stop.clear()
                with self._lock:
                    self._done = 0
                return None
            if any(isinstance(e, HtmlInsteadOfFile) for e in errors):
                self._discard_partial()
            raise errors[0]
        return url

    def _run_segments(self, todo: list, meta: dict, handed: dict) -> list:
        """One thread per segment, at most `connections` at a time; returns the errors the threads raised."""
        errors = []

        def work(seg):
            try:
                self._segment_worker(seg, meta, handed.get(id(seg)))
            except BaseException as exc:  # noqa: B036 - handed to the main thread
                errors.append(exc)
                self._stop.set()

        threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in todo]
        # more segments than connections only after a resume with a different N: run them in waves
        for i in range(0, len(threads), self.connections):
            wave = threads[i:i + self.connections]
            for t in wave:
                t.start()
            try:
                for t in wave:
                    while t.is_alive():
                        t.join(0.2)
            except KeyboardInterrupt:
                self._stop.set()
                for t in wave:
                    t.join()
                self._save_sidecar(meta)
                raise
            if errors:
                break
        return errors

    # ---- the whole job
    def _fetch_once(self) -> str:
        meta = self._load_sidecar()
        if meta.get("size") and self._total is None:
            self._total = meta["size"]
        with self._lock:
            self._done = self.part.stat().st_size if self.part.exists() and not meta.get("segments") else 0
        if self._total is not None:
            self._check_space(self._total)
        if (self.connections > 1 and not self.auto) or meta.get("segments"):
            used = self._fetch_parallel(meta)
            if used:
                return used
            meta = {}
            if self.part.exists() and self._load_sidecar().get("segments"):
                self._discard_partial()
        if self.part.exists() and not self.sidecar.exists():
            self._discard_partial()  # a part file nobody can vouch for
        try:
            return self._fetch_single(meta)
        except _SplitHere as split:
            used = self._fetch_parallel(meta, split)
            if used:
                return used
            self.auto = False  # a range came back whole: this server does not do ranges after all
            return self._fetch_single({})

    def run(self) -> DownloadResult:
        try:
            if self._already_there():
                return DownloadResult(self.dest, self.sha256, 0, False, self.urls[0], 0)
            self._make_cache_dir()
            with _locked(self.lock_file, self.lock_wait, self.dest.name):
                if self._already_there():  # placed by the run this one waited for
                    return DownloadResult(self.dest, self.sha256, 0, False, self.urls[0], 0)
                return self._run_locked()
        except OSError as exc:  # disk full, permissions, a folder in the way: a sentence, not a traceback
            where = exc.filename or self.cache_dir
            raise DownloadError(redact(f"Could not download {self.dest.name}: {where} could not be written "
                                       f"({exc.strerror or _short(exc)})."), ExitCode.USAGE) from None

    def _already_there(self) -> bool:
        return bool(self.sha256) and self.dest.is_file() and file_sha256(self.dest) == self.sha256

    def _make_cache_dir(self):
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            blocker = next((p for p in (self.cache_dir, *self.cache_dir.parents) if p.is_file()), None)
            if blocker is None:
                raise DownloadError(f"the download cache {self.cache_dir} could not be created "
                                    f"({exc.strerror or exc}).", ExitCode.USAGE) from None
            raise DownloadError(f"{blocker} is a file, not a folder, so the download cache cannot be kept in "
                                f"{self.cache_dir}.", ExitCode.USAGE) from None

    def _run_locked(self) -> DownloadResult:
        mismatches = 0
        while True:
            url = self._fetch_once()
            digest = file_sha256(self.part)
            if self.sha256 is None or digest == self.sha256:
                break
            self._discard_partial()
            mismatches += 1
            if mismatches >= 2:
                raise ChecksumMismatch(
                    f"{self.dest.name} from {redact(url)} does not match its published sha256 (got {digest[:16]}..., "
                    f"expected {self.sha256[:16]}...) even after downloading it again, so it was not used.")
            # refetch once from scratch, from the next mirror when there is one
            if len(self.urls) > 1:
                self.urls = [u for u in self.urls if u != url] + [url]
            with self._lock:
                self._done = 0
        self._place()
        return DownloadResult(self.dest, digest, self.bytes_fetched, self.resumed, url, self.attempts)

    def _place(self):
        """Move the verified part file to dest atomically (copy to a temp beside dest first across filesystems)."""
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(self.part, self.dest)
        except OSError:
            fd, tmp = tempfile.mkstemp(dir=self.dest.parent, prefix="." + self.dest.name, suffix=".tmp")
            os.close(fd)
            try:
                shutil.copyfile(self.part, tmp)
                os.replace(tmp, self.dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self.part.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)


def download(urls, dest, *, sha256=None, size=None, retries=8, timeout=15.0, connections=None, cache_dir=None,
             progress=None, expect_binary=False, session=None, max_size=MAX_SIZE, lock_wait=LOCK_WAIT,
             **tuning) -> DownloadResult:
    """Fetch `dest` from the first of `urls` that works; see ResumableDownload. `connections`: None = auto
    (parallel ranges for large files when the server does ranges), N = exactly N. `max_size`: the most bytes
    a file of unknown size may have. `lock_wait`: seconds to wait for another run of the same download.
    `tuning`: backoff, max_wait."""
    return ResumableDownload(urls, dest, sha256=sha256, size=size, retries=retries, timeout=timeout,
                             connections=connections, cache_dir=cache_dir, progress=progress,
                             expect_binary=expect_binary, session=session, max_size=max_size,
                             lock_wait=lock_wait, **tuning).run()
