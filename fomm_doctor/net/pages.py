"""Small answers from the network, read with a size cap and an overall deadline.

Index pages, Google Drive listings and confirmation pages, the Yandex Disk API, PEP 658 metadata: all are
small, and all come from servers we do not control. A socket timeout alone never cuts off a server that sends
one byte every half second, and `resp.text` reads an endless body until memory runs out, so every such answer
goes through `read_page`:

    page = read_page(url, max_bytes=PAGE_LIMIT, deadline_s=60, session=session)
    page.status, page.url, page.headers, page.body, page.text

The body is read raw (a gzip answer is unpacked here, counting the unpacked bytes against the cap, so a
small compressed body cannot grow into gigabytes). The deadline covers the headers as well as the body (a
server can trickle either). Anything that stops the read — a malformed URL, connection errors, the cap, the
deadline, a cut compressed body — is a `PageError` whose message is one sentence with the URL's credentials
masked.
Redirects are followed by requests, which drops an Authorization header when the host changes; a redirect to
anything but http(s) (file://...) is a PageError at once, never followed.
Files (wheels, checkpoints) are not pages: they go through `download.py`, which resumes and verifies.
"""
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Optional

import requests
import urllib3

from fomm_doctor.errors import NetworkError
from fomm_doctor.net.failures import short_reason
from fomm_doctor.net.headers import parse_length
from fomm_doctor.net.redact import redact
from fomm_doctor.net.schemes import HTTP_ONLY, RefusedRedirect

PAGE_LIMIT = 32 * 1024 * 1024  # the torch project page on PyPI is ~10 MB of JSON; nothing we read is bigger
CHUNK = 64 * 1024
DEFAULT_DEADLINE = 60.0


