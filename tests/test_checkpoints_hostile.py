"""Checkpoint fetching and registering against hostile or broken answers, all from real servers on 127.0.0.1:
every form of Google Drive's virus-scan page (and the quota page, never followed), a confirmation page saved in
place of the checkpoint, a Drive listing that trickles in and a Yandex API answer that never ends, credentials
in source URLs, Hugging Face sources behind HF_ENDPOINT, and files whose size or sha256 contradicts the
manifest (or that are only known to load).

The file served is the bundled checkpoint (checkpoints/fomm-synth-64.pth.tar, a real one that loads with the
config it carries), or one saved by torch here. Every subprocess and in-process request outside 127.0.0.1 is sent
to a closed local port (proxy variables), so nothing here can reach the internet."""
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from httpfaults import Corrupt, FaultServer, Reply  # noqa: E402
from fomm_core.model.config import build_models, load_config  # noqa: E402
from fomm_doctor.checkpoints import fetch, places  # noqa: E402
from fomm_doctor.errors import UserError  # noqa: E402

DATA = Path(__file__).parent / "data" / "drive"
BUNDLED = places.project_dir() / "fomm-synth-64.pth.tar"
# anything not on 127.0.0.1 goes to a port where nothing listens
LOCAL_ONLY = {k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
LOCAL_ONLY.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})


@pytest.fixture(scope="module")
def synth():
    data = BUNDLED.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A private home (the per-user store is home/checkpoints) and cache; requests stay on 127.0.0.1."""
    values = {"FOMM_DOCTOR_HOME": str(tmp_path / "home"), "FOMM_DOCTOR_CACHE": str(tmp_path / "cache"),
              "COLUMNS": "250", **LOCAL_ONLY}
    for name in ("FOMM_CHECKPOINTS_DIR", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


@pytest.fixture
def home(env):
    return Path(env["FOMM_DOCTOR_HOME"]) / "checkpoints"


def user_manifest(home, entries):
    home.mkdir(parents=True, exist_ok=True)
    (home / "manifest.json").write_text(json.dumps({"schema": 1, "checkpoints": entries}))


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def run_guarded(fn, limit=180):
    """fn()'s value or the exception it raised; fails the test when it is still running after `limit` seconds
    (a hang guard, not a speed check: the deadlines under test are a few seconds)."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["value"] = exc
    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(limit)
    assert not worker.is_alive(), "it never ended"
    return box["value"]


def shaped_like(config: str, path: Path) -> Path:
    """A real checkpoint with the shapes of a shipped config (every tensor a zero-stride view of one number, so
    the file is ~90 KB and loads strictly), in the published layout."""
    generator, kp_detector = build_models(load_config(config))
    states = {key: {k: torch.full((), 0.5, dtype=v.dtype).expand(v.shape) for k, v in m.state_dict().items()}
              for key, m in (("generator", generator), ("kp_detector", kp_detector))}
    torch.save({**states, "epoch": 99}, path)
    return path


# ---------------------------------------------------------------- 1. every form of Drive's confirmation page

ID_OLD, ID_POST, ID_GET = "1kZ1gCnpfU0BnpdU47pLM_TQ6RypDDqgw", "1jmcn19-c3p8mf39aYNXUhdMqzqDYZhQ_", \
    "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"
FORMS = {  # page, where the file is, and the one request that gets it
    "old-confirm-link": ("old_confirm_link.html", "/uc", {"export": "download", "confirm": "Xy_9", "id": ID_OLD}),
    "post-form-confirm-in-action": ("post_form.html", "/uc", {
        "export": "download", "id": ID_POST, "confirm": "t", "uuid": "ff4a3f3d-e2d7-4e71-937c-2b95144828cf"}),
    "get-form-hidden-inputs": ("get_form.html", "/download", {
        "id": ID_GET, "export": "download", "confirm": "t", "uuid": "5f0c3e4a-1b2c-4d5e-8f90-0a1b2c3d4e5f"}),
}


