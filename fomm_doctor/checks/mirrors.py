"""Mirror checks: can each known package index be reached, and how fast — all probed at once, with one
deadline, so that a network that silently drops packets costs the timeout once, not once per mirror.

ids: mirror.<name> for every mirror in wheels_index.json, and mirror.configured for pip's own index when it is
none of those.
"""
import base64
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

from fomm_doctor.i18n import tr
from fomm_doctor.net.redact import redact, same_origin
from fomm_doctor.render import CheckResult
from fomm_doctor.checks.common import pip_cmd

DEFAULT_TIMEOUT = 3.0
_USER_AGENT = "fomm-doctor (mirror check)"


def _request(url: str) -> urllib.request.Request:
    """A GET for `url`; credentials in the URL (https://user:token@host/...) go into a Basic auth header,
    since urllib would otherwise take 'user:token@host' for the host name."""
    headers = {"User-Agent": _USER_AGENT}
    parts = urlsplit(url)
    if "@" in parts.netloc:
        userinfo, host = parts.netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
        url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return urllib.request.Request(url, headers=headers)


class _KeepCredentialsHome(urllib.request.HTTPRedirectHandler):
    """urllib copies every header, Authorization included, onto a redirect to any host: credentials written
    for the index would go wherever it points. Only a redirect to the same scheme, host and port keeps them."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and not same_origin(req.full_url, new.full_url):
            for name in [k for k in new.headers if k.lower() == "authorization"]:
                del new.headers[name]
            new.unredirected_hdrs.pop("Authorization", None)
        return new


_OPENER = urllib.request.build_opener(_KeepCredentialsHome)  # also honours HTTPS_PROXY etc., as urlopen does


def _probe_one(url: str, timeout: float) -> dict:
    start = time.monotonic()
    try:
        request = _request(url)
        with _OPENER.open(request, timeout=timeout) as response:
            latency = (time.monotonic() - start) * 1000
            response.read(1024)
            return {"ok": True, "latency_ms": round(latency), "error": None, "status": response.status}
    except urllib.error.HTTPError as exc:
        latency = (time.monotonic() - start) * 1000
        return {"ok": False, "latency_ms": round(latency), "error": f"HTTP {exc.code}", "status": exc.code}
    except Exception as exc:  # URLError, socket.timeout, ssl errors, bad URLs: all mean "not usable"
        return {"ok": False, "latency_ms": None, "error": describe_network_error(exc), "status": None}


def describe_network_error(exc) -> str:
    """A few words a user can act on, for the usual ways a request fails."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        return "host name not found (DNS)"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error: {getattr(reason, 'reason', None) or reason}"
    return f"{reason.__class__.__name__}: {reason}"


def probe_mirrors(urls: dict, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """{name: url} -> {name: {"ok", "latency_ms", "error"}}, all at once, back within `timeout` (+ a hair).

    Socket timeouts do not bound DNS lookups or a slow trickle of bytes, so each probe runs in a daemon thread
    and whatever has not answered by the deadline is reported as timed out and left behind.
    """
    results = {}
    lock = threading.Lock()

    def work(name, url):
        outcome = _probe_one(url, timeout)
        with lock:
            results[name] = outcome

    threads = [threading.Thread(target=work, args=(n, u), daemon=True, name=f"mirror-{n}") for n, u in urls.items()]
    deadline = time.monotonic() + timeout + 0.2
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    with lock:
        final = dict(results)
    for name in urls:
        final.setdefault(name, {"ok": False, "latency_ms": None, "error": f"no answer within {timeout:g} s",
                                "status": None})
    return final


def _norm(url: str) -> str:
    return url.rstrip("/").lower()


def mirror_urls(index: dict, pip_index: dict) -> dict:
    """Every known mirror, plus pip's configured index when it is none of them."""
    urls = {name: m["url"] for name, m in index.get("mirrors", {}).items()}
    configured = (pip_index or {}).get("index_url")
    if configured and _norm(configured) not in {_norm(u) for u in urls.values()} \
            and _norm(configured) != "https://pypi.org/simple":
        urls["configured"] = configured
    return urls


def judge_mirrors(probed: dict, urls: dict, index: dict, platform_facts: dict, lang: str = "en") -> list:
    platform = platform_facts.get("platform", "linux")
    mirrors = index.get("mirrors", {})
    reachable_pypi = sorted((r["latency_ms"], name) for name, r in probed.items()
                            if r["ok"] and mirrors.get(name, {}).get("kind") == "pypi")
    results = []
    for name, url in urls.items():
        r = probed.get(name) or {"ok": False, "latency_ms": None, "error": "not probed"}
        shown = redact(url)
        details = {"url": shown, "ok": r["ok"], "latency_ms": r["latency_ms"], "error": r["error"],
                   "kind": mirrors.get(name, {}).get("kind", "pypi"), "region": mirrors.get(name, {}).get("region")}
        if r["ok"]:
            results.append(CheckResult(f"mirror.{name}", "ok", tr(lang, f"{shown} answers in {r['latency_ms']} ms.",
                                                                  f"{shown} 响应 {r['latency_ms']} ms。"), details))
            continue
        fix = None
        if name == "configured" and reachable_pypi:
            best = mirrors[reachable_pypi[0][1]]["url"]
            fix = pip_cmd(platform, f"config set global.index-url {best}")
        results.append(CheckResult(f"mirror.{name}", "warn", tr(lang, f"{shown} unreachable: {r['error']}.",
                                                                f"{shown} 无法访问：{r['error']}。"), details, fix))
    return results
