"""Who the page answers: the Host names it is reached by, its USER:PASS, and how big an upload may be.

A page on 127.0.0.1 is still reachable from any web site the user visits through DNS rebinding (a name of the
attacker's that resolves to 127.0.0.1): the browser then sends that name as the Host header. So the page
answers only Host names that are its own (loopback names, the address it listens on, this machine's names when
it listens on every address, the share link's host) and refuses the rest before gradio sees the request.
Nothing here imports gradio; `HostGuard` is a plain ASGI middleware.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from typing import Callable, Iterable, Optional

from fomm_doctor.errors import UserError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")
_FORM_SLACK = 64 * 1024      # a form's own bytes around the file; gradio checks the file's exact size itself


def _name(text: str) -> Optional[str]:
    """A host part (no port) in one spelling: lower case, no trailing dot, IP addresses compressed; None when
    it is not a host name or address."""
    if text.startswith("[") and text.endswith("]"):
        if "%" in text:        # a zone (fe80::1%eth0) names an interface of the client's, not a host
            return None
        try:
            return str(ipaddress.IPv6Address(text[1:-1]))
        except ValueError:
            return None
    if not text.isascii():
        return None
    text = text.lower()
    if text.endswith("."):
        text = text[:-1]
    if not text or len(text) > 253:
        return None
    labels = text.split(".")
    if all(label.isdigit() for label in labels):
        try:
            return str(ipaddress.IPv4Address(text))   # "127.1" and "999.0.0.1" are not addresses here
        except ValueError:
            return None
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return text


def parse_host(value: Optional[str]) -> Optional[tuple[str, Optional[int]]]:
    """A Host header -> (name, port or None); None for anything that is not `name[:port]` (garbage, a bare
    IPv6 address without brackets, port 0 or over 65535, an empty port, spaces)."""
    if not value:
        return None
    host, port = value, None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[:end + 1], value[end + 1:]
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
    elif ":" in value:
        host, port = value.rsplit(":", 1)
    if port is not None:
        if not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
            return None
        port = int(port)
    name = _name(host)
    return None if name is None else (name, port)


def own_names(listen: str) -> set[str]:
    """The host names the page answers to when it listens on `listen`."""
    names = {_name(n if ":" not in n else f"[{n}]") for n in LOOPBACK_NAMES}
    if listen in WILDCARDS:
        name = socket.gethostname()       # (not getfqdn: a DNS lookup that can hang a machine offline)
        names.update({_name(name), _name(f"{name}.local")})
    else:
        names.add(_name(listen if ":" not in listen else f"[{listen}]"))
    names.discard(None)
    return names


def host_allowed(value: Optional[str], names: Iterable[str], port: int, any_address: bool = False,
                 any_port: Iterable[str] = ()) -> bool:
    """Whether a request with this Host header is for us: one of `names` (or, with `any_address`, any IP
    address: a name is what DNS rebinding needs, an address is not one) at our port, or one of `any_port`
    (a share link's host, reached through its tunnel) at any port."""
    parsed = parse_host(value)
    if parsed is None:
        return False
    name, given = parsed
    if name in any_port:
        return True
    if (80 if given is None else given) != port:
        return False
    if name in names:
        return True
    return any_address and _is_address(name)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps the page on this machine."""
    name = _name(host if ":" not in host else f"[{host}]")
    return name == "localhost" or (name is not None and _is_address(name) and
                                   ipaddress.ip_address(name).is_loopback)


def parse_auth(value: str) -> tuple[str, str]:
    """`USER:PASS` -> (user, password), or UserError: a user name without spaces or colons, a password that is
    not empty (it may hold colons)."""
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise UserError("--auth must be USER:PASS (a user name, a colon, a password that is not empty).")
    if user != user.strip() or any(c.isspace() or not c.isprintable() for c in user):
        raise UserError("--auth: the user name must have no spaces or control characters.")
    return user, password


class HostGuard:
    """ASGI middleware: a request whose Host is not ours gets 421 and one sentence; an upload whose declared
    size is over the cap gets 413 and one sentence before its body is read; `before_upload` runs before each
    upload that passes (to make room by pruning old ones)."""

    def __init__(self, app, allowed: Callable[[Optional[str]], bool], max_upload: int,
                 before_upload: Optional[Callable[[], None]] = None):
        self.app = app
        self.allowed = allowed
        self.max_upload = max_upload
        self.before_upload = before_upload

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.allowed(host):
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await _answer(send, 421, "this page answers only at its own address (the Host header names "
                                            "another site).")
        if scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path", "").endswith("/upload"):
            length = headers.get(b"content-length", b"")
            if length.isdigit() and int(length) > self.max_upload + _FORM_SLACK:
                return await _answer(send, 413, f"this upload is larger than the page takes "
                                                f"({upload_limit_text(self.max_upload)} per file; start the page "
                                                "with --max-upload-mb to change that).")
            if self.before_upload is not None:
                self.before_upload()
        return await self.app(scope, receive, send)


def upload_limit_text(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MB"


async def _answer(send, status: int, sentence: str) -> None:
    body = (sentence + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
