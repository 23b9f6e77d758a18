"""A real HTTP server on 127.0.0.1 that misbehaves on purpose, for download and install tests.

    with FaultServer({"/f.bin": data}) as srv:
        srv.script("/f.bin", Reset(after=1000), Stall(after=5000, seconds=3), Status(503, retry_after=1))
        download([srv.url("/f.bin")], ...)
        srv.log   # one Hit per request: path, range header, status, bytes sent, fault applied

Content is a dict path -> bytes, or path -> callable(Request) -> Reply (for redirects, cookies,
HTML confirmation pages). Faults are scripted per path and consumed one per request, in order; a fault
with `times=None` applies to every request. Range requests are honoured (206 + Content-Range) unless
the server is made with `ranges=False`. `throttle` limits bytes per second per connection.

Also here: `build_wheel` / `fake_torch_wheel` (real installable wheels made with zipfile) and `simple_routes`
(a PEP 691/503 index of them to serve).
"""
import base64
import hashlib
import json
import os
import zipfile
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional, Union
from urllib.parse import urlsplit, parse_qs

CHUNK = 16 * 1024


# ---- faults: each applies to one request (or `times` requests, None = all) -------------------------------

@dataclass
class Reset:
    """Send headers and `after` bytes of the body, then reset the connection (RST)."""
    after: int = 0
    times: Optional[int] = 1


@dataclass
class Stall:
    """Send `after` bytes, then go silent for `seconds` (longer than the client's read timeout), then close."""
    after: int = 0
    seconds: float = 5.0
    times: Optional[int] = 1


@dataclass
class Status:
    """Answer with this status code (and optional Retry-After / body) instead of the file."""
    code: int = 503
    retry_after: Optional[str] = None
    body: bytes = b""
    times: Optional[int] = 1


@dataclass
class Corrupt:
    """Serve the file with the byte at absolute offset `at` flipped (a transfer that arrives wrong)."""
    at: int = 0
    times: Optional[int] = 1


@dataclass
class Html:
    """Answer 200 text/html with this page instead of the file (a cloud drive's confirmation page)."""
    page: bytes = b"<!DOCTYPE html><html><body>Virus scan warning</body></html>"
    times: Optional[int] = 1


@dataclass
class IgnoreRange:
    """Answer a Range request with the whole file and 200 (a server without Range support, for one request)."""
    times: Optional[int] = 1


@dataclass
class Pass:
    """Serve normally (a placeholder in a script: "the first request works, the second fails")."""
    times: Optional[int] = 1


Fault = Union[Reset, Stall, Status, Corrupt, Html, IgnoreRange, Pass]


# ---- requests, replies and the log ----------------------------------------------------------------------

@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict  # lower-case names


@dataclass
class Reply:
    """What a callable route returns. `body` bytes are served with Range support like static content."""
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)


@dataclass
class Hit:
    method: str
    path: str
    range: Optional[str]
    status: int
    sent: int = 0
    fault: Optional[str] = None
    headers: dict = field(default_factory=dict)

    @property
    def range_start(self) -> Optional[int]:
        m = re.match(r"bytes=(\d+)-", self.range or "")
        return int(m.group(1)) if m else None


