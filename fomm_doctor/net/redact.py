"""Credentials never leave in words: one function masks every secret in any text, URL or JSON value.

Index URLs carry credentials (`https://user:token@host/simple`, pip's own way of writing a private index), and
those URLs travel into error sentences, `--json` output, the `$ pip install ...` line, logs and stored records.
Everything that shows or stores a URL, or a sentence that may contain one, goes through `redact` (text) or
`redact_data` (a JSON-able value), so a token is masked wherever it would appear:

    redact("https://alice:s3cret@pypi.example/simple")  -> "https://alice:****@pypi.example/simple"
    redact("https://ghp_token@host/x")                 -> "https://****@host/x"

The user name is kept (it says which account is configured); the password or bare token never is.
`same_origin` is the rule for where credentials may be sent: only back to the scheme, host and port they were
written for.
"""
import re
from urllib.parse import urlsplit

MASK = "****"

# scheme://userinfo@ : userinfo runs up to the last "@" before the host (a password may hold a raw "@",
# as pip reads it), and never across "/", whitespace or quotes.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s'\"<>]*)@")


def _mask(match: "re.Match") -> str:
    userinfo = match.group("userinfo")
    user, sep, _secret = userinfo.partition(":")
    shown = f"{user}:{MASK}" if sep and user else MASK
    return f"{match.group('scheme')}{shown}@"


def redact(text):
    """`text` with the credentials of every URL in it masked; anything not a str is returned unchanged."""
    if not isinstance(text, str) or "@" not in text:
        return text
    return _USERINFO.sub(_mask, text)


def redact_data(value):
    """A JSON-able value (dicts, lists, strings) with every string redacted; keys are kept as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_data(v) for v in value)
    return value


def origin(url: str):
    """(scheme, host, port) of a URL, with the scheme's default port filled in; None for an unreadable URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def same_origin(a: str, b: str) -> bool:
    """True when credentials written for URL `a` may be sent to URL `b`: same scheme, host and port."""
    oa = origin(a)
    return oa is not None and oa == origin(b)


def with_credentials_of(index_url: str, url: str) -> str:
    """`url` carrying the user name and password of `index_url` when both are on the same origin and `url` has
    none of its own (an index's absolute file links drop them, and pip sends them there too); else `url`."""
    try:
        parts, own = urlsplit(index_url), urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc or "@" in own.netloc or not same_origin(index_url, url):
        return url
    return own._replace(netloc=parts.netloc.rpartition("@")[0] + "@" + own.netloc).geturl()
