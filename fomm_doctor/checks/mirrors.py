"""Mirror checks: can each known package index be reached, and how fast — all probed at once, with one
deadline, so that a network that silently drops packets costs the timeout once, not once per mirror.

ids: mirror.<name> for every mirror in wheels_index.json, and mirror.configured for pip's own index when it is
none of those.
"""
import socket
import ssl
import threading
import time

import requests

from fomm_doctor.preflight import tr
from fomm_doctor.install.pip_config import PYPI_SIMPLE
from fomm_doctor.net.redact import redact
from fomm_doctor.report import CheckResult
from fomm_doctor.checks.common import pip_cmd

DEFAULT_TIMEOUT = 3.0
_USER_AGENT = "fomm-doctor (mirror check)"


def _probe_one(url: str, timeout: float) -> dict:
    """GET `url` and read the first KB. Credentials in the URL (https://user:token@host/...) are sent as Basic
    auth; requests drops them on a redirect to another scheme, host or port, as everything else that asks the
    network here relies on (net/pages.py)."""
    start = time.monotonic()
    try:
        with requests.Session() as session, session.get(url, headers={"User-Agent": _USER_AGENT},
                                                          timeout=timeout, stream=True) as response:
            latency = round((time.monotonic() - start) * 1000)
            if response.status_code >= 400:
                return {"ok": False, "latency_ms": latency, "error": f"HTTP {response.status_code}",
                        "status": response.status_code}
            response.raw.read(1024)
            return {"ok": True, "latency_ms": latency, "error": None, "status": response.status_code}
    except Exception as exc:  # connection, DNS, TLS errors, timeouts, bad URLs: all mean "not usable"
        return {"ok": False, "latency_ms": None, "error": describe_network_error(exc), "status": None}


def _causes(exc: BaseException) -> list:
    """`exc` and every exception it wraps, outermost first: requests wraps urllib3's errors, which wrap the
    socket's."""
    seen, todo = [], [exc]
    while todo:
        e = todo.pop(0)
        if not isinstance(e, BaseException) or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [getattr(e, "reason", None), e.__cause__, e.__context__, *getattr(e, "args", ())]
    return seen


def describe_network_error(exc) -> str:
    """A few words a user can act on, for the usual ways a request fails."""
    causes = _causes(exc)
    for kinds, words in ((socket.gaierror, "host name not found (DNS)"),
                         ((socket.timeout, TimeoutError, requests.Timeout), "timed out"),
                         (ConnectionRefusedError, "connection refused")):
        if any(isinstance(c, kinds) for c in causes):
            return words
    tls = next((c for c in causes if isinstance(c, ssl.SSLError)), None)
    if tls is not None:
        return f"TLS error: {getattr(tls, 'reason', None) or tls}"
    root = causes[-1]
    return redact(f"{root.__class__.__name__}: {root}")


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
            and _norm(configured) != _norm(PYPI_SIMPLE):
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
        fix, run = None, ()
        if name == "configured" and reachable_pypi:
            best = mirrors[reachable_pypi[0][1]]["url"]
            fix = pip_cmd(platform, f"config set global.index-url {best}")
            run = (("pip", "config", "set", "global.index-url", best),)
        results.append(CheckResult(f"mirror.{name}", "warn", tr(lang, f"{shown} unreachable: {r['error']}.",
                                                                f"{shown} 无法访问：{r['error']}。"), details, fix,
                                   run))
    return results
