"""The HTTP headers a download asks with and reads: Range, Content-Range, Content-Length, Retry-After.

Servers are not trusted: a header that cannot be read is None, never an exception, and numbers are plain ASCII
digits of a sane length (`str.isdigit` admits '²', which int() refuses; a 400-digit length is a server playing
games).
"""
import re
import time
from email.utils import parsedate_to_datetime
from typing import Optional

_CONTENT_RANGE = re.compile(r"bytes +([0-9]{1,40})-([0-9]{1,40})/([0-9]{1,40}|\*)", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]{1,40}")  # 40 digits are far past any file


def range_request(start: int, end: Optional[int], if_range: Optional[str], ranged: bool) -> dict:
    """Headers for bytes start..end (inclusive; None: to the end) of a file; `ranged` asks for `bytes=0-` even
    from the first byte. Never a compressed answer: byte offsets must mean file offsets."""
    headers = {"Accept-Encoding": "identity"}
    if start or end is not None or ranged:
        headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        if if_range:
            headers["If-Range"] = if_range
    return headers


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


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Retry-After as seconds: either a number or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (now if now is not None else time.time()))