def parse_range(header: Optional[str], total: int):
    """`bytes=a-b` / `bytes=a-` / `bytes=-n` -> (start, end_inclusive), or None when absent or malformed."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    if m.group(1) == "":
        n = int(m.group(2))
        return max(0, total - n), total - 1
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else total - 1
    return start, min(end, total - 1)


class FaultServer:
    def __init__(self, routes: Optional[dict] = None, *, ranges: bool = True, throttle: Optional[int] = None,
                 etag: bool = True, link: Optional[int] = None):
        self.routes: dict = dict(routes or {})
        self.ranges = ranges
        self.throttle = throttle  # bytes per second per connection, None = as fast as possible
        self.link = link  # bytes per second shared by all connections (the line itself), None = no limit
        self._link_free = 0.0  # when the shared line is next free
        self.open_now = self.most_open = 0  # requests being answered now, and the most at once so far
        self.etag = etag
        self.log: list = []
        self._scripts: dict = {}
        self._etags: dict = {}
        self._lock = threading.Lock()
        self._httpd = None
        self._thread = None

    # -- setup
    def script(self, path: str, *faults: Fault) -> "FaultServer":
        """Queue faults for `path`; each request takes the next one (then serves normally)."""
        with self._lock:
            self._scripts.setdefault(path, []).extend(faults)
        return self

    def clear_faults(self, path: Optional[str] = None):
        with self._lock:
            if path is None:
                self._scripts.clear()
            else:
                self._scripts.pop(path, None)

    def url(self, path: str = "/") -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def hits(self, path: Optional[str] = None) -> list:
        with self._lock:
            return [h for h in self.log if path is None or h.path == path]

    def start(self) -> "FaultServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server._handle(self, "GET")

            def do_HEAD(self):
                server._handle(self, "HEAD")

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):  # clients hanging up are expected here
                pass

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- serving
    def _next_fault(self, path: str):
        with self._lock:
            queue = self._scripts.get(path) or []
            if not queue:
                return None
            fault = queue[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    queue.pop(0)
            return fault

    def _record(self, hit: Hit):
        with self._lock:
            self.log.append(hit)

    def _handle(self, h: BaseHTTPRequestHandler, method: str):
        parts = urlsplit(h.path)
        path = parts.path
        req = Request(method, path, parse_qs(parts.query), {k.lower(): v for k, v in h.headers.items()})
        range_header = req.headers.get("range")
        hit = Hit(method, path, range_header, 0, headers=req.headers)
        self._record(hit)  # logged at once and filled in as it goes (a stalled request shows up while stalling)
        with self._lock:
            self.open_now += 1
            self.most_open = max(self.most_open, self.open_now)
        try:
            self._serve(h, req, hit)
        except (ConnectionError, BrokenPipeError, socket.timeout, OSError):
            pass  # the client went away
        finally:
            with self._lock:
                self.open_now -= 1

    def _etag(self, data: bytes) -> str:
        key = (id(data), len(data))  # hashing 100 MB on every request would dominate a benchmark
        with self._lock:
            cached = self._etags.get(key)
        if cached is None or cached[0] is not data:
            cached = (data, '"%s"' % hashlib.sha1(data).hexdigest()[:16])
            with self._lock:
                self._etags[key] = cached
        return cached[1]

    def _send_head(self, h, status: int, headers: dict, hit: Hit):
        hit.status = status
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()

    def _serve(self, h, req: Request, hit: Hit):
        route = self.routes.get(req.path)
        fault = self._next_fault(req.path)
        hit.fault = type(fault).__name__ if fault else None

        if isinstance(fault, Status):
            headers = {"Content-Length": str(len(fault.body)), "Content-Type": "text/plain"}
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            self._send_head(h, fault.code, headers, hit)
            if req.method == "GET":
                h.wfile.write(fault.body)
            return
        if isinstance(fault, Html):
            self._send_head(h, 200, {"Content-Type": "text/html; charset=utf-8",
                                     "Content-Length": str(len(fault.page))}, hit)
            if req.method == "GET":
                h.wfile.write(fault.page)
            return

        if route is None:
            body = b"not found"
            self._send_head(h, 404, {"Content-Length": str(len(body)), "Content-Type": "text/plain"}, hit)
            h.wfile.write(body)
            return
        extra_headers = {}
        status = 200
        if callable(route):
            reply = route(req)
            body, status, extra_headers = reply.body, reply.status, dict(reply.headers)
        else:
            body = route
        if status != 200:  # callables may answer redirects, errors, pages: sent as they are
            extra_headers.setdefault("Content-Length", str(len(body)))
            self._send_head(h, status, extra_headers, hit)
            if req.method == "GET":
                h.wfile.write(body)
            return

        if isinstance(fault, Corrupt) and fault.at < len(body):
            body = body[:fault.at] + bytes([body[fault.at] ^ 0xFF]) + body[fault.at + 1:]

        total = len(body)
        headers = {"Content-Type": "application/octet-stream"}
        if self.ranges:
            headers["Accept-Ranges"] = "bytes"
        if self.etag:
            headers["ETag"] = self._etag(route if isinstance(route, bytes) else body)
        headers.update(extra_headers)
        rng = parse_range(req.headers.get("range"), total) if self.ranges and not isinstance(fault, IgnoreRange) \
            else None
        if_range = req.headers.get("if-range")
        if rng and if_range and self.etag and if_range != headers.get("ETag"):
            rng = None  # the file changed: the whole file again, as RFC 9110 says
        if rng:
            start, end = rng
            if start >= total:
                self._send_head(h, 416, {"Content-Range": f"bytes */{total}", "Content-Length": "0"}, hit)
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
            status = 206
        else:
            start, end = 0, total - 1
        payload = body[start:end + 1]
        headers["Content-Length"] = str(len(payload))
        self._send_head(h, status, headers, hit)
        if req.method == "HEAD":
            return

        limit = len(payload)
        if isinstance(fault, (Reset, Stall)):
            limit = min(limit, fault.after)
        self._write(h, payload[:limit], hit)
        if isinstance(fault, Reset) and limit < len(payload):
            h.wfile.flush()
            # SO_LINGER 0: close sends RST, the way a dropped mobile or GFW-cut connection looks to the client
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
            return
        if isinstance(fault, Stall) and limit < len(payload):
            h.wfile.flush()
            time.sleep(fault.seconds)
            h.close_connection = True
            return

    def _write(self, h, data: bytes, hit: Hit):
        view = memoryview(data)
        step = CHUNK if not self.throttle else max(1024, min(CHUNK, self.throttle // 20))
        t0 = time.monotonic()
        for i in range(0, len(view), step):
            self._take_line(len(view[i:i + step]))
            h.wfile.write(view[i:i + step])
            hit.sent += len(view[i:i + step])
            if self.throttle:
                ahead = hit.sent / self.throttle - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)

    def _take_line(self, n: int):
        """Wait for the shared line's turn to carry `n` bytes (`link`): connections queue for one line."""
        if not self.link:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._link_free)
            self._link_free = start + n / self.link
        if start > now:
            time.sleep(start - now)


