"""One download in progress: what was asked (`Job`), how far it got (`Transfer`), and the one request all its
connections make, with the judging every answer needs before its bytes are written.

Servers are not trusted: a body never grows past the size the file should have (`size`, else what the server
announced, else `max_size`), a compressed answer is refused rather than unpacked (its bytes are not the file),
an error status or a web page is never written, and a full disk is said before the first byte is.
"""
import random
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import requests
import urllib3

from fomm_doctor.errors import ExitCode
from fomm_doctor.net.digests import is_sha256
from fomm_doctor.net.failures import DownloadError, HtmlInsteadOfFile, Retryable, UrlDead, short_reason
from fomm_doctor.net.headers import parse_content_range, parse_length, range_request, retry_after_seconds
from fomm_doctor.net.partfile import PartFile
from fomm_doctor.net.redact import redact
from fomm_doctor.net.schemes import FETCHABLE, HTTP_ONLY, RefusedRedirect, scheme_of
from fomm_doctor.units import byte_size

CHUNK = 64 * 1024
MIN_SEGMENT = 256 * 1024  # smaller files are not worth splitting between connections
AUTO_MIN_SIZE = 8 * 1024 * 1024  # auto mode splits files from this size up; below it one connection is enough
AUTO_CONNECTIONS = 4  # enough to outrun a per-connection throttle without hammering a mirror
MAX_AUTO_CONNECTIONS = 16  # the most auto mode grows to while throughput grows (aria2's own maximum per server)
# A file whose size nobody published is cut off at the cap of what it is (a server may send forever); the
# caller passes the cap of what it fetches as `max_size`. Pages have their own, far smaller cap (pages.py).
WHEEL_CAP = 4 * 1024 ** 3  # the biggest wheels (CUDA builds of torch, CUDA bundled) are about 2.5 GB
CHECKPOINT_CAP = 2 * 1024 ** 3  # the published checkpoints are 0.3 to 0.8 GB
MAX_SIZE = WHEEL_CAP  # a caller that does not say: the biggest kind of file fetched
LOCK_WAIT = 5.0  # seconds a second run of the same download waits for the first before saying so


@dataclass
class Transfer:
    """One run of a download so far, shared by its connections: requests made, bytes that came over the
    network, whether a request continued a partial file, and how much of the file (`total` bytes, None while
    unknown) is on disk (`done`). `progress(done, total)` hears of every block."""
    total: Optional[int] = None
    done: int = 0
    attempts: int = 0
    bytes_fetched: int = 0
    resumed: bool = False
    connections: int = 1  # the most connections used at once
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


def blocks(resp):
    """The body as it came over the wire: never un-gzipped (requests' iter_content would unpack a compressed
    body, so 100 kB could become 100 GB), network errors as Retryable. Write errors are the caller's."""
    try:
        yield from resp.raw.stream(CHUNK, decode_content=False)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise Retryable(short_reason(exc)) from None


