"""`checkpoints fetch` against a real 127.0.0.1 server: a checkpoint in the original format (random weights of
the vox config, legacy torch.save layout with the training-only entries) behind a Google-Drive-like "can't scan
for viruses" confirmation form, with the connection dropped mid-file; then resolving it by name, loading it,
and `slim` giving the same frames.

The 239 MB file is built once per module (about 2 s) and served from memory."""
import hashlib
import io
import json

import pytest

torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from httpfaults import FaultServer, Html, RawServer, Reply, Reset, fixed_answer  # noqa: E402
from test_download_limits import endless_chunked  # noqa: E402
from fomm_core.model.checkpoint import load_checkpoints, read_checkpoint  # noqa: E402
from fomm_core.model.config import build_models, load_config  # noqa: E402
from fomm_doctor.checkpoints import fetch, slim, store  # noqa: E402
from fomm_doctor.errors import UserError  # noqa: E402

FILE_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"
UUID = "5f0c3e4a-1b2c-4d5e-8f90-0a1b2c3d4e5f"

CONFIRM_PAGE = """<!DOCTYPE html><html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"/>
<title>Google Drive - Virus scan warning</title></head><body><div class="uc-main"><div id="uc-text">
<p class="uc-warning-caption">Google Drive can't scan this file for viruses.</p><p class="uc-warning-subcaption">
<span class="uc-name-size"><a href="/open?id={id}">vox-cpk.pth.tar</a> (228M)</span> is too large for Google to
scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="{action}" method="get"><input type="submit" id="uc-download-link"
class="goog-inline-block jfk-button jfk-button-action" value="Download anyway"/><input type="hidden" name="id"
value="{id}"><input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t">
<input type="hidden" name="uuid" value="{uuid}"></form></div></div></body></html>"""

QUOTA_PAGE = (b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>"
              b"Too many users have viewed or downloaded this file recently.</body></html>")


@pytest.fixture(scope="module")
def vox_file():
    """(bytes, sha256, state dicts) of a vox-256 checkpoint with random weights, in the published layout."""
    torch.manual_seed(0)
    generator, kp_detector = build_models(load_config("vox-256"))
    with torch.no_grad():  # random, non-trivial BatchNorm statistics and a non-zero Jacobian head
        for m in (generator, kp_detector):
            for name, buf in m.named_buffers():
                if name.endswith("running_mean"):
                    buf.normal_(0, 0.1)
                elif name.endswith("running_var"):
                    buf.uniform_(0.5, 1.5)
            for name, p in m.named_parameters():
                if "jacobian" in name:
                    p.normal_(0, 0.01)
    states = {"generator": generator.state_dict(), "kp_detector": kp_detector.state_dict()}
    layout = {**states, "discriminator": {"down_blocks.0.conv.weight": torch.randn(64, 13, 4, 4)},
              "optimizer_generator": {"state": {}, "param_groups": []},
              "optimizer_kp_detector": {"state": {}, "param_groups": []},
              "optimizer_discriminator": {"state": {}, "param_groups": []}, "epoch": 99}
    buf = io.BytesIO()
    torch.save(layout, buf, _use_new_zipfile_serialization=False)  # the published files predate torch 1.6
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest(), states


def drive_like_server(data: bytes) -> FaultServer:
    """/uc?export=download&id=ID answers the confirmation form; /download with its fields answers the file."""
    srv = FaultServer()
    html = {"Content-Type": "text/html; charset=utf-8"}

    def page():  # the form posts to an absolute URL, as Google's does (drive.usercontent.google.com)
        return CONFIRM_PAGE.format(id=FILE_ID, uuid=UUID, action=srv.url("/download")).encode()

    def uc(req):
        return Reply(200, page(), html)

    def download(req):
        q = {k: v[0] for k, v in req.query.items()}
        if q == {"id": FILE_ID, "export": "download", "confirm": "t", "uuid": UUID}:
            return Reply(200, data, {"Content-Type": "application/octet-stream",
                                     "Content-Disposition": 'attachment; filename="vox-cpk.pth.tar"'})
        return Reply(200, page(), html)

    srv.routes.update({"/uc": uc, "/download": download, "/quota": QUOTA_PAGE})
    return srv


def write_user_manifest(home, entries):
    home.mkdir(parents=True, exist_ok=True)
    (home / "manifest.json").write_text(json.dumps({"schema": 1, "checkpoints": entries}))