class PageError(NetworkError):
    """A page could not be read: the message is one sentence, credentials masked. `status` when one came."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


@dataclass
class Page:
    url: str  # after redirects
    status: int
    headers: dict = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def text(self) -> str:
        """The body decoded with the charset the server named (UTF-8 when none or unknown); never raises."""
        ctype = self.headers.get("Content-Type", "") or ""
        charset = "utf-8"
        for part in ctype.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip("\"' ")
        try:
            return self.body.decode(charset, "replace")
        except LookupError:
            return self.body.decode("utf-8", "replace")

    def json(self):
        """The body as JSON; a PageError (one sentence) when it is not."""
        import json
        try:
            return json.loads(self.body.decode("utf-8-sig", "replace"))
        except ValueError:
            raise PageError(f"{redact(self.url)} did not answer JSON.", self.status) from None


def _decoder(encoding: str):
    """A zlib decompressor for a Content-Encoding we can unpack under a cap; None for identity."""
    encoding = (encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise ValueError(encoding)


def read_page(url: str, *, session=None, headers: Optional[dict] = None, max_bytes: int = PAGE_LIMIT,
              deadline_s: float = DEFAULT_DEADLINE, timeout: float = 15.0, method: str = "GET",
              data=None) -> Page:
    """GET (or POST with `data`) `url` and read the whole answer, at most `max_bytes` (unpacked) within
    `deadline_s` seconds from the first byte asked. Any HTTP status is returned; the caller judges it."""
    own = session is None
    session = session or requests.Session()
    hdrs = {"Accept-Encoding": "gzip, deflate, identity"}
    hdrs.update(headers or {})
    ends_at = time.monotonic() + deadline_s
    late = f"{redact(url)} was still sending after {deadline_s:g} s, so it was cut off."
    try:
        resp = _ask(session, ends_at, deadline_s, method=method, url=url, headers=hdrs, data=data, stream=True,
                    timeout=(timeout, min(timeout, deadline_s)), hooks=HTTP_ONLY)
        with resp:
            return _read_body(resp, url, max_bytes, ends_at, late)
    finally:
        if own:
            session.close()


def _ask(session, ends_at: float, deadline_s: float, **request):
    """session.request(**request) given up at `ends_at`: a server can trickle its headers as well as its body,
    and no socket timeout notices a byte every few seconds. It runs in a helper thread; an answer that comes
    after the deadline is closed by that thread."""
    shown = redact(request["url"])
    outcome: dict = {}
    lock = threading.Lock()
    done = threading.Event()

    def ask():
        try:
            got = ("resp", session.request(**request))
        except Exception as exc:  # noqa: BLE001 - handed to the waiting thread
            got = ("error", exc)
        with lock:
            if outcome.get("abandoned") and got[0] == "resp":
                got[1].close()
            outcome[got[0]] = got[1]
            done.set()

    threading.Thread(target=ask, daemon=True).start()
    try:
        while not done.wait(max(0.0, min(0.25, ends_at - time.monotonic()))):  # short waits: Ctrl-C gets through
            if time.monotonic() >= ends_at:
                break
    finally:
        with lock:
            outcome["abandoned"] = not done.is_set()
    exc = outcome.get("error")
    # the socket's own timeout is the deadline at most, so the two can end together: name the deadline
    if outcome["abandoned"] or (isinstance(exc, requests.Timeout) and time.monotonic() >= ends_at):
        raise PageError(f"{shown} did not answer within {deadline_s:g} s, so it was cut off.")
    if isinstance(exc, RefusedRedirect):
        raise PageError(f"{exc}.") from None
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema, requests.exceptions.URLRequired)) \
            or (isinstance(exc, ValueError) and not isinstance(exc, requests.RequestException)):
        raise PageError(f"'{shown}' is not a URL that can be fetched.") from None
    if isinstance(exc, (OSError, urllib3.exceptions.HTTPError)):  # requests' errors are OSErrors too
        raise PageError(f"{shown} could not be reached: {short_reason(exc)}.") from None
    if exc is not None:
        raise exc
    return outcome["resp"]


def _read_body(resp, url: str, max_bytes: int, ends_at: float, late: str) -> Page:
    """The whole body, unpacked, within the cap and the deadline. A read blocks until its whole chunk arrives,
    so a trickling server is cut off by shutting the socket from a timer at the deadline; the blocked read
    then fails and is reported as the deadline."""
    shown = redact(url)
    try:
        decoder = _decoder(resp.headers.get("Content-Encoding", ""))
    except ValueError as exc:
        raise PageError(f"{shown} answered in an encoding that cannot be read ({exc}).", resp.status_code) \
            from None
    declared = parse_length(resp.headers.get("Content-Length"))
    if decoder is None and declared is not None and declared > max_bytes:
        raise PageError(f"{shown} answered {declared:,} bytes, more than the {max_bytes:,} a page may have.",
                        resp.status_code)
    expired = threading.Event()

    def cut_off():
        expired.set()
        _shutdown(resp)

    timer = threading.Timer(max(0.0, ends_at - time.monotonic()), cut_off)
    timer.daemon = True
    timer.start()
    try:
        body = _unpacked(resp, decoder, max_bytes, shown)
    except PageError:
        if expired.is_set():  # a cut-off compressed body looks cut short: the deadline is the reason
            raise PageError(late, resp.status_code) from None
        raise
    except Exception as exc:  # requests, urllib3 (ProtocolError, ReadTimeoutError) and socket errors alike
        if expired.is_set():
            raise PageError(late, resp.status_code) from None
        raise PageError(f"{shown} stopped answering: {short_reason(exc)}.", resp.status_code) from None
    finally:
        timer.cancel()
    if expired.is_set():
        raise PageError(late, resp.status_code)
    return Page(resp.url or url, resp.status_code, dict(resp.headers), body)


def _unpacked(resp, decoder, max_bytes: int, shown: str) -> bytes:
    """Read raw blocks and unpack them, counting unpacked bytes against the cap (a small gzip body may unpack
    to gigabytes: the decompressor is never asked for more than the cap allows)."""
    chunks, size, packed = [], 0, 0
    for raw in resp.raw.stream(CHUNK, decode_content=False):
        packed += len(raw)
        try:
            block = raw if decoder is None else decoder.decompress(raw, max_bytes + 1 - size)
        except zlib.error:
            raise PageError(f"{shown} answered a damaged compressed body.", resp.status_code) from None
        size += len(block)
        if size > max_bytes or (decoder is not None and decoder.unconsumed_tail):
            raise PageError(f"{shown} answered more than the {max_bytes:,} bytes a page may have.",
                            resp.status_code)
        chunks.append(block)
    if decoder is not None and packed and not decoder.eof:  # closed mid-stream: a cut page is no page
        raise PageError(f"{shown} answered a compressed body that ends too soon.", resp.status_code)
    return b"".join(chunks)


def _shutdown(resp) -> None:
    """Wake a read blocked on this answer's socket (closing alone does not wake a blocked recv)."""
    raw = resp.raw
    sock = getattr(getattr(raw, "_connection", None), "sock", None)  # urllib3 2
    if sock is None:  # urllib3 1.26: the socket behind http.client's buffered file
        sock = getattr(getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None), "_sock", None)
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    resp.close()
