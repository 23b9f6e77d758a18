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

No terminal output here: `progress(bytes_done, total)` is called as bytes arrive; the CLI draws the bar.
"""
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable, Optional

import requests

from fomm_doctor.errors import UserError

CHUNK = 64 * 1024
MIN_SEGMENT = 256 * 1024  # smaller files are not worth splitting between connections
SIDECAR_EVERY = 1024 * 1024  # parallel mode: write the done-ranges to disk about every MiB
AUTO_MIN_SIZE = 8 * 1024 * 1024  # auto mode splits files from this size up; below it one connection is enough
AUTO_CONNECTIONS = 4  # enough to outrun a per-connection throttle without hammering a mirror
MAX_AUTO_CONNECTIONS = 8


class DownloadError(UserError):
    """A download failed for good (every mirror tried); the message says why in one sentence."""


class ChecksumMismatch(DownloadError):
    """The bytes arrived but are not the file we asked for, twice."""


class HtmlInsteadOfFile(DownloadError):
    """The server answered a web page (a login, quota or "confirm download" page) instead of the file."""

    def __init__(self, response_text_head: str, url: str):
        super().__init__(f"{url} answered a web page instead of the file (a sign-in, quota or confirmation page).")
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


def partial_paths(urls: list, sha256: Optional[str], cache_dir: Path):
    """(part file, sidecar) for a download: keyed by the expected sha256 (so any mirror can continue it)
    or by the first URL's hash."""
    key = sha256.lower() if sha256 else "url-" + hashlib.sha256(urls[0].encode()).hexdigest()[:32]
    return cache_dir / f"{key}.part", cache_dir / f"{key}.part.json"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            h.update(block)
    return h.hexdigest()


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Retry-After as seconds: either a number or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
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
    return text.splitlines()[0][:160] if text else type(exc).__name__


class ResumableDownload:
    """One file, several candidate URLs. `run()` returns a DownloadResult or raises a DownloadError."""

    def __init__(self, urls, dest, *, sha256=None, size=None, retries=8, timeout=15.0, connections=None,
                 cache_dir=None, progress: Optional[Callable] = None, expect_binary=False, session=None,
                 backoff=0.5, max_wait=30.0):
        self.urls = [u for u in ([urls] if isinstance(urls, str) else list(urls)) if u]
        if not self.urls:
            raise ValueError("no URL to download from")
        self.dest = Path(dest)
        self.sha256 = sha256.lower() if sha256 else None
        self.size = size
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
            return json.loads(self.sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

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
            head = next(resp.iter_content(4096), b"")
            resp.close()
            raise HtmlInsteadOfFile(head.decode("utf-8", "replace"), url)
        return resp

    def _total_from(self, resp) -> Optional[int]:
        cr = resp.headers.get("Content-Range", "")
        if resp.status_code == 206 and "/" in cr and not cr.endswith("/*"):
            return int(cr.rsplit("/", 1)[1])
        if resp.status_code == 200 and resp.headers.get("Content-Length", "").isdigit():
            return int(resp.headers["Content-Length"])
        return None

    def _check_total(self, total: Optional[int], url: str):
        if total is not None and self.size is not None and total != self.size:
            raise _UrlDead(f"{url} serves {total} bytes where {self.size} were expected")
        if total is not None:
            with self._lock:
                self._total = total

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
        if_range = meta.get("etag") if meta.get("url") == url else None
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
            self._check_total(self._total_from(resp), url)
            if resp.status_code == 206 and not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
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
            meta = {"url": url, "etag": resp.headers.get("ETag"), "size": self._total,
                    "last_modified": resp.headers.get("Last-Modified")}
            self._save_sidecar(meta)
            first = not have
            try:
                with open(self.part, mode) as f:
                    for block in resp.iter_content(CHUNK):
                        if first and self.expect_binary and looks_like_html(block):
                            raise HtmlInsteadOfFile(block[:4096].decode("utf-8", "replace"), url)
                        first = False
                        f.write(block)
                        self._advance(len(block))
                        if self._stop.is_set():
                            raise KeyboardInterrupt
            except requests.RequestException as exc:
                raise _Retryable(_short(exc)) from None
            except HtmlInsteadOfFile:
                self._discard_partial()
                raise
        got = self.part.stat().st_size
        if self._total is not None and got < self._total:
            raise _Retryable("the connection closed before the end of the file")
        return True

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
        raise DownloadError(f"Could not download {self.dest.name}: {last} (tried {len(self.urls)} "
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
                    if resp.status_code == 206:
                        total = self._total_from(resp)
                        if total is not None and (self.size is None or total == self.size):
                            return url, total, resp.headers.get("ETag")
                    return None
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
        ranged = resp.status_code == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {pos}-")
        if not ranged and not (handed and pos == 0 and resp.status_code == 200):
            raise _RangeIgnored()
        self._check_total(self._total_from(resp), url)

    def _stream_range(self, f, resp, seg: list, meta: dict, url: str):
        """Write the answer at the segment's offset until the segment is full or the answer ends."""
        f.seek(seg[0] + seg[2])
        unsaved = 0
        check_html = self.expect_binary and seg[0] + seg[2] == 0
        try:
            for block in resp.iter_content(CHUNK):
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
        except requests.RequestException as exc:
            raise _Retryable(_short(exc)) from None

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
        meta = {"url": url, "etag": etag, "size": total, "segments": segments}
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
            url = meta.get("url", self.urls[0])
            with self._lock:
                self._done = sum(s[2] for s in segments)
            if url in self.urls:  # start with the URL that answered first
                self.urls = [url] + [u for u in self.urls if u != url]
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
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        meta = self._load_sidecar()
        if meta.get("size") and self._total is None:
            self._total = meta["size"]
        with self._lock:
            self._done = self.part.stat().st_size if self.part.exists() and not meta.get("segments") else 0
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
        if self.sha256 and self.dest.is_file() and file_sha256(self.dest) == self.sha256:
            return DownloadResult(self.dest, self.sha256, 0, False, self.urls[0], 0)  # already there and right
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
                    f"{self.dest.name} from {url} does not match its published sha256 (got {digest[:16]}..., "
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
             progress=None, expect_binary=False, session=None, **tuning) -> DownloadResult:
    """Fetch `dest` from the first of `urls` that works; see ResumableDownload. `connections`: None = auto
    (parallel ranges for large files when the server does ranges), N = exactly N. `tuning`: backoff, max_wait."""
    return ResumableDownload(urls, dest, sha256=sha256, size=size, retries=retries, timeout=timeout,
                             connections=connections, cache_dir=cache_dir, progress=progress,
                             expect_binary=expect_binary, session=session, **tuning).run()
