"""`fomm-doctor ui` as an attacker or a careless user meets it: a real server (subprocess) on 127.0.0.1, spoken to
over raw HTTP and gradio's own client. It serves only what it wrote this run, answers only its own Host names,
caps and prunes uploads, never writes over an earlier result, asks for --auth when others can reach it."""
import hashlib
import http.client
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.slow(45)  # seconds on 2 cores: run among the first (conftest.py)

from conftest import make_clip, run_cli

if importlib.util.find_spec("gradio") is None:  # looked up, not imported: gradio's import alone takes seconds
    pytest.skip("gradio is not installed (Python 3.9, or no [ui] extra)", allow_module_level=True)

PORTRAIT = Path(__file__).parent / "data" / "faces" / "astronaut_portrait.jpg"
SESSION = re.compile(r"page-\d{8}-\d{6}-[A-Za-z0-9_]{8}")    # the page's folders, as --help describes them
UPLOAD = re.compile(r"[0-9a-f]{64}")                          # gradio's folder for one upload
KEEP_SESSIONS, KEEP_UPLOADS = 5, 20                           # as --help says


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    """A running `fomm-doctor ui ARGS`; its stderr goes to a file (read with .said())."""

    def __init__(self, root: Path, results: Path, *args):
        self.port, self.results = _free_port(), results
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = root / f"ui-{self.port}.log"
        self.env = dict(os.environ, FOMM_DOCTOR_HOME=str(root / "home"), FOMM_DOCTOR_CACHE=str(root / "cache"))
        self.env.pop("FOMM_CHECKPOINTS_DIR", None)
        self.env.pop("FOMM_DOCTOR_UI_AUTH", None)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "fomm_doctor", "ui", "--port", str(self.port),
                                          "--results", str(results), *args], env=self.env,
                                         stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 120
        while not self._up():
            assert self.proc.poll() is None, f"the ui server exited: {self.said()}"
            assert time.monotonic() < deadline, f"the ui server did not start: {self.said()}"
            time.sleep(0.3)
        self.session = Path(self.said().split("results go to ", 1)[1].splitlines()[0])

    def _up(self) -> bool:
        try:
            return requests.get(self.url, timeout=2).status_code in (200, 401)
        except requests.RequestException:
            return False

    def said(self) -> str:
        return self.log.read_text()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def raw(self, method: str, path: str, host: str, body: bytes = None, headers=None) -> tuple:
        """(status, body) of one request with exactly this Host header."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host)
            for key, value in (headers or {}).items():
                conn.putheader(key, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            answer = conn.getresponse()
            return answer.status, answer.read()
        finally:
            conn.close()

    def upload(self, name: str, data: bytes, chunked: bool = False):
        files = {"files": (name, iter([data]) if chunked else data, "application/octet-stream")}
        if chunked:   # no Content-Length: the size is only known while the body arrives
            return requests.post(self.url + "gradio_api/upload", data=_multipart(name, data), timeout=60,
                                 headers={"Content-Type": "multipart/form-data; boundary=xx"})
        return requests.post(self.url + "gradio_api/upload", files=files, timeout=60)


def _multipart(name, data):
    yield (f'--xx\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
           'Content-Type: application/octet-stream\r\n\r\n').encode()
    for i in range(0, len(data), 65536):
        yield data[i:i + 65536]
    yield b"\r\n--xx--\r\n"


def _uploads(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if UPLOAD.fullmatch(p.name))


def _fingerprint(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A results folder as a careless user gives it: a home folder with a key, earlier session folders of the
    page (more than are kept), a link named like one pointing elsewhere."""
    root = tmp_path_factory.mktemp("exposed")
    results = root / "home"
    (results / ".ssh").mkdir(parents=True)
    (results / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    (results / "notes.txt").write_text("mine")
    for i in range(1, 8):
        (results / f"page-2000010{i}-000000-abcdefgh").mkdir()
        (results / f"page-2000010{i}-000000-abcdefgh" / "a-b-1.mp4").write_bytes(b"earlier result %d" % i)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    (results / "page-20000109-000000-linklink").symlink_to(elsewhere)
    return root, results, _fingerprint(elsewhere)


@pytest.fixture(scope="module")
def page(planted):
    root, results, _ = planted
    server = Page(root, results)
    yield server
    server.stop()


def test_the_page_serves_no_file_it_did_not_write(page, planted):
    key = page.results / ".ssh" / "id_rsa"
    before = key.read_bytes()
    for path in [key, page.results / "notes.txt", page.session / ".." / ".ssh" / "id_rsa",
                 page.results / "page-20000107-000000-abcdefgh" / "a-b-1.mp4"]:
        status, body = page.raw("GET", f"/gradio_api/file={path}", f"127.0.0.1:{page.port}")
        assert status in (403, 404), (path, status)
        assert b"secret" not in body and b"mine" not in body and b"earlier" not in body
    assert key.read_bytes() == before
    assert page.session.parent == page.results and oct(page.session.stat().st_mode & 0o777) == "0o700"
    examples = Path(__file__).parent.parent / "fomm_doctor" / "ui" / "examples"
    status, _ = page.raw("GET", f"/gradio_api/file={examples / 'README.md'}", f"127.0.0.1:{page.port}")
    assert status in (403, 404)                      # of the examples' folder, only the two examples are served
    status, body = page.raw("GET", f"/gradio_api/file={examples / 'portrait.jpg'}", f"127.0.0.1:{page.port}")
    assert status == 200 and body == PORTRAIT.read_bytes()
    uploaded = page.upload("photo.jpg", PORTRAIT.read_bytes())          # what it wrote itself it does serve
    assert uploaded.status_code == 200, uploaded.text
    served = requests.get(page.url + "gradio_api/file=" + uploaded.json()[0], timeout=30)
    assert served.status_code == 200 and served.content == PORTRAIT.read_bytes()
    assert Path(uploaded.json()[0]).parent.parent == page.session


def test_earlier_sessions_are_pruned_and_nothing_else_is_touched(page, planted):
    _, results, elsewhere_before = planted
    sessions = sorted(p.name for p in results.iterdir() if SESSION.fullmatch(p.name) and not p.is_symlink())
    assert sessions == [f"page-2000010{i}-000000-abcdefgh" for i in range(9 - KEEP_SESSIONS, 8)] + [page.session.name]
    assert (results / "notes.txt").read_text() == "mine" and (results / ".ssh" / "id_rsa").exists()
    assert (results / "page-20000109-000000-linklink").is_symlink()
    assert _fingerprint(results / "page-20000109-000000-linklink") == elsewhere_before


def test_only_our_own_host_names_are_answered(page):
    for host in ["evil.example", f"evil.example:{page.port}", f"127.0.0.1.evil.example:{page.port}",
                 f"127.0.0.1:{page.port + 1}", "", "[::1"]:
        status, body = page.raw("GET", "/config", host)
        assert status == 421, (host, status)
        assert body.decode().count(".") == 1 and b"answers only at its own address" in body
    status, _ = page.raw("POST", "/gradio_api/upload", "evil.example", b"x" * 10)
    assert status == 421
    for host in [f"127.0.0.1:{page.port}", f"localhost:{page.port}", f"LocalHost.:{page.port}",
                 f"[::1]:{page.port}"]:
        status, body = page.raw("GET", "/config", host)
        assert status == 200, (host, status)
        assert json.loads(body)["components"]


def test_an_upload_over_the_cap_is_refused_and_not_kept(tmp_path):
    page = Page(tmp_path, tmp_path / "results", "--max-upload-mb", "1")
    try:
        _over_the_cap(page)
    finally:
        page.stop()


def _over_the_cap(page):
    before = _uploads(page.session)
    big = os.urandom(2 * 1024 * 1024)
    answer = page.upload("big.mp4", big)
    assert answer.status_code == 413
    assert "larger than the page takes (1 MB per file" in answer.text and answer.text.count(".") == 1
    streamed = page.upload("big.mp4", big, chunked=True)                # no declared size: gradio's own cap
    assert streamed.status_code == 413, streamed.text
    assert _uploads(page.session) == before
    assert not [p for p in page.session.rglob("*") if p.is_file() and p.stat().st_size >= 1024 * 1024]


def test_uploads_are_kept_by_count_only(page):
    for i in range(KEEP_UPLOADS + 3):
        assert page.upload(f"f{i}.bin", b"upload %d" % i).status_code == 200
    kept = _uploads(page.session)
    assert len(kept) == KEEP_UPLOADS
    newest = sorted(page.session.glob("*/f*.bin"), key=lambda p: int(p.stem[1:]))
    assert [p.stem for p in newest][-1] == f"f{KEEP_UPLOADS + 2}"


def _animate(url: str, photo: Path, clip: Path, auth=None):
    from gradio_client import Client, handle_file
    client = Client(url, auth=auth, verbose=False, download_files=False)
    return client.predict(handle_file(str(photo)), handle_file(str(clip)), None, "relative",
                          False, False, False, "fp32", api_name="/animate")


def test_a_restart_never_writes_over_an_earlier_result(page, tmp_path):
    clip = tmp_path / "talk.mp4"
    make_clip(clip, frames=2, size=(64, 64))
    first = _animate(page.url, PORTRAIT, clip)
    videos = list(page.session.glob("*.mp4"))
    assert len(videos) == 1 and "2 frames" in first[2], first
    before = _fingerprint(page.session)
    again = Page(tmp_path, page.results)        # the same --results, started again
    try:
        _animate(again.url, PORTRAIT, clip)
    finally:
        again.stop()
    assert _fingerprint(page.session) == before
    assert again.session != page.session
    assert [p.name for p in again.session.glob("*.mp4")] == [videos[0].name]    # same name, its own folder


def test_a_playlist_as_the_driving_video_is_refused_with_the_clis_sentence(page, tmp_path):
    """A playlist naming a local .ts reads that file through ffmpeg unless the media opener refuses it."""
    from gradio_client.exceptions import AppError
    private = tmp_path / "private.ts"
    make_clip(private, frames=4, extra_args=("-f", "mpegts"))
    playlist = tmp_path / "drive.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{private}\n#EXT-X-ENDLIST\n")
    r = run_cli("animate", PORTRAIT, playlist, "-o", tmp_path / "o.mp4", env=page.env)
    before = sorted(page.session.glob("*.mp4"))
    with pytest.raises(AppError) as refused:
        _animate(page.url, PORTRAIT, playlist)
    shown = str(refused.value)
    assert sorted(page.session.glob("*.mp4")) == before          # no result
    assert r.returncode == 2 and r.stderr.startswith("error: "), r.stderr
    sentence = r.stderr[len("error: "):].strip().replace(str(playlist), "drive.m3u8")
    assert shown.strip() == sentence and "Traceback" not in shown