# ---- real wheels and a simple index for them ----------------------------------------------------------------

# A stand-in `torch` with just enough API for the installer's verification step (and a version).
FAKE_TORCH = '''
__version__ = "{version}"
float32 = "float32"

class version:
    cuda = {cuda!r}

class cuda:
    @staticmethod
    def is_available():
        return False

class Tensor:
    def __init__(self, rows):
        self.rows = rows
    def reshape(self, r, c):
        flat = [x for row in self.rows for x in row]
        return Tensor([flat[i * c:(i + 1) * c] for i in range(r)])
    @property
    def T(self):
        return Tensor([list(col) for col in zip(*self.rows)])
    def __matmul__(self, other):
        return Tensor([[sum(a * b for a, b in zip(row, col)) for col in zip(*other.rows)] for row in self.rows])
    def sum(self):
        return sum(x for row in self.rows for x in row)

def arange(n, dtype=None):
    return Tensor([[float(i) for i in range(n)]])
'''


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(folder: Path, name: str, version: str, files: dict, requires=(), tag="py3-none-any",
                extras=()) -> Path:
    """Write `<name>-<version>-<tag>.whl` holding `files` {archive path: bytes}; returns its path. `extras`: the
    names its METADATA declares (Provides-Extra), without which pip ignores `name[extra]`."""
    dist = f"{name.replace('-', '_')}-{version}"
    meta = "\n".join(["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
                     + [f"Provides-Extra: {e}" for e in extras]
                     + [f"Requires-Dist: {r}" for r in requires]) + "\n"
    wheel = f"Wheel-Version: 1.0\nGenerator: fomm-doctor-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
    entries = dict(files)
    entries[f"{dist}.dist-info/METADATA"] = meta.encode()
    entries[f"{dist}.dist-info/WHEEL"] = wheel.encode()
    record = [f"{p},sha256={_b64(hashlib.sha256(b).digest())},{len(b)}" for p, b in entries.items()]
    record.append(f"{dist}.dist-info/RECORD,,")
    entries[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    path = Path(folder) / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for p, b in entries.items():
            z.writestr(p, b)
    return path


def fake_torch_wheel(folder: Path, version="9.1.0+cpu", cuda=None, payload_bytes=0, requires=()) -> Path:
    """A `torch` wheel; `payload_bytes` of incompressible data make it large enough to cut mid-file."""
    files = {"torch/__init__.py": FAKE_TORCH.format(version=version, cuda=cuda).encode()}
    if payload_bytes:
        files["torch/_payload.bin"] = os.urandom(payload_bytes)
    return build_wheel(folder, "torch", version, files, requires)


def simple_routes(wheels: list, files_prefix="/files/", metadata: bool = False) -> dict:
    """FaultServer routes for a PEP 691/503 index of `wheels`: /simple/<project>/ (JSON when asked) + files.
    `metadata`: also each wheel's METADATA at `<file url>.metadata`, announced on the pages (PEP 658/714), as
    PyPI and the PyTorch index serve it."""
    by_project = {}
    routes = {}
    for w in wheels:
        data = Path(w).read_bytes()
        project = w.name.split("-", 1)[0].replace("_", "-").lower()
        url = files_prefix + w.name.replace("+", "%2B")
        routes[files_prefix + w.name.replace("+", "%2B")] = data
        routes[files_prefix + w.name] = data
        meta_sha = None
        if metadata:
            with zipfile.ZipFile(w) as z:
                meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA")))
            routes[url + ".metadata"] = routes[files_prefix + w.name + ".metadata"] = meta
            meta_sha = hashlib.sha256(meta).hexdigest()
        by_project.setdefault(project, []).append((w.name, url, hashlib.sha256(data).hexdigest(), len(data),
                                                   meta_sha))
    for project, entries in by_project.items():
        js = json.dumps({"meta": {"api-version": "1.0"}, "name": project,
                         "files": [dict({"filename": n, "url": u, "hashes": {"sha256": h}, "size": s},
                                        **({"core-metadata": {"sha256": m}} if m else {}))
                                   for n, u, h, s, m in entries]}).encode()
        html = ("<!DOCTYPE html><html><body>" + "".join(
            f'<a href="{u}#sha256={h}" data-requires-python="&gt;=3.8"'
            + (f' data-core-metadata="sha256={m}" data-dist-info-metadata="sha256={m}"' if m else "")
            + f'>{n}</a><br/>' for n, u, h, _, m in entries)
            + "</body></html>").encode()

        def page(req, js=js, html=html):
            if "application/vnd.pypi.simple.v1+json" in req.headers.get("accept", ""):
                return Reply(200, js, {"Content-Type": "application/vnd.pypi.simple.v1+json"})
            return Reply(200, html, {"Content-Type": "text/html"})
        routes[f"/simple/{project}/"] = page
    return routes


# ---- a raw server, for answers no HTTP server library would send ---------------------------------------------

class RawServer:
    """A 127.0.0.1 server that reads each request head and hands the connection to `answer(srv, conn, request)`,
    which writes whatever bytes it likes: endless bodies, broken headers, one byte at a time.

        with RawServer(endless_answer([("Content-Type", "application/octet-stream")])) as srv:
            download([srv.url("/f")], ...)
            srv.requests   # one Request per connection; srv.sent: body and head bytes the client accepted

    `stopped` is set on stop so that endless answers end; `send` returns False once the client has gone."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list = []
        self.sent = 0
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._sock = None

    def start(self) -> "RawServer":
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)  # the accept loop looks at `stopped` this often
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def stop(self):
        self.stopped.set()
        if self._sock is not None:
            self._sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def send(self, conn, data: bytes) -> bool:
        """Send `data`; False when the client has hung up or the server is stopping."""
        if self.stopped.is_set():
            return False
        try:
            conn.sendall(data)
        except OSError:
            return False
        with self._lock:
            self.sent += len(data)
        return True

    def _accept_loop(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(30)
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    return
                if not chunk:
                    return
                head += chunk
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, target = (lines[0].split(" ") + ["", ""])[:2]
            headers = {}
            for line in lines[1:]:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
            parts = urlsplit(target)
            request = Request(method, parts.path, parse_qs(parts.query), headers)
            with self._lock:
                self.requests.append(request)
            try:
                self.answer(self, conn, request)
            except OSError:
                pass  # the client went away


def raw_head(headers=(), status: str = "200 OK") -> bytes:
    """An HTTP/1.1 answer head from (name, value) pairs, sent as written (odd values included), closing."""
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers] + ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def fixed_answer(headers=(), body: bytes = b"", status: str = "200 OK"):
    """Answer every request with this head and body."""
    def answer(srv, conn, request):
        srv.send(conn, raw_head(headers, status) + body)
    return answer


def endless_answer(headers=(), limit: int = 256 * 1024 * 1024, fill: bytes = b"\0" * 65536):
    """This head, then `fill` again and again until the client hangs up (or `limit` bytes, to end a failed test)."""
    def answer(srv, conn, request):
        if not srv.send(conn, raw_head(headers)):
            return
        sent = 0
        while sent < limit and srv.send(conn, fill):
            sent += len(fill)
    return answer


def trickle_answer(headers=(), body: bytes = b"x" * 1000, every: float = 0.2, head_too: bool = False):
    """One byte of the body every `every` seconds (of the head too with `head_too`): alive, never done."""
    def answer(srv, conn, request):
        data = raw_head(headers) + body
        if not head_too:
            head = raw_head(headers)
            if not srv.send(conn, head):
                return
            data = body
        for i in range(len(data)):
            if not srv.send(conn, data[i:i + 1]) or srv.stopped.wait(every):
                return
    return answer


def gzip_zeros(n: int) -> bytes:
    """gzip of `n` zero bytes, made in pieces (a small body that unpacks to `n` bytes: a gzip bomb)."""
    import zlib
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1024 * 1024)
    out = []
    for i in range(0, n, len(zeros)):
        out.append(packer.compress(zeros[:min(len(zeros), n - i)]))
    out.append(packer.flush())
    return b"".join(out)
