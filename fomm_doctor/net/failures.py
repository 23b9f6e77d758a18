"""How a download fails: the errors callers catch (one sentence each, credentials masked), the signals one
attempt raises to the code that decides what to try next, and the few words that name a network error."""
from typing import Optional

from fomm_doctor.errors import ExitCode, NetworkError
from fomm_doctor.net.redact import redact


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


class Retryable(Exception):
    """One attempt failed in a way that is worth retrying (drop, stall, 5xx); `wait` is the server's hint."""

    def __init__(self, message: str, wait: Optional[float] = None):
        super().__init__(message)
        self.wait = wait


class UrlDead(Exception):
    """This URL will not give us the file (404, wrong size): move to the next mirror at once."""


class RangeIgnored(Exception):
    """The server answered a Range request with the whole file: parallel ranges cannot continue."""


class SplitHere(Exception):
    """Auto mode: the first answer shows a large file from a server that does ranges. `resp`, still open and
    positioned at byte `have`, becomes the first of the parallel ranges, so no request is wasted."""

    def __init__(self, url: str, resp, have: int):
        super().__init__(f"split {url} from byte {have}")
        self.url, self.resp, self.have = url, resp, have


# first match wins: the specific timeouts before the general one
_REASONS = (("Read timed out", "the server stopped sending (read timed out)"),
            ("ConnectTimeout", "the connection timed out"),
            ("timed out", "the connection timed out"),
            ("Connection refused", "the connection was refused"),
            ("Connection reset", "the connection was reset"),
            ("Connection broken", "the connection broke off"),
            ("IncompleteRead", "the connection broke off"),
            ("Name or service not known", "the host name could not be resolved"),
            ("getaddrinfo failed", "the host name could not be resolved"))


def short_reason(exc: BaseException) -> str:
    """A few words from a requests/urllib3/socket exception chain, credentials masked."""
    text = str(exc)
    for key, words in _REASONS:
        if key in text:
            return words
    return redact(text.splitlines()[0][:160]) if text else type(exc).__name__
