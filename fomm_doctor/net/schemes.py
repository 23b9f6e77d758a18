"""Only http and https are fetched. A URL of another scheme (file://, ftp://, data:) is refused, and so is a
server's redirect to one, or to a Location that is not even text: before requests follows it, and never retried,
since no second try turns it into a download.

    session.get(url, hooks=HTTP_ONLY, ...)    # RefusedRedirect out of the call when an answer leads elsewhere

Without the hook a redirect to file:// fails inside requests as an ordinary request error, which the downloader
retries as if the network had dropped; a session with a file adapter mounted would read the local file; and a
Location that is not UTF-8 escapes requests as a UnicodeDecodeError.
"""
from urllib.parse import urljoin, urlsplit

from fomm_doctor.net.redact import redact

FETCHABLE = ("http", "https")


class RefusedRedirect(Exception):
    """A server redirected to a URL that is not http(s), or to no readable URL; the message says where, in a
    sentence without its full stop, credentials masked."""


def scheme_of(url: str) -> str:
    """The scheme of `url`, lower case ('' for a relative or unreadable one)."""
    try:
        return urlsplit(str(url).strip()).scheme.lower()
    except ValueError:
        return ""


def redirect_target(resp) -> str:
    """Where a redirect answer leads, read as requests reads it (the header's bytes as UTF-8) and resolved against
    the URL it answered; '' when it is no redirect. RefusedRedirect when the Location is not UTF-8."""
    location = resp.headers.get("Location") if resp.is_redirect else None
    if location is None:
        return ""
    try:
        location = location.encode("latin-1").decode("utf-8")
    except UnicodeError:
        resp.close()
        raise RefusedRedirect(f"{redact(resp.url or '')} redirects to a Location that is not a readable URL") \
            from None
    try:
        return urljoin(resp.url or "", location.strip())
    except ValueError:
        return location


def refuse_other_schemes(resp, *args, **kwargs):
    """A requests response hook (it sees every answer, each redirect included, before requests follows it):
    RefusedRedirect when the answer redirects to a scheme other than http(s) or to no readable URL. The answer
    is closed first."""
    target = redirect_target(resp)
    if target and scheme_of(target) not in FETCHABLE:
        resp.close()
        shown = redact(target)
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        raise RefusedRedirect(f"{redact(resp.url or '')} redirects to {shown}, which is not an http(s) URL and is "
                              f"never followed")
    return resp


HTTP_ONLY = {"response": [refuse_other_schemes]}