def test_with_auth_nothing_is_served_without_the_password(tmp_path):
    page = Page(tmp_path, tmp_path / "results", "--host", "0.0.0.0", "--auth", "alice:correct horse")
    try:
        assert "WARNING: --host 0.0.0.0" in page.said() and "plain HTTP" in page.said()
        assert page.raw("GET", "/config", "evil.example")[0] == 421          # still only its own names
        assert requests.get(page.url + "config", timeout=30).status_code == 401
        assert page.upload("x.bin", b"x").status_code == 401
        assert requests.post(page.url + "login", data={"username": "alice", "password": "wrong"},
                             timeout=30).status_code != 200
        with requests.Session() as user:
            assert user.post(page.url + "login", data={"username": "alice", "password": "correct horse"},
                             timeout=30).status_code == 200
            assert user.get(page.url + "config", timeout=30).status_code == 200
    finally:
        page.stop()
    assert not _uploads(page.session)


@pytest.mark.parametrize("args, said", [
    (["--host", "0.0.0.0"], "--host 0.0.0.0 lets others use this page"),
    (["--share"], "a public link (--share) lets others use this page"),
    (["--host", "192.168.1.5", "--auth", "alice"], "--auth must be USER:PASS"),
])
def test_a_page_others_can_reach_needs_auth(tmp_path, args, said):
    r = run_cli("ui", "--port", str(_free_port()), "--results", tmp_path / "results", *args, timeout=120,
                env={"FOMM_DOCTOR_UI_AUTH": ""})
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and said in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "results").exists()                     # refused before anything was made


