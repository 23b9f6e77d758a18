"""mirror.*: probed concurrently against real servers on 127.0.0.1 — one that answers, one that refuses,
and ones that accept connections and never answer (each reported as timed out, beside the ones that answered)."""
import http.server
import json
import socket
import threading

import pytest

from fomm_doctor.checks import mirrors
from fomm_doctor.resources import load_wheels_index

INDEX = load_wheels_index()
LINUX = {"platform": "linux", "os": "linux"}


@pytest.fixture
def answering_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = 404 if self.path.startswith("/missing") else 200
            body = b"<html><a href='torch/'>torch</a></html>"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_server():
    """Accepts TCP connections (the kernel does, via the backlog) and never sends a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/simple/"


def test_answering_refusing_and_404(answering_server):
    urls = {"up": answering_server + "/simple/", "missing": answering_server + "/missing/", "down": closed_port()}
    out = mirrors.probe_mirrors(urls, timeout=3)
    assert out["up"]["ok"] and out["up"]["latency_ms"] is not None and out["up"]["error"] is None
    assert not out["missing"]["ok"] and out["missing"]["error"] == "HTTP 404"
    assert not out["down"]["ok"] and "refused" in out["down"]["error"].lower()


TIMED_OUT = ("timed out", "no answer within 1 s")


def test_silent_mirrors_are_timed_out_beside_one_that_answers(answering_server, silent_server):
    urls = {f"m{i}": f"{silent_server}/simple/{i}/" for i in range(12)}
    urls["up"] = answering_server + "/simple/"
    out = mirrors.probe_mirrors(urls, timeout=1.0)
    assert set(out) == set(urls)
    assert out["up"]["ok"] and out["up"]["status"] == 200
    for name in urls:
        if name != "up":
            assert out[name] == {"ok": False, "latency_ms": None, "error": out[name]["error"], "status": None}
            assert out[name]["error"] in TIMED_OUT, out[name]
    rows = mirrors.judge_mirrors(out, urls, INDEX, LINUX)
    assert [r.id for r in rows] == [f"mirror.{name}" for name in urls]  # the order asked, not the order answered
    assert [r.status for r in rows] == ["warn"] * 12 + ["ok"]
    assert all(("unreachable: " + out[f"m{i}"]["error"]) in rows[i].summary for i in range(12))


def test_a_probe_that_never_returns_is_reported_at_the_deadline(monkeypatch):
    """Socket timeouts do not bound a DNS lookup: a probe stuck for good is left behind, named as unanswered."""
    release = threading.Event()

    def probe_one(url, timeout):
        if "stuck" in url:
            release.wait()
        return {"ok": True, "latency_ms": 5, "error": None, "status": 200}
    monkeypatch.setattr(mirrors, "_probe_one", probe_one)
    try:
        out = mirrors.probe_mirrors({"a": "http://fine/", "b": "http://stuck/", "c": "http://fine2/"}, timeout=0.3)
    finally:
        release.set()
    assert out["a"]["ok"] and out["c"]["ok"]
    assert out["b"] == {"ok": False, "latency_ms": None, "error": "no answer within 0.3 s", "status": None}


def test_configured_index_and_suggested_fix(answering_server, silent_server):
    pip_index = {"index_url": "https://user:pw@" + silent_server.split("//")[1] + "/simple/"}
    urls = mirrors.mirror_urls(INDEX, pip_index)
    assert set(INDEX["mirrors"]) <= set(urls) and "configured" in urls
    assert "configured" not in mirrors.mirror_urls(INDEX, {"index_url": "https://pypi.org/simple"})
    assert "configured" not in mirrors.mirror_urls(INDEX, {"index_url": INDEX["mirrors"]["tsinghua"]["url"]})
    probed = {name: {"ok": False, "latency_ms": None, "error": "no answer"} for name in urls}
    probed["tsinghua"] = {"ok": True, "latency_ms": 40, "error": None}
    probed["official"] = {"ok": True, "latency_ms": 300, "error": None}
    rows = {r.id: r for r in mirrors.judge_mirrors(probed, urls, INDEX, {"platform": "win32"})}
    assert rows["mirror.tsinghua"].status == "ok" and "40 ms" in rows["mirror.tsinghua"].summary
    configured = rows["mirror.configured"]
    assert configured.status == "warn" and "pw" not in configured.summary and "user:****@" in configured.summary
    assert configured.fix == f"py -m pip config set global.index-url {INDEX['mirrors']['tsinghua']['url']}"


def test_check_command_with_a_silent_configured_index(silent_server):
    """End to end: pip's index silently drops us; `check` ends with that index's row, a warning that it did not
    answer, its address shown."""
    from conftest import run_cli
    out = run_cli("check", "--json", "--timeout", "1", env={"PIP_INDEX_URL": silent_server + "/simple/",
                                                           "PIP_CONFIG_FILE": "/dev/null"})
    assert out.returncode in (0, 1), out.stderr
    checks = json.loads(out.stdout)["checks"]
    configured = checks[-1]
    assert configured["id"] == "mirror.configured" and configured["status"] == "warn"
    assert configured["details"]["error"] in TIMED_OUT and configured["details"]["latency_ms"] is None
    assert silent_server in configured["summary"]
    assert {c["id"] for c in checks} >= {f"mirror.{name}" for name in INDEX["mirrors"]}


def test_credentials_in_the_url_become_basic_auth():
    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen["auth"] = self.headers.get("Authorization")
            seen["path"] = self.path
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = mirrors.probe_mirrors({"private": f"http://alice:s%40cret@127.0.0.1:{server.server_port}/simple/"}, 3)
    finally:
        server.shutdown()
        server.server_close()
    import base64
    assert out["private"]["ok"], out
    assert seen == {"auth": "Basic " + base64.b64encode(b"alice:s@cret").decode(), "path": "/simple/"}


def _header_server(answer):
    """A 127.0.0.1 server that records each request's path and Authorization header, then calls answer(handler)."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            answer(self)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def _ok(handler):
    handler.send_response(200)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def test_credentials_stay_with_their_host_across_a_redirect():
    """An index that redirects to another port (another origin) must not receive the password there; a
    redirect within the same origin keeps it (a private index moving /simple to /simple/ still works)."""
    elsewhere, elsewhere_seen = _header_server(_ok)

    def redirect(handler):
        if handler.path == "/simple":
            target = "/simple/"
        else:
            target = f"http://127.0.0.1:{elsewhere.server_port}/logged/"
        handler.send_response(302)
        handler.send_header("Location", target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    home, home_seen = _header_server(redirect)
    try:
        out = mirrors.probe_mirrors({"private": f"http://alice:secret@127.0.0.1:{home.server_port}/simple"}, 3)
    finally:
        for s in (home, elsewhere):
            s.shutdown()
            s.server_close()
    assert out["private"]["ok"], out
    assert [p for p, _ in home_seen] == ["/simple", "/simple/"]
    assert all(auth and auth.startswith("Basic ") for _, auth in home_seen)
    assert elsewhere_seen == [("/logged/", None)]


def test_a_malformed_configured_index_is_a_row_not_a_traceback():
    out = mirrors.probe_mirrors({"configured": "http://[::1"}, 1)
    assert out["configured"]["ok"] is False and out["configured"]["error"]


def _wrapped(inner, outer):
    """`outer` raised while handling `inner`, the way requests wraps urllib3's errors, which wrap the socket's."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:
        return exc


def test_network_errors_are_named_by_their_cause():
    import ssl

    import requests
    describe = mirrors.describe_network_error
    assert describe(_wrapped(socket.gaierror(-2, "Name or service not known"), requests.ConnectionError("x"))) \
        == "host name not found (DNS)"
    assert describe(_wrapped(ConnectionRefusedError(111, "refused"), requests.ConnectionError("x"))) \
        == "connection refused"
    assert describe(requests.ReadTimeout("read timed out")) == "timed out"
    assert describe(_wrapped(ssl.SSLError(1, "CERTIFICATE_VERIFY_FAILED"), requests.exceptions.SSLError("x"))) \
        .startswith("TLS error: ")
    odd = describe(ValueError("cannot reach https://alice:s3cret@host/simple"))
    assert odd.startswith("ValueError: ") and "s3cret" not in odd and "alice:****@host" in odd
