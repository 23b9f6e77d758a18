"""`fomm-doctor install` against indexes that lie, leak, trickle or attack: credentials stay masked, a wheel with
no hash from the network is refused, a mirror's hash is checked against the official index, index data is
validated, pages have a size cap and a deadline, bad options are one sentence. All servers are real HTTP
servers on 127.0.0.1; the wheels are real wheels installed into a fresh virtual environment."""
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli
from fomm_doctor.errors import UserError
from fomm_doctor.install import execute, hashes
from fomm_doctor.install import plan as installer
from fomm_doctor.install.index import (IndexFile, IndexUnavailable, folder_files, parse_html_page, parse_json_page,
                                       read_find_links, read_project)
from httpfaults import FaultServer, Reply, Status, build_wheel, fake_torch_wheel

ENV = {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_INDEX_URL": "", "PIP_EXTRA_INDEX_URL": "",
       "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
OTHER_MACHINE = ["--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--driver", "none"]
WINDOWS = ["--platform", "win_amd64", "--python-version", "3.11", "--driver", "none"]  # a plain wheel is CPU there
SHA = re.compile(r"[0-9a-f]{64}")


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    return str(root / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _json_page(entries: list):
    """A PEP 691 page route: entries are the "files" list as the server wants to say it."""
    body = json.dumps({"meta": {"api-version": "1.0"}, "name": "torch", "files": entries}).encode()
    return lambda req: Reply(200, body, {"Content-Type": "application/vnd.pypi.simple.v1+json"})


def _entry(wheel: Path, sha="real", url=None, **extra) -> dict:
    e = {"filename": wheel.name, "url": url or "/files/" + wheel.name.replace("+", "%2B"), **extra}
    if sha is not None:
        e["hashes"] = {"sha256": _sha(wheel) if sha == "real" else sha}
    return e


def _files(*wheels, data=None) -> dict:
    return {"/files/" + w.name.replace("+", "%2B"): (data or w.read_bytes()) for w in wheels}


def _one_sentence(stderr: str) -> str:
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


def _subdir(folder: Path, name: str) -> Path:
    (folder / name).mkdir()
    return folder / name


def _with_secret(url: str) -> str:
    return url.replace("http://", "http://alice:s3cret@", 1)


# ---- finding 1: credentials are masked in every line, JSON field and sentence of `install` -----------------

def test_credentials_are_masked_in_the_plan_json_and_in_error_sentences(tmp_path):
    wheel = fake_torch_wheel(tmp_path, "9.1.0+cpu")
    routes = {"/simple/torch/": _json_page([_entry(wheel)]), **_files(wheel)}
    with FaultServer(routes) as srv, FaultServer({}) as official:
        mirror = _with_secret(srv.url("/simple/"))
        common = ["install", "--dry-run", "--only", "torch", "--mirror", mirror, "--timeout", "2", "--retries", "1",
                  "--official-pytorch", _with_secret(official.url("/whl/")), *OTHER_MACHINE]
        ok = run_cli(*common, "--json", env=ENV, timeout=120)
        human = run_cli(*common, env=ENV, timeout=120)
        nothing_fits = run_cli(*common, "--torch", "1.0.0", env=ENV, timeout=120)
        srv.script("/simple/torch/", Status(503, times=None))
        dead = run_cli(*common, "--json", env=ENV, timeout=120)
        bad_url = run_cli("install", "--dry-run", "--mirror", "http://alice:s3cret@[::1/simple/", env=ENV)
        asked = [h.headers.get("authorization") for h in srv.hits("/simple/torch/")]
    assert ok.returncode == 0, ok.stderr[-2000:]
    plan = json.loads(ok.stdout)["plan"]
    assert plan["mirror"]["pypi"].startswith("http://alice:****@127.0.0.1:")
    assert plan["torch"]["urls"][0].startswith("http://alice:****@127.0.0.1:")
    assert human.returncode == 0 and "alice:****@127.0.0.1" in human.stdout
    for proc in (nothing_fits, dead, bad_url):
        assert proc.returncode == 2 and "****" in _one_sentence(proc.stderr)
    assert "No torch 1.0.0 wheel" in nothing_fits.stderr and "HTTP 503" in dead.stderr
    for proc in (ok, human, nothing_fits, dead, bad_url):
        assert "s3cret" not in proc.stdout + proc.stderr
    # what is shown is masked; what is sent is the real thing
    assert set(asked) == {"Basic " + base64.b64encode(b"alice:s3cret").decode()}


def test_credentials_are_masked_in_every_line_while_the_index_gets_them(venv, tmp_path):
    dep = build_wheel(tmp_path, "tinydep", "1.0", {"tinydep.py": b"VALUE = 42\n"})
    wheel = fake_torch_wheel(tmp_path, "9.3.0+cpu", requires=["tinydep>=1.0"])
    routes = {"/simple/torch/": _json_page([_entry(wheel)]),
              "/simple/tinydep/": lambda req: Reply(200, json.dumps({"files": [_entry(dep)]}).encode(),
                                                    {"Content-Type": "application/vnd.pypi.simple.v1+json"}),
              **_files(wheel, dep)}
    with FaultServer(routes) as srv, FaultServer({}) as official:
        proc = run_cli("install", "--python", venv, "--yes", "--only", "torch", "--mirror",
                       _with_secret(srv.url("/simple/")), "--official-pytorch", official.url("/whl/"),
                       "--cache-dir", tmp_path / "cache", env=ENV, timeout=240)
        auth = {h.headers.get("authorization") for h in srv.hits() if "tinydep" in h.path}
        dep_hits = [h.path for h in srv.hits() if "tinydep" in h.path]
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = " ".join(proc.stdout.split())  # rich wraps long lines
    assert "s3cret" not in proc.stdout + proc.stderr
    assert re.search(r"\$ \S+ -m pip install .* --no-index --find-links ", out)  # pip reads no index at all
    assert f"{wheel.name}: sha256 verified" in out
    # the dependency's page and file were read as alice (the file's link is on the index's origin)
    assert "/simple/tinydep/" in dep_hits and any(p.startswith("/files/tinydep") for p in dep_hits)
    assert auth == {"Basic " + base64.b64encode(b"alice:s3cret").decode()}


# ---- finding 2: what vouches for the wheel ----------------------------------------------------------------

def test_a_wheel_without_published_sha256_is_refused_unless_allowed(venv, tmp_path):
    wheel = fake_torch_wheel(tmp_path, "9.4.0+cpu")
    routes = {"/simple/torch/": _json_page([_entry(wheel, sha=None)]), **_files(wheel)}
    with FaultServer(routes) as srv, FaultServer({}) as official:
        args = ["install", "--python", venv, "--yes", "--only", "torch", "--mirror", srv.url("/simple/"),
                "--official-pytorch", official.url("/whl/"), "--cache-dir", tmp_path / "cache"]
        plan = json.loads(run_cli(*args, "--dry-run", "--json", env=ENV, timeout=120).stdout)["plan"]
        refused = run_cli(*args, env=ENV, timeout=120)
        fetched_when_refused = [h for h in srv.hits() if h.path.startswith("/files/")]
        allowed = run_cli(*args, "--allow-unverified", "--json", env=ENV, timeout=240)
        official_asked = [h.path for h in official.hits()]
    assert plan["torch"]["verified"] == "none" and plan["torch"]["sha256"] is None
    assert any("--allow-unverified" in w for w in plan["warnings"])
    assert any("plain http://" in w for w in plan["warnings"])  # a mirror over plain http is a warning
    assert refused.returncode == 2 and "--allow-unverified" in _one_sentence(refused.stderr)
    assert fetched_when_refused == []
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    outcome = json.loads(allowed.stdout)["outcome"]
    assert outcome["torch"]["verified"] == "none" and outcome["verify"]["version"] == "9.4.0+cpu"
    assert official_asked and set(official_asked) == {"/whl/cpu/torch/"}  # asked, and it had nothing to say


def test_a_local_wheel_is_the_users_own_and_says_so(venv, tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    wheel = fake_torch_wheel(folder, "9.5.0+cpu")
    with FaultServer({}) as empty:  # the index has no torch; pip's find-links folder has it, with no hash
        proc = run_cli("install", "--python", venv, "--yes", "--only", "torch", "--mirror", empty.url("/simple/"),
                       "--cache-dir", tmp_path / "cache", env=dict(ENV, PIP_FIND_LINKS=str(folder)), timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = " ".join(proc.stdout.split())
    assert f"{wheel.name}: local file, no hash to check" in out
    assert "(installed; local file, no hash to check) imports and computes" in out
    assert not (tmp_path / "cache").exists()  # nothing was downloaded or copied


def test_a_mirror_hash_that_differs_from_the_official_one_is_refused(tmp_path):
    real = fake_torch_wheel(tmp_path, "2.14.1")
    changed = fake_torch_wheel(_subdir(tmp_path, "x"), "2.14.1", payload_bytes=10)
    assert changed.name == real.name and _sha(changed) != _sha(real)
    with FaultServer({"/simple/torch/": _json_page([_entry(changed)]), **_files(changed)}) as mirror, \
            FaultServer({"/simple/torch/": _json_page([_entry(real)])}) as official:
        proc = run_cli("install", "--dry-run", "--json", "--only", "torch", "--mirror", mirror.url("/simple/"),
                       "--official-pypi", official.url("/simple/"), *WINDOWS, env=ENV, timeout=120)
        fetched = [h for h in mirror.hits() if h.path.startswith("/files/")]
    sentence = _one_sentence(proc.stderr)
    assert proc.returncode == 3 and "different file under the same name" in sentence
    assert _sha(changed)[:16] in sentence and _sha(real)[:16] in sentence and fetched == []


def test_a_mirror_without_hash_is_checked_against_the_official_hash(venv, tmp_path):
    wheel = fake_torch_wheel(tmp_path, "9.6.0+cpu", payload_bytes=50_000)
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the mirror serves changed bytes and publishes no hash to catch it
    with FaultServer({"/simple/torch/": _json_page([_entry(wheel, sha=None)]), **_files(wheel, data=bytes(data))}) \
            as mirror, FaultServer({"/whl/cpu/torch/": _json_page([_entry(wheel)])}) as official:
        args = ["install", "--python", venv, "--yes", "--only", "torch", "--mirror", mirror.url("/simple/"),
                "--official-pytorch", official.url("/whl/"), "--cache-dir", tmp_path / "cache", "--retries", "1"]
        plan = json.loads(run_cli(*args, "--dry-run", "--json", env=ENV, timeout=120).stdout)["plan"]["torch"]
        proc = run_cli(*args, env=ENV, timeout=240)
        mirror.routes["/files/" + wheel.name.replace("+", "%2B")] = wheel.read_bytes()  # the mirror is fixed
        fixed = run_cli(*args, "--json", env=ENV, timeout=240)
    assert plan["sha256"] == _sha(wheel) and plan["verified"] == "sha256"
    assert plan["hash_check"]["outcome"] == "official hash used"
    assert proc.returncode == 3 and "does not match its published sha256" in _one_sentence(proc.stderr)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert json.loads(fixed.stdout)["outcome"]["torch"]["verified"] == "sha256"


def test_which_sha256_vouches_for_the_wheel():
    """settle_hash is pure: the listings of the chosen file name and what the official index said."""
    best = SimpleNamespace(filename="torch-1.0.0-py3-none-any.whl")

    def listing(kind, sha, host="mirror.example"):
        return hashes.Listing(source=kind, source_url=f"https://{host}/simple/", url=f"https://{host}/f/t.whl",
                                 sha256=sha, size=None, kind=kind, best=kind != "official")
    a, b = "a" * 64, "b" * 64
    def official(sha256, listed=True, error=None):
        return hashes.OfficialWord("https://pypi.example/simple/torch/", sha256, listed, error)
    cases = [
        ([listing("mirror", a)], official(a), a, "match"),
        ([listing("mirror", None)], official(a), a, "official hash used"),
        ([listing("mirror", a)], official(None, listed=False), a, "not listed"),
        ([listing("mirror", None)], official(None, listed=False, error="gone."), None, "not read"),
        ([listing("mirror", None)], None, None, "off"),
        ([listing("mirror", None), listing("official", a, "pypi.example")], None, a, "official"),
        ([listing("local", None)], None, None, "local"),
    ]
    for listings, looked, sha, outcome in cases:
        got = hashes.settle_hash(best, listings, looked)
        assert (got.sha256, got.check.outcome) == (sha, outcome)
    assert hashes.verification(None, ["file:///w/t.whl", "https://m/t.whl"]) == "local"
    assert hashes.verification(None, ["https://m/t.whl"]) == "none"
    assert hashes.verification(a, ["https://m/t.whl"]) == "sha256"
    with pytest.raises(hashes.HashMismatch, match=r"on mirror\.example but bbbbbbbbbbbbbbbb\.\.\. on the official "
                                                     r"index pypi\.example"):
        hashes.settle_hash(best, [listing("mirror", a), listing("official", b, "pypi.example")], None)


class _Trickle:
    """A real HTTP server on 127.0.0.1 that answers 200 with a valid page, one byte every 0.2 s (a socket
    timeout never fires; only an overall deadline ends it)."""

    def __init__(self, body: bytes, ctype="application/vnd.pypi.simple.v1+json"):
        self.body, self.ctype, self.paths = body, ctype, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", outer.ctype)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                try:
                    for i in range(len(outer.body)):
                        self.wfile.write(outer.body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(0.2)
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_an_official_index_that_trickles_is_a_warning_not_a_wait(tmp_path):
    wheel = fake_torch_wheel(tmp_path, "9.7.0+cpu")
    page = json.dumps({"files": [_entry(wheel, sha="f" * 64)]}).encode()  # would refuse, if it ever arrived
    with FaultServer({"/simple/torch/": _json_page([_entry(wheel)]), **_files(wheel)}) as mirror, \
            _Trickle(page) as official:
        proc = run_cli("install", "--dry-run", "--json", "--only", "torch", "--mirror", mirror.url("/simple/"),
                       "--official-pytorch", official.url("/whl/"), "--timeout", "1", *OTHER_MACHINE, env=ENV,
                       timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    t = json.loads(proc.stdout)["plan"]["torch"]
    assert t["sha256"] == _sha(wheel) and t["hash_check"]["outcome"] == "not read"
    assert "was still sending" in t["hash_check"]["error"] and official.paths == ["/whl/cpu/torch/"]
    assert any("could not be asked" in w for w in json.loads(proc.stdout)["plan"]["warnings"])


# ---- finding 3: everything an index says is validated -------------------------------------------------------

HOSTILE = [
    {"filename": "torch-1.0.0-py3-none-any.whl", "url": "/f/torch-1.0.0-py3-none-any.whl",
     "hashes": {"sha256": "../../x"}, "size": "big"},
    {"filename": "../../torch-99.0.0-py3-none-any.whl", "url": "/f/a.whl", "hashes": {"sha256": "a" * 64}},
    {"filename": "%2F..%2Ftorch-99.0.1-py3-none-any.whl", "url": "/f/b.whl"},
    {"filename": "torch-99.0.2-py3-none-any.whl", "url": "file:///etc/torch-99.0.2-py3-none-any.whl"},
    {"filename": "C:torch-99.0.3-py3-none-any.whl", "url": "/f/c.whl"},
    {"filename": "torch-99.0.4-py3-none-any.whl\x00.txt", "url": "/f/d.whl"},
    {"filename": "torch-1.0.1-py3-none-any.whl", "url": "/f/torch-1.0.1-py3-none-any.whl", "size": True,
     "hashes": {"sha256": "A" * 64 + "0"}, "yanked": {"why": 1}, "requires-python": 3.11},
    {"filename": "torch-1.0.2-py3-none-any.whl", "url": "/f/torch-1.0.2-py3-none-any.whl", "size": -5,
     "hashes": "sha256", "core-metadata": {"sha256": "zz"}},
    {"url": "/f/no-name.whl"}, {"filename": "torch-1.0.3-py3-none-any.whl"}, "not a dict", None, 7,
]


def test_hostile_json_entries_are_dropped_or_cleaned():
    files = parse_json_page(json.dumps({"files": HOSTILE}), "https://idx.example/simple/torch/")
    assert [f.filename for f in files] == ["torch-1.0.0-py3-none-any.whl", "torch-1.0.1-py3-none-any.whl",
                                           "torch-1.0.2-py3-none-any.whl"]
    assert [(f.sha256, f.size) for f in files] == [(None, None)] * 3
    assert files[1].requires_python is None and files[1].yanked and files[1].yanked_reason is None
    assert files[2].metadata and files[2].metadata_sha256 is None
    for bad in ('{"files": {}}', "[1, 2]", "<html>", "[" * 100_000):
        with pytest.raises(IndexUnavailable, match=r"^The index page https://idx\.example/simple/torch/ is .*\.$"):
            parse_json_page(bad, "https://idx.example/simple/torch/")


def test_hostile_html_links_are_dropped():
    html = ('<base href="http://[::1"><a href="/f/%2F..%2Ftorch-99.0.0-py3-none-any.whl">a</a>'
            '<a href="/f/..%5Ctorch-99.0.1-py3-none-any.whl">b</a>'
            '<a href="file:///etc/torch-99.0.2-py3-none-any.whl">c</a>'
            '<a href="http://[::1/torch-99.0.3-py3-none-any.whl">d</a>'
            '<a href="http://h:port/torch-99.0.4-py3-none-any.whl">e</a>'
            '<a href="/f/torch-1.0.0-py3-none-any.whl#sha256=' + "a" * 65 + '">ok</a>'
            '<a href="/f/torch-1.0.1-py3-none-any.whl#sha256=' + "B" * 64 + '">ok</a>')
    files = parse_html_page(html, "https://idx.example/simple/torch/")
    assert [(f.filename, f.sha256) for f in files] == [("torch-1.0.0-py3-none-any.whl", None),
                                                        ("torch-1.0.1-py3-none-any.whl", "b" * 64)]
    # a local index may link to local files; a remote one may not
    local = parse_html_page('<a href="file:///w/torch-1.0.0-py3-none-any.whl">x</a>', "file:///idx/torch/")
    assert [f.url for f in local] == ["file:///w/torch-1.0.0-py3-none-any.whl"]


def test_a_folder_of_wheels_keeps_only_regular_files_with_plain_names(tmp_path):
    good = fake_torch_wheel(tmp_path, "1.0.0")
    (tmp_path / "torch-2.0.0-py3-none-any.whl").mkdir()  # a folder with a wheel's name
    (tmp_path / "torch-3.0.0-py3-none-any.whl").symlink_to(tmp_path / "missing")  # a broken link
    (tmp_path / "torch-4.0.0-py3-none-any.whl\n").write_bytes(b"x")
    assert [f.filename for f in folder_files(tmp_path, "torch")] == [good.name]


def test_a_hostile_index_writes_nothing_outside_its_folders(tmp_path):
    """torch 99 under a path-traversal name would win the choice and be written to cache/wheels/../../ ."""
    wheel = fake_torch_wheel(tmp_path, "9.1.0+cpu")
    evil = fake_torch_wheel(_subdir(tmp_path, "e"), "99.0.0")
    entries = [_entry(wheel), dict(_entry(evil), filename="../../" + evil.name, url="/files/" + evil.name),
               dict(_entry(evil), filename="..%2F..%2F" + evil.name, url="/files/..%2F..%2F" + evil.name)]
    routes = {"/simple/torch/": _json_page(entries), **_files(wheel, evil),
              "/files/..%2F..%2F" + evil.name: evil.read_bytes()}
    work = tmp_path / "a" / "b"
    with FaultServer(routes) as srv:
        proc = run_cli("install", "--download-only", work / "bundle", "--json", "--only", "torch", "--mirror",
                       srv.url("/simple/"), "--cache-dir", work / "cache", "--official-pytorch", "none",
                       "--official-pypi", "none", *OTHER_MACHINE, env=ENV, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["plan"]["torch"]["file"] == wheel.name
    assert sorted(p.name for p in (work / "bundle").iterdir()) == sorted([wheel.name, "fomm-bundle.json"])
    written = [p for p in tmp_path.rglob("torch-99*")]
    assert written == [evil]  # only the test's own copy: nothing landed beside or above the cache


def test_paths_from_plans_and_manifests_stay_inside_their_folder(tmp_path):
    assert execute.inside(tmp_path, "torch-1.0-py3-none-any.whl") == tmp_path / "torch-1.0-py3-none-any.whl"
    for name in ("../torch-1.0-py3-none-any.whl", "a/torch-1.0-py3-none-any.whl", "/etc/passwd", "..", "",
                 "C:torch.whl", "x\x00.whl"):
        with pytest.raises(UserError, match="is not a plain file name"):
            execute.inside(tmp_path, name)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    whl = "torch-1-py3-none-any.whl"
    for manifest, words in (
            ({"schema": 2, "torch": {"file": "../evil.whl", "version": "1", "backend": "cpu"}, "sha256": "a" * 64,
              "files": {"../evil.whl": "a" * 64}}, "is not a plain wheel file name"),
            ({"schema": 2, "torch": {"file": whl, "version": "1", "backend": "cpu"}, "sha256": "a" * 64,
              "files": {whl: "a" * 64}, "packages": ["--index-url=http://127.0.0.1:9/simple/"]},
             "which is not a requirement"),
            ({"schema": 2, "torch": "t.whl", "sha256": 5}, "holds no bundle")):
        (bundle / "fomm-bundle.json").write_text(json.dumps(manifest))
        proc = run_cli("install", "--from", bundle, "--python", sys.executable, env=ENV, timeout=60)
        assert proc.returncode == 2 and words in _one_sentence(proc.stderr)
    assert not (tmp_path / "evil.whl").exists()


# ---- finding 4: pages have a size cap and an overall deadline ----------------------------------------------

def _slow_page(wheel: Path) -> bytes:
    return json.dumps({"files": [_entry(wheel)]}).encode()  # valid: it would be believed if it ever arrived


def test_a_trickling_index_page_is_cut_off_at_the_deadline(tmp_path):
    wheel = fake_torch_wheel(tmp_path, "9.1.0+cpu")
    with _Trickle(_slow_page(wheel)) as srv:
        with pytest.raises(IndexUnavailable, match=r"^The index page http://127\.0\.0\.1:\d+/simple/torch/ was still "
                                                   r"sending after 1\.5 s, so it was cut off\.$"):
            read_project(srv.url("/simple/"), "torch", timeout=1, retries=3, deadline=1.5)
        with pytest.raises(IndexUnavailable, match="was still sending"):
            read_find_links(srv.url("/links/"), "torch", timeout=1, deadline=1)
        # PEP 658 metadata: left out, the wheel's own METADATA decides later
        f = IndexFile("torch-1.0.0-py3-none-any.whl", srv.url("/f/torch-1.0.0-py3-none-any.whl"), metadata=True)
        assert installer.metadata_of([SimpleNamespace(filename=f.filename, file=f)], timeout=0.5) == {}


def test_a_trickling_index_ends_the_command_with_a_sentence_or_a_note(tmp_path):
    wheel = fake_torch_wheel(tmp_path, "9.1.0+cpu")
    with _Trickle(_slow_page(wheel)) as slow, FaultServer({"/simple/torch/": _json_page([_entry(wheel)]),
                                                           **_files(wheel)}) as good:
        only_slow = run_cli("install", "--dry-run", "--only", "torch", "--mirror", slow.url("/simple/"),
                            "--timeout", "0.5", "--official-pytorch", "none", *OTHER_MACHINE, env=ENV, timeout=120)
        slow_links = run_cli("install", "--dry-run", "--json", "--only", "torch", "--mirror", good.url("/simple/"),
                             "--timeout", "0.5", "--official-pytorch", "none", *OTHER_MACHINE,
                             env=dict(ENV, PIP_FIND_LINKS=slow.url("/links/")), timeout=120)
    assert only_slow.returncode == 2
    assert "because no index could be read" in _one_sentence(only_slow.stderr) and "was still sending after 2 s" in only_slow.stderr
    assert slow_links.returncode == 0, slow_links.stderr[-2000:]
    notes = [s["error"] for s in json.loads(slow_links.stdout)["plan"]["torch"]["sources"] if not s["ok"]]
    assert len(notes) == 1 and "was still sending after 2 s" in notes[0]


# ---- finding 5: bad locations are one sentence, before any network work ------------------------------------

@pytest.mark.parametrize("option,value,words", [
    ("--mirror", "http://[::1", "is not a valid URL"),
    ("--mirror", "http://127.0.0.1:port/simple/", "is not a valid URL"),
    ("--mirror", "ftp://127.0.0.1/simple/", "must be an http://, https:// or file:// URL"),
    ("--mirror", "https:///simple/", "has no host name"),
    ("--pytorch-index", "http://[::1/whl/", "is not a valid URL"),
    ("--official-pypi", "http://127.0.0.1:99999/simple/", "is not a valid URL"),
])
def test_a_malformed_url_is_one_sentence_at_once(option, value, words):
    proc = run_cli("install", "--dry-run", "--only", "torch", option, value, env=ENV, timeout=60)
    assert proc.returncode == 2 and words in _one_sentence(proc.stderr) and option in proc.stderr


def test_a_cache_dir_that_is_a_file_is_one_sentence_before_any_download(tmp_path):
    wheel = fake_torch_wheel(tmp_path, "9.1.0+cpu")
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file")
    with FaultServer({"/simple/torch/": _json_page([_entry(wheel)]), **_files(wheel)}) as srv:
        for cache in (not_a_folder, not_a_folder / "sub"):
            proc = run_cli("install", "--yes", "--only", "torch", "--mirror", srv.url("/simple/"), "--cache-dir",
                           cache, env=ENV, timeout=60)
            assert proc.returncode == 2 and "--cache-dir" in _one_sentence(proc.stderr)
            assert "is not a folder" in proc.stderr
        bundle = run_cli("install", "--download-only", not_a_folder, "--only", "torch", "--mirror",
                         srv.url("/simple/"), *OTHER_MACHINE, env=ENV, timeout=60)
        assert bundle.returncode == 2 and "--download-only" in _one_sentence(bundle.stderr)
        assert srv.hits() == []


# ---- finding 6: the parsers, for any input, return clean files or raise one sentence ------------------------

PAGE_URLS = ["https://idx.example/simple/torch/", "http://alice:s3cret@127.0.0.1:8080/simple/torch/",
             "file:///srv/simple/torch/"]
NAMES = st.one_of(
    st.sampled_from(["torch-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl", "torch-2.0.0+cpu-py3-none-any.whl",
                     "torch-1.0.tar.gz", "torch-1.0.zip", "../../torch-9.0.0-py3-none-any.whl", "..",
                     "%2F..%2Fevil-1.0-py3-none-any.whl", "a/b-1.0-py3-none-any.whl", "a\\b-1.0-py3-none-any.whl",
                     "x\x00-1.0-py3-none-any.whl", "torch-1.0-py3-none-any.whl\n", "C:x-1.0-py3-none-any.whl",
                     "torch-not.a.version-py3-none-any.whl", "", "torch-2.0.0-1-py3-none-any.whl"]),
    st.text(max_size=40))
URLS = st.one_of(st.sampled_from(["/f/x.whl", "file:///etc/passwd", "http://[::1/x", "https://h:port/x",
                                  "//other.example/f/t.whl", "javascript:alert(1)", "../../../x",
                                  "https://h/f/t.whl#sha256=" + "a" * 64, "#sha256=zz", ""]), st.text(max_size=30))
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**20, max_value=10**20),
                         st.floats(allow_nan=False), st.text(max_size=20))
JSON_ANY = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                              st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                        max_leaves=12)
HASH = st.one_of(st.sampled_from(["a" * 64, "A" * 64, "../../x", "a" * 63, "a" * 65, "g" * 64, "ab" * 32 + "\n"]),
                 JSON_ANY)
FILE_ENTRY = st.fixed_dictionaries({}, optional={
    "filename": st.one_of(NAMES, JSON_ANY), "url": st.one_of(URLS, JSON_ANY),
    "hashes": st.one_of(st.fixed_dictionaries({}, optional={"sha256": HASH}), JSON_ANY),
    "size": st.one_of(st.integers(min_value=-5, max_value=10**12), JSON_ANY),
    "yanked": JSON_ANY, "requires-python": JSON_ANY, "core-metadata": st.one_of(
        st.fixed_dictionaries({}, optional={"sha256": HASH}), JSON_ANY), "dist-info-metadata": JSON_ANY})
PAGES = st.one_of(st.fixed_dictionaries({}, optional={"files": st.one_of(st.lists(st.one_of(FILE_ENTRY, JSON_ANY),
                                                                                  max_size=5), JSON_ANY),
                                                      "meta": JSON_ANY, "name": JSON_ANY}), JSON_ANY)


def _clean(files: list, page_url: str) -> None:
    assert isinstance(files, list)
    for f in files:
        assert isinstance(f, IndexFile)
        name = f.filename
        assert isinstance(name, str) and name and name not in (".", "..") and ".." not in name
        assert not any(c in name for c in "/\\:\x00%") and all(ord(c) >= 32 for c in name)
        assert f.sha256 is None or SHA.fullmatch(f.sha256)
        assert f.metadata_sha256 is None or SHA.fullmatch(f.metadata_sha256)
        assert f.size is None or (type(f.size) is int and f.size >= 0)
        assert f.requires_python is None or isinstance(f.requires_python, str)
        assert f.yanked_reason is None or isinstance(f.yanked_reason, str)
        scheme = f.url.split(":", 1)[0].lower()
        assert scheme in (("http", "https") if not page_url.startswith("file:") else ("http", "https", "file"))


def _parse_or_sentence(parse, text: str, page_url: str) -> None:
    try:
        files = parse(text, page_url)
    except UserError as exc:  # IndexUnavailable: one sentence, credentials masked
        msg = str(exc)
        assert "\n" not in msg and msg.endswith(".") and "s3cret" not in msg
        return
    _clean(files, page_url)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page=PAGES, page_url=st.sampled_from(PAGE_URLS))
def test_json_pages_of_any_shape_give_clean_files_or_a_sentence(page, page_url):
    _parse_or_sentence(parse_json_page, json.dumps(page), page_url)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300), page_url=st.sampled_from(PAGE_URLS))
def test_any_text_as_a_json_or_html_page_gives_clean_files_or_a_sentence(text, page_url):
    _parse_or_sentence(parse_json_page, text, page_url)
    _parse_or_sentence(parse_html_page, text, page_url)


ATTR = st.sampled_from(["href", "data-requires-python", "data-yanked", "data-core-metadata",
                        "data-dist-info-metadata", "x"])
ANCHOR = st.builds(lambda tag, attrs, label: f"<{tag} " + " ".join(
    f'{k}="{v}"' if v is not None else k for k, v in attrs) + f">{label}</{tag}>",
    st.sampled_from(["a", "A", "base", "link"]),
    st.lists(st.tuples(ATTR, st.one_of(st.none(), URLS, NAMES, st.text(max_size=20).map(
        lambda t: "/f/" + t), NAMES.map(lambda n: "/f/" + n + "#sha256=" + "c" * 64))), max_size=4),
    st.text(max_size=10))


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.one_of(ANCHOR, st.text(max_size=20)), max_size=8), page_url=st.sampled_from(PAGE_URLS))
def test_html_pages_of_links_give_clean_files_or_a_sentence(parts, page_url):
    _parse_or_sentence(parse_html_page, "".join(parts), page_url)
