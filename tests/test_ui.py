"""The web page (`fomm-doctor ui`), driven in a real headless Chromium (Debian's `chromium`) by Playwright, at
1280x800 as a laptop shows it.

A real server runs `fomm-doctor ui`; a checkpoint is fetched through the page from a real HTTP server on
127.0.0.1, another is uploaded as a file; a photo and a clip encoded by ffmpeg are uploaded; the result is
downloaded and compared with what `fomm-doctor animate` makes of the same files; a corrupt video and a text file
as the photo show the CLI's sentence the moment they are uploaded; the status shows beside the animate button at
once; Stop ends a long run with nothing written; the check list fits the page. Screenshots of each state go to
test-artifacts/ui/ (the README's screenshot is one of them).

Without chromium, or gradio and playwright (Python 3.9), these tests are skipped with the reason in the summary,
unless FOMM_REQUIRE_BROWSER is set: `.ci/run` sets it after installing chromium, so CI cannot pass without them.
"""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests

pytestmark = pytest.mark.slow(50)  # seconds on 2 cores: run among the first (conftest.py)

from conftest import make_clip, run_cli
from fomm_core.media.video import iter_frames, probe_video
from httpfaults import FaultServer
from test_face import write_face_clip

PORTRAIT = Path(__file__).parent / "data" / "faces" / "astronaut_portrait.jpg"
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "ui"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _missing() -> str:
    if CHROMIUM is None:
        return "no chromium on PATH (apt-get install chromium)"
    import importlib.util
    for module in ("gradio", "playwright"):  # looked up, not imported: gradio's import alone takes seconds
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install \".[ui,test]\"; Python 3.10 or newer)"
    return ""


if _missing():
    if os.environ.get("FOMM_REQUIRE_BROWSER"):
        raise RuntimeError(f"FOMM_REQUIRE_BROWSER is set but the browser test cannot run: {_missing()}")
    pytest.skip(_missing(), allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, server: subprocess.Popen, log: Path, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the ui server exited: {log.read_text()}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the ui server did not answer at {url} within {seconds:g} s")


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_checkpoint):
    """(page URL, results folder, env, checkpoint server, the server's log) of a running `fomm-doctor ui`; the
    tiny checkpoint is published in a user manifest as `lab-tiny`, served from 127.0.0.1 (slowly, so the fetch
    takes a while)."""
    import json
    root = tmp_path_factory.mktemp("ui")
    data = Path(tiny_checkpoint).read_bytes()
    srv = FaultServer({"/lab-tiny.pth.tar": data}, throttle=max(len(data) // 3, 1)).start()
    home = root / "home"
    (home / "checkpoints").mkdir(parents=True)
    (home / "checkpoints" / "manifest.json").write_text(json.dumps({"schema": 1, "checkpoints": [
        {"name": "lab-tiny", "file": "lab-tiny.pth.tar", "size": len(data),
         "sha256": hashlib.sha256(data).hexdigest(), "sources": [{"url": srv.url("/lab-tiny.pth.tar")}]}]}))
    env = dict(os.environ, FOMM_DOCTOR_HOME=str(home), FOMM_DOCTOR_CACHE=str(root / "cache"))
    env.pop("FOMM_CHECKPOINTS_DIR", None)
    port, results, log = _free_port(), root / "results", root / "ui.log"
    with open(log, "w") as sink:
        server = subprocess.Popen([sys.executable, "-m", "fomm_doctor", "ui", "--port", str(port), "--results",
                                   str(results)], env=env, stdout=subprocess.DEVNULL, stderr=sink)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_until_up(url, server, log)
        yield url, results, env, srv, log
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        srv.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        # a synthetic camera (chromium's test pattern) stands in for the webcam, allowed without asking
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--use-fake-ui-for-media-stream",
                                                                     "--use-fake-device-for-media-stream"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, site):
    """A fresh page on the site; every request it makes is recorded (all must stay on 127.0.0.1)."""
    page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True,
                            permissions=["camera"])
    page.requested = []
    page.on("request", lambda r: page.requested.append(r.url))
    page.goto(site[0], wait_until="networkidle")
    yield page
    page.close()