def test_stop_ends_the_callers_run_between_batches_and_writes_nothing(tmp_path):
    """Stop through the API, as the page's button sends it: only the caller's own run ends, nothing is left in
    the folder, and the next run works."""
    from gradio_client import Client, handle_file
    clip = make_clip(tmp_path / "long.mp4", frames=3000, size=(64, 64), audio=False)
    short = make_clip(tmp_path / "short.mp4", frames=2, size=(64, 64))
    page = Page(tmp_path, tmp_path / "results")
    try:
        before = _fingerprint(page.session)
        owner, other = (Client(page.url, verbose=False, download_files=False) for _ in range(2))
        job = owner.submit(handle_file(str(PORTRAIT)), handle_file(str(clip)), None, "relative", False, False, False,
                           "fp32", api_name="/animate")
        shown = _frames_shown(job, above=0)
        other.predict(api_name="/stop")           # another visitor's Stop is not this run's:
        _frames_shown(job, above=shown + 40)      # it goes on well past the batch a Stop would end it at
        owner.predict(api_name="/stop")
        video, download, status, _ = job.result(timeout=120)
        assert video is None and download is None and "stopped after" in status, status
        assert "no video was written" in status
        assert {k: v for k, v in _fingerprint(page.session).items() if not UPLOAD.match(k.split("/")[0])} == \
            {k: v for k, v in before.items() if not UPLOAD.match(k.split("/")[0])}
        assert "2 frames" in _animate(page.url, PORTRAIT, short)[2]     # the page is free for the next run
    finally:
        page.stop()
    assert "Traceback" not in page.said()