def drive_server(page_name: str, file_path: str, wanted: dict, data: bytes) -> FaultServer:
    """/uc and /download answer the recorded page (its Google origins pointed here) to every request but the
    one that asks for the file the way the page says."""
    srv = FaultServer()

    def page() -> bytes:
        text = (DATA / page_name).read_text(encoding="utf-8")
        for origin in ("https://drive.usercontent.google.com", "https://drive.google.com"):
            text = text.replace(origin, srv.url(""))
        return text.encode()

    def route(req):
        if req.path == file_path and {k: v[0] for k, v in req.query.items()} == wanted and req.method == "GET":
            return Reply(200, data, {"Content-Type": "application/octet-stream"})
        return Reply(200, page(), {"Content-Type": "text/html; charset=utf-8"})

    srv.routes.update({"/uc": route, "/download": route})
    return srv


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_of_the_drive_confirmation_page_leads_to_the_file(form, synth, env, home):
    page_name, file_path, wanted = FORMS[form]
    data, sha = synth
    with drive_server(page_name, file_path, wanted, data) as srv:
        user_manifest(home, [{"name": "drive-synth", "file": "drive-synth.pth.tar", "size": len(data), "sha256": sha,
                              "sources": [{"url": srv.url(f"/uc?export=download&id={wanted['id']}"),
                                           "kind": "gdrive-file"}]}])
        got = fetch.fetch("drive-synth", retries=2, backoff=0.01)
        asked = [h.path for h in srv.hits()]
    # the server gives the file only to the request the page asks for: getting it proves the page was followed
    assert got.verified_by == "sha256" and got.sha256 == sha
    assert (home / "drive-synth.pth.tar").read_bytes() == data
    assert asked[0] == "/uc" and asked[-1] == file_path and len(asked) >= 2


def test_the_quota_page_is_not_followed(synth, env, home):
    data, sha = synth
    quota = (DATA / "quota.html").read_bytes()
    with FaultServer() as srv:
        srv.routes["/uc"] = lambda req: Reply(200, quota, {"Content-Type": "text/html; charset=utf-8"})
        user_manifest(home, [{"name": "drive-synth", "file": "drive-synth.pth.tar", "size": len(data), "sha256": sha,
                              "sources": [{"url": srv.url(f"/uc?export=download&id={ID_POST}"),
                                           "kind": "gdrive-file"}]}])
        with pytest.raises(UserError) as err:
            fetch.fetch("drive-synth", retries=2, backoff=0.01)
        asked = [h.path for h in srv.hits()]
    assert asked == ["/uc"]  # asked once; the page offers nothing to follow
    text = str(err.value)
    assert text.startswith("could not fetch drive-synth from its only source") and "download quota" in text
    assert not (home / "drive-synth.pth.tar").exists()


# ---------------------------------------------------------------- 2. a confirmation page saved as the checkpoint

def test_adding_a_saved_confirmation_page_names_the_file_and_the_fetch_command(env, home, tmp_path):
    saved = tmp_path / "vox-cpk.pth.tar"
    saved.write_bytes((DATA / "post_form.html").read_bytes())
    r = run_cli("checkpoints", "add", saved, env=env)
    line = one_line(r.stderr)
    assert r.returncode == 2
    assert "vox-cpk.pth.tar (695M)" in line and f"Drive id {ID_POST}" in line
    assert "run `fomm-doctor checkpoints fetch vox` to download vox-cpk.pth.tar itself" in line
    # the current form, saved under a name of the user's: the file name in the page decides
    other = tmp_path / "model.pth.tar"
    other.write_bytes((DATA / "get_form.html").read_bytes())
    line = one_line(run_cli("checkpoints", "add", other, env=env).stderr)
    assert "vox-adv-cpk.pth.tar (716M)" in line and ID_GET in line and "`fomm-doctor checkpoints fetch vox-adv`" in line
    assert not (home / "registry.json").exists()


# ---------------------------------------------------------------- 3. pages that never end

class EndlessJson(ThreadingHTTPServer):
    """Answers every GET with 200 application/json and a body that never ends (no length, never closed)."""
    daemon_threads = True

    def __init__(self):
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                try:
                    self.wfile.write(b'{"href": "http://127.0.0.1:9/')
                    while True:
                        self.wfile.write(b"a" * 65536)
                except OSError:  # the client hung up: what it should do
                    pass

        super().__init__(("127.0.0.1", 0), Handler)

    def __enter__(self):
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()

    def url(self, path):
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


