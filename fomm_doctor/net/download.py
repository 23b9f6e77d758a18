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
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable, Optional

import requests
import urllib3

from fomm_core.cache import user_cache_dir
from fomm_doctor.errors import ExitCode, NetworkError
from fomm_doctor.oslock import locked
from fomm_doctor.net.redact import redact

CHUNK = 64 * 1024
MIN_SEGMENT = 256 * 1024  # smaller files are not worth splitting between connections
SIDECAR_EVERY = 1024 * 1024  # parallel mode: write the done-ranges to disk about every MiB
AUTO_MIN_SIZE = 8 * 1024 * 1024  # auto mode splits files from this size up; below it one connection is enough
AUTO_CONNECTIONS = 4  # enough to outrun a per-connection throttle without hammering a mirror
MAX_AUTO_CONNECTIONS = 8
MAX_SIZE = 64 * 1024 ** 3  # a file of unknown size is cut off here: far above any wheel or checkpoint
LOCK_WAIT = 5.0  # seconds a second run of the same download waits for the first before saying so

class DownloadError(NetworkError):
    """A download failed for good (every mirror tried); the message says why in one sentence. `reason`: the
    few words on why, without the file name or advice, for a caller that writes its own sentence;
    `retryable`: whether running the same command again can help (a dropped connection; not a 404)."""

    def __init__(self, message: str, exit_code: Optional[ExitCode] = None, *, reason: Optional[str] = None,
                 retryable: bool = False):
        super().__init__(message, exit_code)
        self.reason = reason or message
        self.retryable = retryable


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


@dataclass
class _Transfer:
    """One run of a download so far, shared by its connections: requests made, bytes that came over the
    network, whether a request continued a partial file, and how much of the file (`total` bytes, None while
    unknown) is on disk (`done`). `progress(done, total)` hears of every block."""
    total: Optional[int] = None
    done: int = 0
    attempts: int = 0
    bytes_fetched: int = 0
    resumed: bool = False
    progress: Optional[Callable] = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_attempt(self):
        with self.lock:
            self.attempts += 1

    def advance(self, n: int):
        with self.lock:
            self.bytes_fetched += n
            self.done += n
            done, total = self.done, self.total
        if self.progress:
            self.progress(done, total)

    def set_done(self, n: int):
        with self.lock:
            self.done = n

    def add_done(self, n: int):
        with self.lock:
            self.done += n

    def need(self, total: int) -> int:
        """Bytes still to come for a file of `total` bytes."""
        with self.lock:
            return max(0, total - self.done)


@dataclass
class _Tries:
    """Where one range's worker stands: which URL it asks, and how many times in a row it failed there."""
    url_index: int = 0
    failures: int = 0


def _request_headers(start: int, end: Optional[int], if_range: Optional[str], ranged: bool) -> dict:
    headers = {"Accept-Encoding": "identity"}  # byte offsets must mean file offsets
    if start or end is not None or ranged:
        headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        if if_range:
            headers["If-Range"] = if_range
    return headers


def default_cache_dir() -> Path:
    """Per-user download cache: `downloads` in fomm_core.cache's user cache folder."""
    return user_cache_dir("downloads")


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
    for path in (part, sidecar):
        if not stays_in_folder(path, cache_dir):
            raise DownloadError(f"{path} leads outside the cache folder {cache_dir} (a link?), so it was not "
                                f"used; delete it and run this again.", ExitCode.USAGE)
    return part, sidecar


def stays_in_folder(path, folder) -> bool:
    """Whether `path`, links followed, is a file directly in `folder` (links followed too): a name or a link
    that leads elsewhere is never written through."""
    return os.path.dirname(os.path.realpath(path)) == os.path.realpath(folder)


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
    """file_digest's sha256, the digest nearly every caller wants."""
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
    """The first bytes of a web page (a sign-in, quota or confirmation page), not of a file: what a download
    checks its first block with and what `checkpoints add` checks a saved file with."""
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:15].lower()
    return start.startswith((b"<!doctype", b"<html", b"<head")) or b"<html" in head[:512].lower()