def _frames_shown(job, above: int) -> int:
    """Wait until the running job's status shows more than `above` frames animated; -> how many it shows."""
    deadline = time.monotonic() + 120
    while True:
        counts = [int(m.group(1)) for out in job.outputs() for m in [re.search(r"animating: frame (\d+)", str(out[2]))]
                  if m]
        if counts and counts[-1] > above:
            return counts[-1]
        assert time.monotonic() < deadline and not job.done(), job.outputs()[-1:]
        time.sleep(0.2)


@pytest.mark.slow
def test_a_liveportrait_sets_files_uploaded_together_are_added_and_animate(tmp_path):
    """The five files of a set, uploaded at once as a user picks them from the folder they downloaded (no
    sub-folders): gathered, checked and registered as `checkpoints add FOLDER` does, then chosen by name and run
    with the crop and the paste-back, as `animate --crop --paste-back` runs it (tests/test_liveportrait_e2e.py
    runs the same set through the commands). The set's largest file is 220 MB: over the page's default upload
    cap, so this page is started with a larger one."""
    from gradio_client import Client, handle_file
    from liveportrait_sets import accept_unpublished_set, write_random_set
    from test_face import write_face_clip
    from test_liveportrait_e2e import assert_pasted
    accept_unpublished_set(tmp_path / "home" / "checkpoints")
    folder = write_random_set(tmp_path / "download")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    clip, _ = write_face_clip(tmp_path / "talk.mp4", [(100, 60)], fps=10, audio=True)  # a frame costs seconds here
    page = Page(tmp_path, tmp_path / "results", "--max-upload-mb", "300")
    try:
        client = Client(page.url, verbose=False, download_files=False)
        chosen, *_, status = client.predict([handle_file(str(f)) for f in files], "", "", api_name="/add_checkpoint")
        assert chosen["value"] == "liveportrait" and "added liveportrait" in status, status
        video, _, said, _ = client.predict(handle_file(str(PORTRAIT)), handle_file(str(clip)), "liveportrait",
                                           "relative", False, True, True, "fp32", api_name="/animate")
        assert "1 frame at" in said and "checkpoint liveportrait (LivePortrait) at 256x256" in said, said
        assert not [p for p in page.session.iterdir() if p.name.startswith("set-")]   # the gathering folder is gone
    finally:
        page.stop()
    written = list(page.session.glob("*.mp4"))
    assert len(written) == 1 and video
    assert_pasted(written[0], frames=1, audio=True)
    r = run_cli("checkpoints", "list", env=page.env)
    assert r.returncode == 0 and "liveportrait" in r.stdout