def _shot(page, name: str, full_page: bool = True) -> None:
    """A screenshot of the page as it is (full_page=False: only what the window shows, no scrolling)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def _choose(page, elem_id: str, value: str) -> None:
    """Pick `value` in a gradio dropdown, as a user does: open it, click the option."""
    page.locator(f"#{elem_id} input").click()
    page.locator(f"ul[role=listbox] li[role=option][aria-label='{value}']").click()


def _upload(page, photo: Path, video: Path) -> None:
    page.locator("#source input[type=file]").set_input_files(str(photo))
    page.locator("#driving input[type=file]").set_input_files(str(video))
    page.locator("#driving video").wait_for(timeout=30000)


def _more_checkpoints(page) -> None:
    """Open the fold with the ways to get another checkpoint (fetch, add a file)."""
    page.locator("#more-checkpoints").get_by_text("get another checkpoint").click()
    page.locator("#fetch").wait_for(state="visible", timeout=10000)


def _pick_files(page, elem_id: str, *paths: Path) -> None:
    """Pick files in a gradio upload area as a user does: click it, choose them in the file dialog (clicked again
    while a fold just opened is not yet live and the click opens no dialog)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    deadline = time.monotonic() + 90
    while True:
        try:
            with page.expect_file_chooser(timeout=5000) as chooser:
                page.locator(f"#{elem_id}").get_by_text("Click to Upload").click()
            break
        except PlaywrightTimeout:
            assert time.monotonic() < deadline, f"clicking #{elem_id} never opened a file dialog"
    chooser.value.set_files([str(p) for p in paths])


def _uploaded(page, elem_id: str, name: str) -> None:
    """Wait until a gradio file area lists `name` as uploaded: its row, with the download link that replaces
    "uploading" once the server has the file. (The row's text is its stem and extension on two lines, so the
    whole name is in its accessible name only; a wait for the text matched only the transient upload notice.)"""
    row = page.locator(f"#{elem_id}").get_by_role("row").filter(has=page.get_by_role("cell", name=name, exact=True))
    row.get_by_role("link").wait_for(timeout=90000)


def _session(results: Path) -> Path:
    (folder,) = [p for p in results.iterdir() if p.name.startswith("page-")]
    return folder


def _written(folder: Path) -> set:
    """Every file in the session folder outside gradio's upload folders: what the page itself wrote."""
    return {p.relative_to(folder) for p in folder.rglob("*")
            if p.is_file() and not (len(p.relative_to(folder).parts) > 1 and len(p.relative_to(folder).parts[0]) == 64)}


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "talk.mp4"
    write_face_clip(path, [(60 + 2 * i, 30 + i) for i in range(12)], size=(320, 240), audio=True)
    return path


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """Two minutes of a 64-px test pattern: a run of the bundled model on it takes about a minute here, long
    enough to be stopped half way."""
    return make_clip(tmp_path_factory.mktemp("long") / "long.mp4", frames=3000, size=(64, 64), audio=False)


def test_fetch_upload_animate_download(page, site, face_clip, tmp_path):
    url, results, env, srv, _ = site
    _shot(page, "1-start", full_page=False)
    _more_checkpoints(page)
    _choose(page, "fetch-name", "lab-tiny")
    page.locator("#fetch").click()
    page.locator("#status").get_by_text("sha256 verified").wait_for(timeout=60000)
    assert srv.hits("/lab-tiny.pth.tar")
    assert page.locator("#checkpoint input").input_value() == "lab-tiny"   # the fetched file is now chosen
    _shot(page, "2-fetched")
    _upload(page, PORTRAIT, face_clip)
    page.locator("#paste input").check()
    _choose(page, "precision", "fp32")
    page.locator("#animate").click()
    link = page.locator("#download a").first
    link.wait_for(timeout=180000)
    page.locator("#result video").wait_for(timeout=30000)
    page.wait_for_function("() => { const r = document.querySelector('#result').getBoundingClientRect();"
                           " return r.top >= 0 && r.bottom <= window.innerHeight; }", timeout=10000)
    _shot(page, "3-result", full_page=False)          # the finished video was scrolled into view
    status = page.locator("#status").inner_text()
    assert "(510x382): 12 frames at 25 fps" in status and "checkpoint lab-tiny (FOMM) at 64x64" in status
    assert "channels-last" not in status and str(results) not in status    # the technical words are folded away
    page.locator("#details-fold").get_by_text("details").click()
    details = page.locator("#details")
    details.get_by_text("inference path").wait_for(timeout=10000)
    assert "lab-tiny.pth.tar" in details.inner_text()
    with page.expect_download() as done:
        link.click()
    got = tmp_path / "downloaded.mp4"
    done.value.save_as(got)
    info = probe_video(got)
    assert (info.width, info.height, info.fps, info.has_audio) == (510, 382, 25.0, True)
    frames = list(iter_frames(got))
    assert len(frames) == 12
    # the page is a thin layer: the CLI given the same files and choices makes the same video
    cli_out = tmp_path / "cli.mp4"
    r = run_cli("animate", PORTRAIT, face_clip, "-o", cli_out, "--checkpoint", "lab-tiny", "--crop",
                "--paste-back", "--precision", "fp32", env=env)
    assert r.returncode == 0, r.stderr
    for ours, theirs in zip(frames, iter_frames(cli_out)):
        # the page hands on the uploaded bytes themselves: only the encoder's rounding differs, if anything
        assert np.abs(ours.astype(np.float32) - theirs).mean() < 0.5
    away = [u for u in page.requested if not u.startswith("data:")
            and urlsplit(u[len("blob:"):] if u.startswith("blob:") else u).hostname != "127.0.0.1"]
    assert page.requested and not away      # no font, script or beacon from elsewhere (blocked in some countries)