def short_reason(exc: BaseException) -> str:
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
        raise _Retryable(short_reason(exc)) from None


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
        self.expect_binary = expect_binary
        self.session = session or requests.Session()
        self.backoff = backoff  # first wait between retries, doubled each time, capped at max_wait
        self.max_wait = max_wait
        self.part, self.sidecar = partial_paths(self.urls, self.sha256, self.cache_dir)
        self.lock_file = self.part.with_suffix(".lock")
        self._lock = threading.Lock()  # one sidecar write at a time
        self._stop = threading.Event()
        self.t = _Transfer(total=size, progress=progress)

    # ---- small helpers
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
        if not isinstance(meta, dict) or not isinstance(meta.get("size"), (int, type(None))):
            return {}
        if "segments" in meta:
            meta["segments"] = Segment.read_all(meta["segments"])
            if meta["segments"] is None:
                return {}  # ranges nobody can read: start over rather than guess
        return meta

    def _save_sidecar(self, meta: dict):
        data = dict(meta)
        if "segments" in data:
            data["segments"] = [seg.as_list() for seg in data["segments"]]
        tmp = self.sidecar.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
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
        (auto mode's way of learning from the first answer whether the server does ranges). A 416 is returned
        for the caller to judge; any other answer that is not (part of) the file raises."""
        self.t.count_attempt()
        try:
            resp = self.session.get(url, headers=_request_headers(start, end, if_range, ranged), stream=True,
                                    timeout=(self.timeout, self.timeout), allow_redirects=True)
        except requests.RequestException as exc:
            raise _Retryable(short_reason(exc)) from None
        if resp.status_code != 416:
            self._refuse_non_file(resp, url)
        return resp

    def _refuse_non_file(self, resp, url: str):
        """Close the answer and raise when it is an error status, a web page or a compressed body."""
        code = resp.status_code
        if code == 429 or code >= 500:
            wait = retry_after_seconds(resp.headers.get("Retry-After"))
            resp.close()
            raise _Retryable(f"the server answered HTTP {code}", wait)
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
        self.t.total = total
        self._check_space(total)

    def _check_space(self, total: int):
        """Fail before writing when the rest of the file cannot fit on the cache folder's disk."""
        need = self.t.need(total)
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
        return self.auto and self.t.total is not None and self.t.total >= AUTO_MIN_SIZE

    def _splittable(self, resp, have: int, asked_range: bool) -> bool:
        """Auto mode: split a large file when the server does ranges. A 206 proves it; for a first request
        made without Range (size unknown) `Accept-Ranges: bytes` is enough to try, the other ranges confirm it.
        A 200 answer to a Range request, or `Accept-Ranges: none`, means one connection."""
        if not self._large() or self._segment_count(self.t.total - have) < 2:
            return False
        accept = resp.headers.get("Accept-Ranges", "").lower()
        if "none" in accept:
            return False
        if resp.status_code == 206:
            return True
        return not asked_range and have == 0 and "bytes" in accept

    # ---- one connection, streaming to the end of the part file
    def _part_size(self) -> int:
        return self.part.stat().st_size if self.part.exists() else 0

    def _single_attempt(self, url: str, meta: dict) -> bool:
        """Fetch from where the part file ends. True when the file is complete. Raises _Retryable/_UrlDead,
        or _SplitHere (auto mode) with the open answer when the file should come in parallel ranges."""
        have = self._part_size()
        if self.t.total is not None and have > self.t.total:
            self._discard_partial()
            have = 0
        if have and self.t.total is not None and have == self.t.total:
            return True
        if_range = meta.get("etag") if meta.get("url") == redact(url) else None
        asked_range = bool(have) or self._large()  # a known large size: ask `bytes=0-` to learn about ranges
        resp = self._get(url, start=have, if_range=if_range, ranged=asked_range)
        if resp.status_code == 416:
            return self._resume_refused(resp, have)
        if self._answer_splits(url, resp, have, asked_range):
            raise _SplitHere(url, resp, have)
        return self._stream_single(url, resp, have)

    def _resume_refused(self, resp, have: int) -> bool:
        """A 416: nothing left past `have` (complete, True) or the partial is bogus: start over next time."""
        with resp:
            if have and self.t.total in (None, have):
                return True
            self._discard_partial()
            raise _Retryable("the server refused the resume range")

    def _answer_splits(self, url: str, resp, have: int, asked_range: bool) -> bool:
        """Check the first answer's size and range (closing it when they are wrong); True when auto mode should
        take it as the first of parallel ranges."""
        try:
            self._check_total(self._total_from(resp, url), url)
            if resp.status_code == 206 and self._range_of(resp, url)[0] != have:
                self._discard_partial()
                raise _Retryable("the server answered a different range than asked")
            return self._splittable(resp, have, asked_range)
        except BaseException:
            resp.close()
            raise

    def _stream_single(self, url: str, resp, have: int) -> bool:
        """Write the answer to the part file: appended after `have` for a 206, from byte 0 for a 200."""
        with resp:
            if resp.status_code == 206:
                if have:
                    self.t.resumed = True
                mode = "ab"
            else:  # 200: the whole file, from the first byte (the server ignores Range, or nothing to resume)
                if have:
                    self.t.add_done(-have)
                    have = 0
                mode = "wb"
            meta = {"url": redact(url), "etag": resp.headers.get("ETag"), "size": self.t.total,
                    "last_modified": resp.headers.get("Last-Modified")}
            self._save_sidecar(meta)
            try:
                self._write_body(url, resp, have, mode)
            except (HtmlInsteadOfFile, _UrlDead):
                self._discard_partial()
                raise
        got = self.part.stat().st_size
        if self.t.total is not None and got < self.t.total:
            raise _Retryable("the connection closed before the end of the file")
        return True

    def _end_of(self, resp, url: str) -> int:
        """Where this answer must stop: the end of its range, the file's size, or `max_size` when nobody knows."""
        end = self._range_of(resp, url)[1] + 1 if resp.status_code == 206 else self.max_size
        return end if self.t.total is None else min(end, self.t.total)

    def _too_long(self, url: str, limit: int, resp) -> "_UrlDead":
        if resp.status_code == 206 or parse_length(resp.headers.get("Content-Length")) is not None:
            return _UrlDead(f"{redact(url)} sends more than the {limit:,} bytes it announced")
        if self.t.total is not None:
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
                self.t.advance(len(block))
                if self._stop.is_set():
                    raise KeyboardInterrupt

    def _fetch_single(self, meta: dict) -> str:
        """Loop over URLs and attempts until the part file is complete; returns the URL that finished it."""
        last, retryable = "no attempt was made", False
        for url in self.urls:
            failures = 0
            high = self._part_size()
            while failures < self.retries:
                try:
                    if self._single_attempt(url, meta):
                        return url
                except _UrlDead as exc:
                    last = str(exc)
                    break
                except _Retryable as exc:
                    last, retryable = str(exc), True
                    now = self._part_size()
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
        raise self._gave_up(redact(last), retryable)

    def _gave_up(self, reason: str, retryable: bool) -> DownloadError:
        """The final sentence; it says to run again only when a failure was of the kind that passes."""
        advice = "; run the same command again to continue where it stopped" if retryable else ""
        return DownloadError(f"Could not download {self.dest.name}: {reason} (tried {len(self.urls)} "
                             f"source{'s' if len(self.urls) > 1 else ''}, {self.t.attempts} requests){advice}.",
                             reason=reason, retryable=retryable)

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

    def _segment_worker(self, seg: "Segment", meta: dict, resp=None):
        """Fetch the segment until done, writing at its offset. `resp`: an answer already open at this range's
        first byte (auto mode's first request), used before asking for more."""
        tries = _Tries()
        with open(self.part, "r+b") as f:
            while seg.left > 0:
                if self._stop.is_set():
                    raise KeyboardInterrupt
                handed, resp = resp, None
                before = seg.done
                try:
                    self._fetch_range(f, seg, meta, self.urls[tries.url_index], handed)
                except _Retryable as exc:
                    self._range_failed(tries, exc, progressed=seg.done > before)
                except _UrlDead as exc:
                    self._next_url(tries, exc, retryable=False)
                finally:
                    f.flush()
                    self._save_segments(meta)

    def _fetch_range(self, f, seg: "Segment", meta: dict, url: str, handed):
        """One request for the rest of the segment (or the handed-over answer), streamed to its offset."""
        pos = seg.pos
        answer = handed if handed is not None else self._get(url, start=pos, end=seg.end - 1)
        with answer:
            self._check_range_answer(answer, pos, url, handed is not None)
            if pos > seg.start:
                self.t.resumed = True
            self._stream_range(f, answer, seg, meta, url)
        if seg.left > 0:
            raise _Retryable("the connection closed before the end of its range")

    def _range_failed(self, tries: "_Tries", exc: "_Retryable", progressed: bool):
        """Wait and retry the range; after `retries` failures without progress, the next URL."""
        tries.failures = 0 if progressed else tries.failures + 1
        if tries.failures >= self.retries:
            self._next_url(tries, exc, retryable=True)
        elif tries.failures or exc.wait:  # a drop after progress reconnects at once
            self._wait(max(1, tries.failures), exc.wait)

    def _next_url(self, tries: "_Tries", exc: Exception, retryable: bool):
        """Move the range on to the next URL; a DownloadError when none is left."""
        tries.url_index, tries.failures = tries.url_index + 1, 0
        if tries.url_index < len(self.urls):
            return
        if retryable:
            raise DownloadError(f"Could not download {self.dest.name}: {exc} on every source; run the same "
                                f"command again to continue where it stopped.", reason=f"{exc} on every source",
                                retryable=True)
        raise DownloadError(f"Could not download {self.dest.name}: {exc}.", reason=str(exc))

    def _check_range_answer(self, resp, pos: int, url: str, handed: bool):
        """A range must come back as 206 from `pos`; a handed-over first answer may be the whole file (200)."""
        ranged = resp.status_code == 206 and self._range_of(resp, url)[0] == pos
        if not ranged and not (handed and pos == 0 and resp.status_code == 200):
            raise _RangeIgnored()
        self._check_total(self._total_from(resp, url), url)

    def _stream_range(self, f, resp, seg: "Segment", meta: dict, url: str):
        """Write the answer at the segment's offset until the segment is full or the answer ends."""
        f.seek(seg.pos)
        unsaved = 0
        check_html = self.expect_binary and seg.pos == 0
        for block in _blocks(resp):
            if check_html and looks_like_html(block):
                raise HtmlInsteadOfFile(block[:4096].decode("utf-8", "replace"), url)
            check_html = False
            block = block[:seg.left]
            f.write(block)
            seg.done += len(block)
            unsaved += len(block)
            self.t.advance(len(block))
            if unsaved >= SIDECAR_EVERY:
                f.flush()
                self._save_segments(meta)
                unsaved = 0
            if self._stop.is_set():
                raise KeyboardInterrupt
            if seg.left <= 0:
                break  # an open-ended first answer runs on past this range: the next ones are fetched apart

    def _save_segments(self, meta: dict):
        with self._lock:
            self._save_sidecar(meta)

    def _new_segments(self, url: str, total: int, etag: Optional[str], have: int) -> dict:
        """Split bytes have..total into ranges ([0, have) is already on disk), preallocate, record them."""
        n = self._segment_count(total - have)
        step = -(-(total - have) // n)
        segments = ([Segment(0, have, have)] if have else []) + [
            Segment(s, min(total, s + step)) for s in range(have, total, step)]
        with open(self.part, "ab") as f:
            f.truncate(total)
        meta = {"url": redact(url), "etag": etag, "size": total, "segments": segments}
        self._save_sidecar(meta)
        return meta

    def _parallel_meta(self, meta: dict, split: Optional["_SplitHere"]) -> Optional[dict]:
        """The segments to work on: from auto mode's first answer, from the sidecar (a resume), or after
        a one-byte probe (explicit connections); None when the server cannot do ranges."""
        if split is not None:
            return self._new_segments(split.url, self.t.total, split.resp.headers.get("ETag"), split.have)
        if meta.get("segments") and meta.get("size") and self._part_size() == meta["size"]:
            self.t.total = meta["size"]
            if any(s.done for s in meta["segments"]):
                self.t.resumed = True
            return meta
        probed = self._probe()
        if probed is None:
            return None
        url, total, etag = probed
        self._check_total(total, url)
        if total < 2 * MIN_SEGMENT:
            return None
        have = self._part_size() if meta.get("segments") is None else 0
        return self._new_segments(url, total, etag, min(have, total))

    def _fetch_parallel(self, meta: dict, split: Optional["_SplitHere"] = None) -> Optional[str]:
        """Parallel ranges; returns the URL used, or None when the server cannot do ranges (fall back)."""
        try:
            meta = self._parallel_meta(meta, split)
            if meta is None:
                return None
            url = self._lead_with(meta)
            todo = [s for s in meta["segments"] if s.left > 0]
            handed = {id(todo[0]): split.resp} if split is not None and todo and todo[0].start == split.have else {}
            errors = self._run_segments(todo, meta, handed)
        finally:
            if split is not None:
                split.resp.close()  # unused when nothing was left to fetch or the workers never started
        return self._after_segments(errors, url)

    def _lead_with(self, meta: dict) -> str:
        """The URL the segments came from, first in line: the sidecar keeps it masked (it is a file on disk),
        so find the real one it stands for."""
        url = next((u for u in self.urls if redact(u) == meta.get("url")), self.urls[0])
        self.t.set_done(sum(s.done for s in meta["segments"]))
        self.urls = [url] + [u for u in self.urls if u != url]
        return url

    def _after_segments(self, errors: list, url: str) -> Optional[str]:
        """The URL when every range arrived; None (start over with one connection) when the server ignored a
        range; else the first error, raised."""
        if not errors:
            return url
        if any(isinstance(e, _RangeIgnored) for e in errors):
            self._discard_partial()
            self._stop.clear()
            self.t.set_done(0)
            return None
        if any(isinstance(e, HtmlInsteadOfFile) for e in errors):
            self._discard_partial()
        raise errors[0]

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
        self._resume_counts(meta)
        if (self.connections > 1 and not self.auto) or meta.get("segments"):
            used = self._fetch_parallel(meta)
            if used:
                return used
            meta = {}
            if self.part.exists() and self._load_sidecar().get("segments"):
                self._discard_partial()
        if self.part.exists() and not self.sidecar.exists():
            self._discard_partial()  # a part file nobody can vouch for
        return self._fetch_single_or_split(meta)

    def _resume_counts(self, meta: dict):
        """Size and bytes done from the sidecar and part file of an earlier run; fail early on a full disk."""
        if meta.get("size") and self.t.total is None:
            self.t.total = meta["size"]
        self.t.set_done(self._part_size() if not meta.get("segments") else 0)
        if self.t.total is not None:
            self._check_space(self.t.total)

    def _fetch_single_or_split(self, meta: dict) -> str:
        """One connection, unless auto mode's first answer shows the file should come in parallel ranges."""
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
            busy = (lambda holder: DownloadError(f"another download of {self.dest.name} is running ({holder}); "
                                                 f"let it finish, then run this again.", ExitCode.USAGE,
                                                 retryable=True))
            with locked(self.lock_file, self.lock_wait, busy):
                if self._already_there():  # placed by the run this one waited for
                    return DownloadResult(self.dest, self.sha256, 0, False, self.urls[0], 0)
                return self._run_locked()
        except OSError as exc:  # disk full, permissions, a folder in the way: a sentence, not a traceback
            where = exc.filename or self.cache_dir
            raise DownloadError(redact(f"Could not download {self.dest.name}: {where} could not be written "
                                       f"({exc.strerror or short_reason(exc)})."), ExitCode.USAGE) from None

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
            self.t.set_done(0)
        self._place()
        return DownloadResult(self.dest, digest, self.t.bytes_fetched, self.t.resumed, url, self.t.attempts)

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