class Job:
    """One file, several candidate URLs, and everything its connections share. `urls` is reordered as mirrors
    prove themselves; `auto` turns off when a server turns out not to do ranges."""

    def __init__(self, urls, dest, *, cache_dir, sha256=None, size=None, retries=8, timeout=15.0,
                 connections=None, progress: Optional[Callable] = None, expect_binary=False, session=None,
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
        self.size, self.max_size, self.lock_wait = size, max_size, lock_wait
        self.retries = max(1, int(retries))
        self.timeout = float(timeout)
        self.auto = connections is None
        self.connections = min(AUTO_CONNECTIONS, MAX_AUTO_CONNECTIONS) if self.auto else max(1, int(connections))
        self.cache_dir = Path(cache_dir)
        self.expect_binary = expect_binary
        self.session = session or requests.Session()
        self.backoff = backoff  # first wait between retries, doubled each time, capped at max_wait
        self.max_wait = max_wait
        self.part = PartFile(self.urls, self.sha256, self.cache_dir)
        self.stop = threading.Event()
        self.t = Transfer(total=size, progress=progress)

    def wait(self, failures: int, hint: Optional[float]):
        """Back off before a retry: the server's hint, else doubling from `backoff` with jitter."""
        delay = hint if hint is not None else self.backoff * (2 ** (failures - 1))
        delay = min(self.max_wait, max(0.0, delay)) * (1.0 if hint is not None else random.uniform(0.8, 1.2))
        if self.stop.wait(delay):
            raise KeyboardInterrupt

    def get(self, url: str, start: int = 0, end: Optional[int] = None, if_range: Optional[str] = None,
            ranged: bool = False):
        """GET with a Range header when `start`/`end` ask for part of the file, or `ranged` asks for `bytes=0-`
        (auto mode's way of learning from the first answer whether the server does ranges). A 416 is returned
        for the caller to judge; any other answer that is not (part of) the file raises. A URL, or a redirect,
        to anything but http(s) is UrlDead at once: no retry turns file:// into a download."""
        if scheme_of(url) not in FETCHABLE:
            raise UrlDead(f"'{redact(url)}' is not an http(s) URL")
        self.t.count_attempt()
        try:
            resp = self.session.get(url, headers=range_request(start, end, if_range, ranged), stream=True,
                                    timeout=(self.timeout, self.timeout), allow_redirects=True, hooks=HTTP_ONLY)
        except RefusedRedirect as exc:
            raise UrlDead(str(exc)) from None
        except (requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL,
                requests.exceptions.MissingSchema) as exc:  # a redirect to a URL no request can be made of
            raise UrlDead(f"{redact(url)} leads to a URL that cannot be fetched ({short_reason(exc)})") from None
        except requests.RequestException as exc:
            raise Retryable(short_reason(exc)) from None
        if resp.status_code != 416:
            self._refuse_non_file(resp, url)
        return resp

    def _refuse_non_file(self, resp, url: str):
        """Close the answer and raise when it is an error status, a web page or a compressed body."""
        code = resp.status_code
        if code == 429 or code >= 500:
            wait = retry_after_seconds(resp.headers.get("Retry-After"))
            resp.close()
            raise Retryable(f"the server answered HTTP {code}", wait)
        if code >= 400:
            resp.close()
            raise UrlDead(f"the server answered HTTP {code}")
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
            raise UrlDead(f"{redact(url)} answered a compressed body (Content-Encoding: {encoding[:40]}) where "
                          f"the file itself was asked for")

    @staticmethod
    def range_of(resp, url: str) -> tuple:
        """(start, end, total or None) of a 206 answer; UrlDead when its Content-Range cannot be read."""
        parsed = parse_content_range(resp.headers.get("Content-Range", ""))
        if parsed is None:
            raise UrlDead(f"{redact(url)} answered part of the file without a readable Content-Range")
        return parsed

    def total_from(self, resp, url: str = "") -> Optional[int]:
        if resp.status_code == 206:
            return self.range_of(resp, url)[2]
        if resp.status_code == 200:
            return parse_length(resp.headers.get("Content-Length"))
        return None

    def check_total(self, total: Optional[int], url: str):
        """Take the size an answer announces, unless it contradicts the expected one or the cap (UrlDead).
        Exact byte counts here: two sizes a few bytes apart would read the same rounded."""
        if total is None:
            return
        if self.size is not None and total != self.size:
            raise UrlDead(f"{redact(url)} serves {total} bytes where {self.size} were expected")
        if self.size is None and total > self.max_size:
            raise UrlDead(f"{redact(url)} announces {total:,} bytes, more than the {self.max_size:,} a download "
                          f"may have")
        self.t.total = total
        self.check_space(total)

    def check_space(self, total: int):
        """Fail before writing when the rest of the file cannot fit on the cache folder's disk."""
        need = self.t.need(total)
        free = shutil.disk_usage(self.cache_dir).free
        if need > free:
            raise DownloadError(f"{self.dest.name} needs {byte_size(need)} in {self.cache_dir} but only "
                                f"{byte_size(free)} is free there; free some space or choose another cache "
                                f"folder.", ExitCode.USAGE)

    def segment_count(self, span: int) -> int:
        """Connections for `span` bytes: no segment under MIN_SEGMENT, and auto mode never above its cap."""
        n = min(self.connections, span // MIN_SEGMENT)
        return max(1, min(n, MAX_AUTO_CONNECTIONS) if self.auto else n)

    def large(self) -> bool:
        """Auto mode and a file big enough to split between connections."""
        return self.auto and self.t.total is not None and self.t.total >= AUTO_MIN_SIZE
