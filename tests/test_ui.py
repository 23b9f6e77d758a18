"""The web page (`fomm-doctor ui`), driven in a real headless Chromium (Debian's `chromium`) by Playwright.

A real server runs `fomm-doctor ui`; a checkpoint is fetched through the page from a real HTTP server on
127.0.0.1; a photo and a clip encoded by ffmpeg are uploaded; the result is downloaded and compared with what
`fomm-doctor animate` makes of the same files; a corrupt video shows the CLI's sentence. Screenshots of each
state go to test-artifacts/ui/ (the README's screenshot is one of them).

Without chromium, or gradio and playwright (Python 3.9), these tests are skipped with the reason in the summary,
unless FOMM_REQUIRE_BROWSER is set: `.ci/run` sets it after installing chromium, so CI cannot pass without them.
"""
import hashlib
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

from conftest import run_cli
from fomm_core.media.video import iter_frames, probe_video
from httpfaults import FaultServer
from test_face import write_face_clip

PORTRAIT = Path(__file__).parent / "data" / "faces" / "astronaut_portrait.jpg"
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "ui"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _missing() -> str:
    if CHROMIUM is None:
        return "no chromium on PATH (apt-get install chromium)"
    for module in ("gradio", "playwright"):
        try:
            __import__(module)
        except ImportError:
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


def _wait_until_up(url: str, server: subprocess.Popen, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the ui server exited: {server.stderr.read()}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the ui server did not answer at {url} within {seconds:g} s")


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_checkpoint):
    """(page URL, results folder, env, checkpoint server) of a running `fomm-doctor ui`; the tiny checkpoint is
    published in a user manifest as `lab-tiny`, served from 127.0.0.1 (slowly, so the fetch takes a while)."""
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
    port, results = _free_port(), root / "results"
    server = subprocess.Popen([sys.executable, "-m", "fomm_doctor", "ui", "--port", str(port), "--results",
                               str(results)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_until_up(url, server)
        yield url, results, env, srv
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
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True,
                            permissions=["camera"])
    page.requested = []
    page.on("request", lambda r: page.requested.append(r.url))
    page.goto(site[0], wait_until="networkidle")
    yield page
    page.close()


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _choose(page, elem_id: str, value: str) -> None:
    """Pick `value` in a gradio dropdown, as a user does: open it, click the option."""
    page.locator(f"#{elem_id} input").click()
    page.locator(f"ul[role=listbox] li[role=option][aria-label='{value}']").click()


def _upload(page, photo: Path, video: Path) -> None:
    page.locator("#source input[type=file]").set_input_files(str(photo))
    page.locator("#driving input[type=file]").set_input_files(str(video))
    page.locator("#driving video").wait_for(timeout=30000)


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "talk.mp4"
    write_face_clip(path, [(60 + 2 * i, 30 + i) for i in range(12)], size=(320, 240), audio=True)
    return path


def test_fetch_upload_animate_download(page, site, face_clip, tmp_path):
    url, results, env, srv = site
    _shot(page, "1-start")
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
    _shot(page, "3-result")
    status = page.locator("#status").inner_text()
    assert "(510x382): 12 frames at 25 fps" in status and "checkpoint lab-tiny (FOMM)" in status
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
        # the page hands the upload on as gradio saved it (a JPEG decoded by PIL, not OpenCV): a level or so
        assert np.abs(ours.astype(np.float32) - theirs).mean() < 1.5
    away = [u for u in page.requested if not u.startswith("data:")
            and urlsplit(u[len("blob:"):] if u.startswith("blob:") else u).hostname != "127.0.0.1"]
    assert page.requested and not away      # no font, script or beacon from elsewhere (blocked in some countries)


def test_corrupt_video_shows_the_clis_sentence(page, site, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    r = run_cli("animate", PORTRAIT, bad, "-o", tmp_path / "o.mp4", "--checkpoint", "lab-tiny", env=site[2])
    assert r.returncode == 2 and r.stderr.startswith("error: ")
    sentence = r.stderr[len("error: "):].strip()
    assert str(bad) in sentence
    tail = sentence.split(str(bad), 1)[1]          # the page names its own copy of the upload
    before = sorted(site[1].iterdir())
    page.locator("#source input[type=file]").set_input_files(str(PORTRAIT))
    page.locator("#driving input[type=file]").set_input_files(str(bad))
    page.wait_for_timeout(1000)
    page.locator("#animate").click()
    shown = page.get_by_text(tail.strip()[:60]).first
    shown.wait_for(timeout=60000)
    assert "Traceback" not in page.content()
    _shot(page, "4-corrupt-video")
    assert sorted(site[1].iterdir()) == before      # nothing half-written was left


def test_a_webcam_snapshot_is_a_source_photo(page, site, face_clip, tmp_path):
    source = page.locator("#source")
    source.get_by_role("button", name="Capture from camera").click()
    source.get_by_text("Click to Access Webcam").click()
    page.wait_for_function("() => { const v = document.querySelector('#source video');"
                           " return v && v.readyState >= 2 && v.videoWidth > 0; }", timeout=30000)
    source.get_by_role("button", name="capture photo").click()
    source.locator("img[src*='/file=']").wait_for(timeout=30000)   # the snapshot, on the server
    _shot(page, "6-webcam-snapshot")
    page.locator("#driving input[type=file]").set_input_files(str(face_clip))
    page.locator("#driving video").wait_for(timeout=30000)
    page.locator("#animate").click()      # with the best face model present: here the bundled 64-px one
    page.locator("#download a").first.wait_for(timeout=180000)
    status = page.locator("#status").inner_text()
    # the test camera shows no face: the snapshot's centre square was animated, and the page says so
    assert "(64x64): 12 frames" in status and "no face found in the source image" in status


def test_the_check_tab_lists_the_checks_with_their_fixes(page, site):
    page.get_by_role("tab", name="check").click()
    page.locator("#run-checks").click()
    page.locator("#checks").get_by_text("python.version").wait_for(timeout=120000)
    text = page.locator("#checks").inner_text()
    assert "ffmpeg" in text and "torch" in text
    _shot(page, "5-check")