def test_an_endless_yandex_api_answer_gives_a_sentence_and_the_command_ends(env, home):
    with EndlessJson() as srv:
        user_manifest(home, [{"name": "endless", "file": "endless.pth.tar", "sources": [
            {"url": "https://yadi.sk/d/fomm-doctor-test", "kind": "yandex",
             "api": srv.url("/v1/disk/public/resources/download")}]}])
        r = run_cli("checkpoints", "fetch", "endless", env=env, timeout=240)
        hits = srv.hits
    line = one_line(r.stderr)
    assert r.returncode == 3 and hits >= 1
    assert line.startswith("error: could not fetch endless from its only source (yadi.sk: http://127.0.0.1:")
    assert "more than" in line and "bytes" in line
    assert not (home / "endless.pth.tar").exists()


def test_a_trickling_drive_listing_is_cut_off_at_the_page_deadline(env, home):
    # 2 KB/s in 1 KB pieces: each piece comes long before any read timeout, the whole page never does
    with FaultServer(throttle=2048) as srv:
        srv.routes["/folder"] = lambda req: Reply(200, b"<html><body>" + b" " * 4_000_000,
                                                  {"Content-Type": "text/html; charset=utf-8"})
        user_manifest(home, [{"name": "slow", "file": "slow.pth.tar", "sources": [
            {"url": srv.url("/folder"), "kind": "gdrive-folder"}]}])
        outcome = run_guarded(lambda: fetch.fetch("slow", page_deadline=2, timeout=10))
        listing_hits = srv.hits("/folder")
    assert isinstance(outcome, UserError), outcome
    text = str(outcome)
    assert text.startswith("could not fetch slow from its only source (127.0.0.1:")
    assert "still sending after 2 s" in text and len(listing_hits) == 1
    assert not (home / "slow.pth.tar").exists()


# ---------------------------------------------------------------- 4. credentials in source URLs

def test_credentials_in_source_urls_are_masked_in_messages_json_and_the_registry(synth, env, home):
    data, sha = synth
    with FaultServer({"/files/synth.pth.tar": data}) as srv:
        secret = srv.url("").replace("http://", "http://alice:s3cr3t-token@")
        user_manifest(home, [
            {"name": "private", "file": "private.pth.tar", "size": len(data), "sha256": sha, "sources": [
                {"url": secret + "/gone.pth.tar", "kind": "mirror"},
                {"url": secret + "/files/synth.pth.tar", "kind": "mirror"}]},
            {"name": "private-gone", "file": "private-gone.pth.tar", "sha256": sha, "sources": [
                {"url": secret + "/gone-1.pth.tar", "kind": "mirror"},
                {"url": secret + "/gone-2.pth.tar", "kind": "mirror"}]}])
        ok = run_cli("checkpoints", "fetch", "private", "--json", env=env)
        listed = run_cli("checkpoints", "list", "--json", env=env)
        failed = run_cli("checkpoints", "fetch", "private-gone", env=env)
        with pytest.raises(UserError) as err:
            fetch.fetch("private-gone", retries=1, backoff=0.01)
        used = srv.hits("/files/synth.pth.tar")
    assert ok.returncode == 0, ok.stderr
    registry = (home / "registry.json").read_text()
    shown = [ok.stdout, ok.stderr, listed.stdout, failed.stderr, str(err.value), registry]
    assert all("s3cr3t-token" not in text for text in shown)
    out = json.loads(ok.stdout)
    assert out["state"] == "ok" and out["url"].startswith("http://alice:****@127.0.0.1:")
    assert [a["outcome"] == "ok" for a in out["attempts"]] == [False, True]
    assert out["attempts"][0]["url"].startswith("http://alice:****@127.0.0.1:")
    record = json.loads(registry)["checkpoints"][0]
    assert record["source"].startswith("http://alice:****@127.0.0.1:") and record["sha256"] == sha
    assert "alice:****@" in listed.stdout
    assert failed.returncode == 3 and "alice:****@127.0.0.1" in one_line(failed.stderr)
    assert used and used[0].headers.get("authorization")  # they are used, only never shown