def _clis_sentence(env, photo: Path, video: Path, tmp_path: Path) -> str:
    """What `fomm-doctor animate` says about these inputs, each path named by its file name as the page does."""
    r = run_cli("animate", photo, video, "-o", tmp_path / "o.mp4", "--checkpoint", "lab-tiny", env=env)
    assert r.returncode == 2 and r.stderr.startswith("error: "), r.stderr
    sentence = r.stderr[len("error: "):].strip()
    assert str(photo) in sentence or str(video) in sentence, sentence
    return sentence.replace(str(photo), photo.name).replace(str(video), video.name)


def test_a_text_file_as_the_photo_gets_the_clis_sentence_at_upload(page, site, face_clip, tmp_path):
    url, results, env, _, log = site
    bad = tmp_path / "holiday.jpg"
    bad.write_text("this is a note, not a photo\n")
    sentence = _clis_sentence(env, bad, face_clip, tmp_path)
    page.locator("#source input[type=file]").set_input_files(str(bad))
    page.locator("#status").get_by_text(sentence).wait_for(timeout=30000)      # before animate is pressed
    _shot(page, "4-bad-photo", full_page=False)
    # the refused photo is taken away, so the box is the upload area again, not a broken image's strip
    page.locator("#source").get_by_text("Drop Image Here").wait_for(timeout=10000)
    assert page.locator("#source").bounding_box()["height"] > 250
    assert "Traceback" not in log.read_text() and "Traceback" not in page.content()


def test_a_corrupt_video_gets_the_clis_sentence_at_upload(page, site, tmp_path):
    url, results, env, _, log = site
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    sentence = _clis_sentence(env, PORTRAIT, bad, tmp_path)
    before = _written(_session(results))
    page.locator("#source input[type=file]").set_input_files(str(PORTRAIT))
    page.locator("#driving input[type=file]").set_input_files(str(bad))
    page.locator("#status").get_by_text(sentence).wait_for(timeout=60000)
    _shot(page, "5-corrupt-video")
    page.locator("#animate").click()                 # the refused video is not kept: animate asks for one
    page.locator("#status").get_by_text("give a driving video first.").wait_for(timeout=30000)
    assert "Traceback" not in page.content() and "Traceback" not in log.read_text()
    assert _written(_session(results)) == before      # nothing half-written was left


def test_the_status_shows_at_once_and_stop_ends_a_long_run(page, site, long_clip, face_clip):
    from playwright.sync_api import expect
    url, results, env, _, log = site
    folder = _session(results)
    before = _written(folder)
    _upload(page, PORTRAIT, long_clip)
    page.locator("#crop input").uncheck()             # no face tracking over two minutes of video first
    _choose(page, "precision", "fp32")
    page.locator("#animate").click()
    status = page.locator("#status .fd-status")
    expect(status).to_be_in_viewport(ratio=1, timeout=1000)       # beside the button, no scrolling
    expect(status).not_to_be_empty(timeout=1000)
    _shot(page, "6-running", full_page=False)
    page.locator("#status").get_by_text("animating: frame").wait_for(timeout=120000)
    page.locator("#stop").click()
    page.locator("#status").get_by_text("no video was written").wait_for(timeout=60000)
    shown = page.locator("#status").inner_text()
    assert shown.startswith("stopped after ") and "3000" not in shown, shown
    _shot(page, "7-stopped", full_page=False)
    assert _written(folder) == before                 # no video, no temp file of the writer's
    # the page is free for the next run: the bundled example photo and clip, chosen on the page
    page.locator("#clear").click()
    page.locator("#examples").get_by_role("gridcell").first.click()
    page.locator("#driving video").wait_for(timeout=30000)
    page.locator("#animate").click()
    page.locator("#download a").first.wait_for(timeout=180000)
    assert "50 frames" in page.locator("#status").inner_text()
    assert [p.suffix for p in _written(folder) - before] == [".mp4"]
    assert "Traceback" not in log.read_text()