@pytest.fixture
def env(tmp_path, monkeypatch):
    values = {"FOMM_DOCTOR_HOME": str(tmp_path / "home"), "FOMM_DOCTOR_CACHE": str(tmp_path / "cache")}
    monkeypatch.delenv("FOMM_CHECKPOINTS_DIR", raising=False)
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def test_fetch_through_confirmation_and_drop_then_use_by_name(vox_file, env, tmp_path):
    data, sha, states = vox_file
    home = tmp_path / "home" / "checkpoints"
    with drive_like_server(data) as srv:
        srv.script("/download", Reset(after=len(data) // 3))  # the connection drops a third of the way in
        write_user_manifest(home, [{"name": "vox", "file": "vox-cpk.pth.tar", "sha256": sha, "size": len(data),
                                    "sources": [
                                        {"url": srv.url("/gone/vox-cpk.pth.tar"), "kind": "mirror"},  # 404
                                        {"url": srv.url(f"/uc?export=download&id={FILE_ID}"), "kind": "gdrive-file"},
                                    ]}])
        r = run_cli("checkpoints", "fetch", "vox", env=env)
        assert r.returncode == 0, r.stderr
        assert "sha256 verified" in r.stdout and sha in r.stdout
        hits = srv.hits("/download")
        assert [h.fault for h in hits] == ["Reset", None]
        # resumed from what had arrived (a reset drops what was still in flight), not restarted
        assert 0 < hits[1].range_start <= len(data) // 3
        assert hits[1].status == 206 and hits[1].sent == len(data) - hits[1].range_start
        assert srv.hits("/gone/vox-cpk.pth.tar")[0].status == 404  # failed over from the dead mirror
        r = run_cli("checkpoints", "fetch", "vox", env=env)  # a second fetch finds it verified in place
        assert r.returncode == 0 and "already present, sha256 verified" in r.stdout
        assert len(srv.hits("/download")) == 2
    target = home / "vox-cpk.pth.tar"
    assert target.read_bytes() == data
    assert not list(home.glob("*.part")) and not list((home / ".incoming").glob("*"))

    # by name, from another process's point of view: resolve, then load strictly with the detected config
    resolved = store.resolve_checkpoint("vox")
    assert resolved.path == target and resolved.config == "vox-256"
    generator, kp_detector = load_checkpoints(resolved.config, resolved, "cpu")
    for key, module in (("generator", generator), ("kp_detector", kp_detector)):
        got = module.state_dict()
        assert all(torch.equal(got[k], v) for k, v in states[key].items())
    # every command that takes --checkpoint NAME loads through one service, which finds it the same way
    from fomm_doctor.animation import ModelChoice, Models
    loaded = Models().load(ModelChoice("vox", precision="fp32"))  # fp32: no one-time measuring of the fast path
    assert loaded.size == 256 and loaded.name == "vox"
    listed = json.loads(run_cli("checkpoints", "list", "--json", env=env).stdout)
    row = next(r for r in listed["checkpoints"] if r["name"] == "vox")
    assert row["present"][0]["verified"] is True and row["present"][0]["size"] == len(data)


def test_fetch_without_sha256_checks_that_it_loads(vox_file, env, tmp_path):
    data, sha, _ = vox_file
    home = tmp_path / "home" / "checkpoints"
    with drive_like_server(data) as srv:
        srv.script("/files/vox-cpk.pth.tar", Html(page=QUOTA_PAGE))  # a mirror that answers a web page first
        srv.routes["/files/vox-cpk.pth.tar"] = data
        write_user_manifest(home, [{"name": "lab-vox", "file": "lab-vox.pth.tar", "config": "vox-256",
                                    "sources": [{"url": srv.url("/files/vox-cpk.pth.tar"), "kind": "mirror"}]}])
        with pytest.raises(UserError) as err:
            fetch.fetch("lab-vox", backoff=0.01)
        assert "download quota" in str(err.value) and "checkpoints add PATH --name lab-vox" in str(err.value)
        assert not (home / "lab-vox.pth.tar").exists()  # the page was never saved as a checkpoint
        got = fetch.fetch("lab-vox", backoff=0.01)  # the mirror serves the file now
    assert got.verified_by == "load" and got.config == "vox-256" and got.sha256 == sha
    assert store.resolve_checkpoint("lab-vox").path == home / "lab-vox.pth.tar"
    registry = json.loads((home / "registry.json").read_text())["checkpoints"]
    assert [(r["name"], r["sha256"]) for r in registry] == [("lab-vox", sha)]


def test_fetch_rejects_a_file_that_is_not_a_checkpoint_and_all_sources_down(env, tmp_path):
    home = tmp_path / "home" / "checkpoints"
    with FaultServer({"/junk.bin": b"\x00\x01not a checkpoint" * 1000, "/quota": QUOTA_PAGE}) as srv:
        srv.routes["/quota"] = lambda req: Reply(200, QUOTA_PAGE, {"Content-Type": "text/html"})
        sources = [{"url": srv.url("/junk.bin"), "kind": "mirror"},
                   {"url": srv.url("/quota"), "kind": "mirror"},
                   {"url": "http://127.0.0.1:9/closed.pth.tar", "kind": "mirror"}]  # nothing listens on port 9
        write_user_manifest(home, [{"name": "lab", "file": "lab.pth.tar", "config": "vox-256", "sources": sources}])
        with pytest.raises(UserError) as err:
            fetch.fetch("lab", retries=2, backoff=0.01, timeout=2)
    text = str(err.value)
    assert text.startswith("could not fetch lab from any of its 3 sources")
    assert "not a PyTorch checkpoint" in text and "download quota" in text and "127.0.0.1:9" in text
    assert text.endswith("and run `fomm-doctor checkpoints add PATH --name lab`.")
    assert not (home / "lab.pth.tar").exists() and not list((home / ".incoming").glob("*"))
    with pytest.raises(UserError, match="no source of lab matches 'yandex'"):
        fetch.fetch("lab", mirror="yandex")


def test_slim_gives_identical_frames_and_loads_in_the_original_code(vox_file, tmp_path, env):
    data, _, _ = vox_file
    full = tmp_path / "vox-cpk.pth.tar"
    full.write_bytes(data)
    slim32 = slim.slim(str(full), out=tmp_path / "slim.pth.tar")
    slim16 = slim.slim(str(full), half=True)
    assert slim16.path == tmp_path / "vox-cpk-slim-fp16.pth.tar"
    assert slim32.size < slim32.original_size  # the training-only entries are gone
    assert slim16.size < 0.55 * slim32.size
    # the original code's classes load the slim file strictly
    from deep_animator.modules.generator import OcclusionAwareGenerator
    from deep_animator.modules.kp_detector import KPDetector
    params = load_config("vox-256")["model_params"]
    assert slim32.path.read_bytes()[:1] == b"\x80"  # a plain pickle stream, as torch 1.0 wrote and reads
    slim_state = torch.load(slim32.path, map_location="cpu", weights_only=True)
    assert set(slim_state) == {"generator", "kp_detector"}
    OcclusionAwareGenerator(**params["generator_params"], **params["common_params"]).load_state_dict(
        slim_state["generator"], strict=True)
    KPDetector(**params["kp_detector_params"], **params["common_params"]).load_state_dict(
        slim_state["kp_detector"], strict=True)

    torch.manual_seed(1)
    source, driving = torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)

    def frame(path):
        generator, kp_detector = load_checkpoints(None, path, "cpu")
        with torch.no_grad():
            kp_s, kp_d = kp_detector(source), kp_detector(driving)
            return generator(source, kp_source=kp_s, kp_driving=kp_d)["prediction"]

    reference = frame(full)
    assert torch.equal(frame(slim32.path), reference)
    half_frame = frame(slim16.path)
    assert read_checkpoint(slim16.path)["generator"]["first.conv.weight"].dtype == torch.float16
    diff = (half_frame - reference).abs().max().item()
    assert 0 < diff < 2e-2, diff  # fp16 storage rounds weights (rel. error 2^-11); frames stay within 2e-2


def lab_manifest(home, url):
    write_user_manifest(home, [{"name": "lab", "file": "lab.pth.tar", "config": "vox-256",
                                "sources": [{"url": url, "kind": "mirror"}]}])


def nothing_left(tmp_path, home) -> bool:
    return (not list((tmp_path / "cache").rglob("*.part*")) and not (home / "lab.pth.tar").exists()
            and not list((home / ".incoming").glob("*")))


def test_a_checkpoint_of_unpublished_size_is_capped_at_a_checkpoints_size(env, tmp_path):
    """No size published: a mirror announcing more than any checkpoint has is refused on its first answer."""
    from fomm_doctor.net.job import CHECKPOINT_CAP, WHEEL_CAP
    assert 800 * 1000 ** 2 < CHECKPOINT_CAP < WHEEL_CAP  # the biggest published checkpoint is 0.75 GB
    home = tmp_path / "home" / "checkpoints"
    announced = CHECKPOINT_CAP + 1
    head = [("Content-Type", "application/octet-stream"), ("Content-Length", str(announced))]
    with RawServer(fixed_answer(head, b"\0" * 1000)) as srv:
        lab_manifest(home, srv.url("/lab.pth.tar"))
        with pytest.raises(UserError) as err:
            fetch.fetch("lab", backoff=0.01)
        asked = len(srv.requests)
    assert f"announces {announced:,} bytes, more than the {CHECKPOINT_CAP:,}" in str(err.value)
    assert asked == 1 and nothing_left(tmp_path, home)


def test_an_endless_checkpoint_stops_at_the_cap_it_is_given_and_leaves_nothing(env, tmp_path):
    home = tmp_path / "home" / "checkpoints"
    with RawServer(endless_chunked) as srv:
        lab_manifest(home, srv.url("/lab.pth.tar"))
        with pytest.raises(UserError) as err:
            fetch.fetch("lab", backoff=0.01, max_size=1_000_000)
        asked = len(srv.requests)
    assert "sent more than the 1,000,000 bytes" in str(err.value) and asked == 1
    assert nothing_left(tmp_path, home)
