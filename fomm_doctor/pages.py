"""Small answers from the network, read with a size cap and an overall deadline.

Index pages, Google Drive listings and confirmation pages, the Yandex Disk API, PEP 658 metadata: all are
small, and all come from servers we do not control. A socket timeout alone never cuts off a server that sends
one byte every half second, and `resp.text` reads an endless body until memory runs out, so every such answer
goes through `read_page`:

    page = read_page(url, max_bytes=PAGE_LIMIT, deadline_s=60, session=session)
    page.status, page.url, page.headers, page.body, page.text

The body is read raw (a gzip answer is unpacked here, counting the unpacked bytes against the cap, so a
small compressed body cannot grow into gigabytes). Anything that stops the read — connection errors, the
cap, the deadline — is a `PageError` whose message is one sentence with the URL's credentials masked.
Redirects are followed by requests, which drops an Authorization header when the host changes.
Files (wheels, checkpoints) are not pages: they go through `download.py`, which resumes and verifies.
"""
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Optional

import requests

from fomm_doctor.errors import UserError
from fomm_doctor.redact import redact

PAGE_LIMIT = 32 * 1024 * 1024  # the torch project page on PyPI is ~10 MB of JSON; nothing we read is bigger
CHUNK = 64 * 1024
DEFAULT_DEADLINE = 60.0


class PageError(UserError):
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
    session = session or requests.Session()
    shown = redact(url)
    start = time.monotonic()
    hdrs = {"Accept-Encoding": "gzip, deflate, identity"}
    hdrs.update(headers or {})
    try:
        resp = session.request(method, url, headers=hdrs, data=data, stream=True,
                               timeout=(timeout, min(timeout, deadline_s)))
    except requests.RequestException as exc:
        raise PageError(f"{shown} could not be reached ({_reason(exc)}).") from None
    except ValueError:  # requests raises InvalidURL / ValueError subclasses for malformed URLs
        raise PageError(f"{shown} is not a URL that can be fetched.") from None
    # a read blocks until its whole chunk arrives, so a trickling server is cut off by closing the answer
    # from a timer at the deadline; the blocked read then fails and is reported as the deadline
    expired = threading.Event()

    def cut_off():
        expired.set()
        _shutdown(resp)

    timer = threading.Timer(max(0.0, deadline_s - (time.monotonic() - start)), cut_off)
    timer.daemon = True
    timer.start()
    late = PageError(f"{shown} was still sending after {deadline_s:g} s, so it was cut off.", resp.status_code)
    with resp:
        try:
            decoder = _decoder(resp.headers.get("Content-Encoding", ""))
        except ValueError as exc:
            timer.cancel()
            raise PageError(f"{shown} answered in an encoding that cannot be read ({exc}).", resp.status_code) \
                from None
        declared = resp.headers.get("Content-Length", "")
        if decoder is None and declared.isdigit() and int(declared) > max_bytes:
            timer.cancel()
            raise PageError(f"{shown} answered {int(declared):,} bytes, more than the {max_bytes:,} a page may "
                            f"have.", resp.status_code)
        chunks, size = [], 0
        try:
            for raw in resp.raw.stream(CHUNK, decode_content=False):
                block = raw if decoder is None else decoder.decompress(raw, max_bytes + 1 - size)
                size += len(block)
                if size > max_bytes or (decoder is not None and decoder.unconsumed_tail):
                    raise PageError(f"{shown} answered more than the {max_bytes:,} bytes a page may have.",
                                    resp.status_code)
                chunks.append(block)
        except PageError:
            raise
        except zlib.error:
            raise PageError(f"{shown} answered a damaged compressed body.", resp.status_code) from None
        except Exception as exc:  # requests, urllib3 (ProtocolError, ReadTimeoutError) and socket errors alike
            if expired.is_set():
                raise late from None
            raise PageError(f"{shown} stopped answering ({_reason(exc)}).", resp.status_code) from None
        finally:
            timer.cancel()
        if expired.is_set():
            raise late
        return Page(resp.url or url, resp.status_code, dict(resp.headers), b"".join(chunks))


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


def _reason(exc: BaseException) -> str:
    """A few words from a requests/urllib3 exception, credentials masked."""
    text = str(exc)
    for key, words in (("timed out", "timed out"), ("Connection refused", "connection refused"),
                       ("Connection reset", "connection reset"), ("Name or service not known", "host not found"),
                       ("getaddrinfo failed", "host not found"), ("IncompleteRead", "connection broke")):
        if key in text:
            return words
    return redact(text.splitlines()[0][:160]) if text else type(exc).__name__