# ---------------------------------------------------------------- 5. Hugging Face sources and HF_ENDPOINT

def test_the_shipped_vox_entry_fetches_from_hf_endpoint_and_refuses_a_file_of_the_wrong_size(synth, env, home):
    data, _ = synth
    path = "/MCMLXXXVII/thinplatesv1/resolve/main/vox-cpk.pth.tar"
    with FaultServer({path: data}) as srv:  # a real checkpoint, but not the published 728,766,691-byte vox
        r = run_cli("checkpoints", "fetch", "vox", "--mirror", "huggingface", env={**env, "HF_ENDPOINT": srv.url("")})
        hits = srv.hits(path)
    assert hits and hits[0].method == "GET"  # HF_ENDPOINT took the place of huggingface.co
    line = one_line(r.stderr)
    assert r.returncode == 3 and line.startswith("error: could not fetch vox from its only source (127.0.0.1:")
    assert "728766691" in line or "728,766,691" in line
    assert not (home / "vox-cpk.pth.tar").exists()
    assert not (home / ".incoming").exists() or not list((home / ".incoming").iterdir())


def test_hf_endpoint_serves_huggingface_sources_and_their_sha256_is_checked(synth, env, home, monkeypatch):
    data, sha = synth
    path = "/fomm-doctor-tests/synth/resolve/main/synth.pth.tar"
    source = {"url": "https://huggingface.co" + path, "kind": "huggingface"}
    with FaultServer({path: data}) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url("/"))
        user_manifest(home, [
            {"name": "hf-synth", "file": "hf-synth.pth.tar", "size": len(data), "sha256": sha, "sources": [source]},
            {"name": "hf-bad", "file": "hf-bad.pth.tar", "size": len(data), "sha256": sha, "sources": [source]}])
        got = fetch.fetch("hf-synth", retries=2, backoff=0.01)
        srv.script(path, Corrupt(at=5000, times=None))  # from now on every copy arrives with one byte flipped
        with pytest.raises(UserError) as err:
            fetch.fetch("hf-bad", retries=2, backoff=0.01)
        hits = srv.hits(path)
    assert got.verified_by == "sha256" and (home / "hf-synth.pth.tar").read_bytes() == data
    assert got.url.startswith("http://127.0.0.1:")
    assert len(hits) >= 3 and not (home / "hf-bad.pth.tar").exists()
    text = str(err.value)
    assert text.startswith("could not fetch hf-bad from its only source (127.0.0.1:") and "sha256" in text
    monkeypatch.setenv("HF_ENDPOINT", "hf-mirror.com")  # no scheme: one sentence, not a traceback
    with pytest.raises(UserError, match=r"HF_ENDPOINT=hf-mirror.com is not an http\(s\) URL"):
        fetch.fetch("hf-bad")


def test_the_manifest_records_what_is_published_and_says_what_is_not():
    entries = json.loads((places.project_dir() / "manifest.json").read_text(encoding="utf-8"))["checkpoints"]
    by_name = {e["name"]: e for e in entries}
    vox = by_name["vox"]
    assert (vox["size"], vox["sha256"]) == (
        728766691, "abb41ab1f279f26326c0d6e4d20702de6658364665aa1313daa7a63e89ea2b23")
    published = [e for e in entries if e.get("sources")]
    assert {e["name"] for e in published} >= {"vox", "vox-adv", "taichi", "taichi-adv", "fashion", "mgif", "bair",
                                              "nemo", "vox-512"}
    for e in published:
        hf = [s for s in e["sources"] if s["kind"] == "huggingface"]
        if e["name"] != "vox-512":  # no published vox-512 file is known anywhere
            assert hf and all(s["url"].startswith("https://huggingface.co/") and "/resolve/main/" in s["url"]
                              and s["url"].endswith("/" + e["file"]) for s in hf), e["name"]
        assert all(s.get("note") for s in e["sources"]), e["name"]
        if e.get("size") or e.get("sha256"):  # every published number says where it was read
            said = " ".join(ev["says"] for ev in e["evidence"] if ev.get("where"))
            assert not e.get("size") or str(e["size"]) in said, e["name"]
            assert not e.get("sha256") or e["sha256"] in said, e["name"]
        if not (e.get("size") and e.get("sha256")):
            assert e.get("unverified"), e["name"]