def _own_checkpoint(path: Path) -> Path:
    """A checkpoint of the user's own: TINY_MODEL with other weights than any published file (seed 1)."""
    import torch
    from conftest import TINY_MODEL
    from fomm_core.model.config import build_models
    torch.manual_seed(1)
    generator, kp_detector = build_models(TINY_MODEL)
    torch.save({"generator": generator.state_dict(), "kp_detector": kp_detector.state_dict(),
                "config": TINY_MODEL}, path)
    return path


def test_a_checkpoint_file_uploaded_on_the_page_animates(page, site, face_clip, tmp_path):
    mine = _own_checkpoint(tmp_path / "page-tiny.pth.tar")
    _more_checkpoints(page)
    _pick_files(page, "checkpoint-file", mine)
    _uploaded(page, "checkpoint-file", "page-tiny.pth.tar")
    page.locator("#add-checkpoint").click()
    page.locator("#status").get_by_text("added page-tiny").wait_for(timeout=60000)
    assert page.locator("#checkpoint input").input_value() == "page-tiny"   # chosen, by its registered name
    _shot(page, "8-checkpoint-added", full_page=False)
    _upload(page, PORTRAIT, face_clip)
    _choose(page, "precision", "fp32")
    page.locator("#animate").click()
    page.locator("#download a").first.wait_for(timeout=180000)
    status = page.locator("#status").inner_text()
    assert "checkpoint page-tiny (FOMM) at 64x64" in status and "12 frames" in status
    r = run_cli("checkpoints", "list", env=site[2])            # registered as `checkpoints add` does
    assert r.returncode == 0 and "page-tiny" in r.stdout, r.stdout + r.stderr


def test_a_webcam_snapshot_is_a_source_photo(page, site, face_clip, tmp_path):
    source = page.locator("#source")
    source.get_by_role("button", name="Capture from camera").click()
    source.get_by_text("Click to Access Webcam").click()
    page.wait_for_function("() => { const v = document.querySelector('#source video');"
                           " return v && v.readyState >= 2 && v.videoWidth > 0; }", timeout=30000)
    source.get_by_role("button", name="capture photo").click()
    source.locator("img[src*='/file=']").wait_for(timeout=30000)   # the snapshot, on the server
    _shot(page, "9-webcam-snapshot")
    page.locator("#driving input[type=file]").set_input_files(str(face_clip))
    page.locator("#driving video").wait_for(timeout=30000)
    page.locator("#animate").click()      # with the best face model present: here the bundled 64-px one
    page.locator("#download a").first.wait_for(timeout=180000)
    status = page.locator("#status").inner_text()
    # the test camera shows no face: the snapshot's centre square was animated, and the page says so
    assert "(64x64): 12 frames" in status and "no face found in the source image" in status


def test_the_check_list_fits_the_page_with_every_fix(page, site):
    page.get_by_role("tab", name="check").click()
    page.locator("#run-checks").click()
    rows = page.locator("#checks tr.fd-row")
    page.locator("#checks").get_by_text("python.version").wait_for(timeout=120000)
    text = page.locator("#checks").inner_text()
    assert "ffmpeg" in text and "torch" in text
    r = run_cli("check", "--offline", "--json", env=site[2])
    checks = json.loads(r.stdout)["checks"]
    assert rows.count() == len(checks)                # every check has its row, none hidden in a scroll box
    width = page.viewport_size["width"]
    table = page.locator("#checks table")
    assert table.evaluate("t => t.scrollWidth <= t.parentElement.clientWidth")
    for i in range(rows.count()):
        cell = rows.nth(i).locator("td").nth(2)       # what was found, and its fix under it
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, (i, box)
    fixes = page.locator("#checks .fd-fix")
    assert fixes.count() == sum(1 for c in checks if c.get("fix")) > 0
    fixes.first.scroll_into_view_if_needed()
    box = fixes.first.bounding_box()
    assert 0 <= box["x"] and box["x"] + box["width"] <= width
    _shot(page, "10-check")