# ---------------------------------------------------------------- 6. "loads, unverified" and "wrong"

def test_a_file_only_known_to_load_is_never_shown_as_ok(env, home, tmp_path):
    src = shaped_like("taichi-256", tmp_path / "taichi-cpk.pth.tar")  # nothing publishes taichi's sha256
    assert run_cli("checkpoints", "add", src, env=env).returncode == 0
    listed = json.loads(run_cli("checkpoints", "list", "--json", env=env).stdout)
    taichi = next(r for r in listed["checkpoints"] if r["name"] == "taichi")
    assert taichi["present"][0]["state"] == "loads, unverified" and taichi["present"][0]["verified"] is None
    table = run_cli("checkpoints", "list", env=env).stdout
    line = next(t for t in table.splitlines() if t.strip("│ ").startswith("taichi ") and "taichi-cpk.pth.tar" in t)
    assert "loads, unverified" in line and line.count("verified") == 1
    verify = run_cli("checkpoints", "verify", "taichi", env=env)
    assert verify.returncode == 0 and verify.stdout.strip().endswith("taichi-cpk.pth.tar: loads, unverified")
    check = json.loads(run_cli("check", "--json", "--offline", env=env).stdout)
    row = next(c for c in check["checks"] if c["id"] == "checkpoints.taichi")
    assert row["status"] == "warn" and "loads, unverified" in row["summary"]
    assert row["details"]["present"][0]["state"] == "loads, unverified"


def test_a_file_that_contradicts_the_manifest_is_shown_wrong_and_refused(synth, env, home, tmp_path):
    data, sha = synth
    home.mkdir(parents=True)
    # a real, loadable checkpoint under the published vox name, registered as add used to register anything
    (home / "vox-cpk.pth.tar").write_bytes(data)
    (home / "registry.json").write_text(json.dumps({"schema": 1, "checkpoints": [
        {"name": "vox", "file": "vox-cpk.pth.tar", "config": None, "sha256": sha, "size": len(data),
         "source": str(BUNDLED), "placed": "copy", "added": "2024-01-01T00:00:00"}]}))
    listed = json.loads(run_cli("checkpoints", "list", "--json", env=env).stdout)
    vox = next(r for r in listed["checkpoints"] if r["name"] == "vox")["present"][0]
    assert (vox["state"], vox["verified"]) == ("wrong", False) and "728,766,691" in vox["why"]
    verify = run_cli("checkpoints", "verify", env=env)
    assert verify.returncode == 1 and "vox-cpk.pth.tar: WRONG" in verify.stdout
    check = json.loads(run_cli("check", "--json", "--offline", env=env).stdout)
    row = next(c for c in check["checks"] if c["id"] == "checkpoints.vox")
    assert row["status"] == "fail" and "fomm-doctor checkpoints fetch vox" in row["fix"]

    # add: a model of one's own is refused under the published name, and taken under another
    mine = shaped_like("vox-256", tmp_path / "vox-cpk.pth.tar")
    r = run_cli("checkpoints", "add", mine, "--dir", tmp_path / "store", env=env)
    line = one_line(r.stderr)
    assert r.returncode == 2 and "is not the published vox checkpoint" in line and "--name vox-mine`" in line
    assert not (tmp_path / "store" / "vox-cpk.pth.tar").exists()
    r = run_cli("checkpoints", "add", mine, "--name", "vox-mine", "--dir", tmp_path / "store", env=env)
    assert r.returncode == 0 and "loads, unverified" in r.stdout, r.stderr
    assert (tmp_path / "store" / "vox-mine.pth.tar").is_file() and not (tmp_path / "store" / "vox-cpk.pth.tar").exists()
