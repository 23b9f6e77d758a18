"""`fomm-doctor live` headless on real clips of a real face, with a tiny random model saved as a checkpoint."""
import subprocess
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow(60)  # seconds on 2 cores: run among the first (conftest.py)

cv2 = pytest.importorskip("cv2")
torch = pytest.importorskip("torch")

from conftest import TINY_MODEL as TINY, run_cli  # noqa: E402
from fomm_core.errors import FommError  # noqa: E402
from fomm_core.live.capture import LatestFrameCapture, parse_camera  # noqa: E402
from fomm_core.live.session import LiveOptions, LiveSession  # noqa: E402
from fomm_core.live.stats import LiveStats  # noqa: E402
from fomm_core.media.crop import source_square  # noqa: E402
from fomm_doctor.animation import ModelChoice, Models  # noqa: E402


def load_animator(checkpoint, config):
    """(animator, size) as `live` loads them: relative motion, the default precision."""
    loaded = Models().load(ModelChoice(checkpoint, config, mode="relative"))
    return loaded.animator, loaded.size
from test_face import FACE_JPG, write_face_clip  # noqa: E402


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    import yaml
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope="module")
def moving_face_clip(tmp_path_factory):
    # the face sways left and right, 30 frames at 25 fps, with audio (ignored by live)
    positions = [(60 + round(20 * np.sin(i / 4)), 40) for i in range(30)]
    return write_face_clip(tmp_path_factory.mktemp("live") / "driving.mp4", positions)[0]


def frames_and_size(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    cap.release()
    return n, size


def test_parse_camera(tmp_path, clip_factory):
    clip = clip_factory("clip.mp4", frames=2, size=(32, 32), audio=False)
    assert parse_camera("0") == 0 and parse_camera(" 2 ") == 2
    assert parse_camera(str(clip)) == str(clip) and parse_camera("rtsp://x/1") == "rtsp://x/1"
    with pytest.raises(FommError) as err:   # said before any model is loaded
        parse_camera(str(tmp_path / "missing.mp4"))
    assert err.value.setting == ("camera", "0")
    playlist = tmp_path / "cam.m3u8"   # names the real clip: refused as a playlist, before the model loads
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{clip}\n#EXT-X-ENDLIST\n")
    with pytest.raises(FommError, match="playlist"):
        parse_camera(str(playlist))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(FommError, match="empty.mp4"):
        parse_camera(str(empty))


def test_cli_live_headless_records_the_result(moving_face_clip, tiny_checkpoint, tmp_path):
    out = tmp_path / "out.mp4"
    r = run_cli("live", "--no-window", "--source", FACE_JPG, "--camera", moving_face_clip,
                "--checkpoint", tiny_checkpoint, "--output", out, "--max-frames", "8", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "frames animated" in r.stdout and "recorded" in r.stdout
    n, size = frames_and_size(out)
    assert size == (64, 64)   # the model's size, from the config the checkpoint carries
    # 8 results; each stands for the camera frames it covered, so at least 8 and no more than the clip has
    assert 8 <= n <= 30
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_session_animates_face_crops_in_rgb_and_drops_rather_than_queues(moving_face_clip, tiny_checkpoint,
                                                                       tiny_config):
    animator, size = load_animator(str(tiny_checkpoint), str(tiny_config))
    seen = []

    class SlowSpy:  # a slow model: frames must be dropped, never queued; and it must be given RGB
        def set_source(self, img):
            animator.set_source(img)

        def set_reference(self, frame):
            animator.set_reference(frame)

        def animate(self, frames):
            seen.append(frames.clone())
            time.sleep(0.12)  # 3 camera frames at 25 fps
            return animator.animate(frames)

    session = LiveSession(SlowSpy(), LiveOptions(camera=str(moving_face_clip), sources=[FACE_JPG], size=size,
                                                 window=False))
    stats = session.run()
    assert stats.stop_reason == "end of the video file"
    assert 5 <= stats.processed <= 15 and stats.dropped >= 10
    assert stats.processed + stats.dropped <= stats.captured <= 30
    # latency stays bounded by about one model step (+ a frame), it does not grow as a queue would
    assert stats.p95_latency < 0.5
    # the driving crops follow the face: skin-toned (red > blue in RGB order) in the centre of the crop
    centre = torch.stack([f[0, :, 24:40, 24:40].mean(dim=(1, 2)) for f in seen])
    assert (centre[:, 0] > centre[:, 2]).all(), "frames reached the model in BGR, or the crop missed the face"


def test_latest_frame_capture_reports_a_stalled_camera_quickly(moving_face_clip):
    stats = LiveStats()
    cap = LatestFrameCapture(str(moving_face_clip), stats=stats)
    cap.open()
    first = cap.latest(0, timeout=2)
    assert first is not None and first.image.shape == (240, 320, 3)
    # the driver stops answering (an unplugged camera whose read() blocks): a clear sentence, quickly
    real, release = cap._cap, threading.Event()

    class Blocking:
        def read(self):
            release.wait(5)
            return False, None

        def release(self):
            real.release()

    cap._cap = Blocking()
    started = time.perf_counter()
    with pytest.raises(FommError, match="no frame from .*unplugged"):
        while True:  # frames already captured may still be handed out; then nothing comes
            latest = cap.latest(first.seq, timeout=0.5)
            assert latest is not None
            first = latest
    assert time.perf_counter() - started < 2
    release.set()
    cap.close()


def test_cli_nonexistent_camera_index_is_a_quick_clear_sentence(tiny_checkpoint, tiny_config):
    started = time.perf_counter()
    r = run_cli("live", "--no-window", "--source", FACE_JPG, "--camera", "57", "--checkpoint", tiny_checkpoint,
                "--config", tiny_config, timeout=60)
    assert r.returncode == 2 and "camera 57" in r.stderr and "Traceback" not in r.stderr
    assert time.perf_counter() - started < 30


def test_cli_camera_unplugged_mid_run(tmp_path, tiny_checkpoint, tiny_config, ffmpeg_exe):
    """A stream that delivers frames and then stops answering (ffmpeg serving MJPEG over HTTP on 127.0.0.1,
    killed mid-run) must end with a sentence and a non-zero exit, not a hang."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [ffmpeg_exe, "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25",
         "-f", "mpjpeg", "-listen", "1", f"http://127.0.0.1:{port}/cam.mjpg"],
        stdin=subprocess.DEVNULL)

    def unplug_once_streaming():
        # the recording's temp file appears right after the stream is open: then let a second of frames pass
        deadline = time.perf_counter() + 50
        while not list(tmp_path.glob(".o.partial*")) and time.perf_counter() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        server.kill()

    try:
        killer = threading.Thread(target=unplug_once_streaming, daemon=True)
        killer.start()
        started = time.perf_counter()
        r = run_cli("live", "--no-window", "--no-crop", "--source", FACE_JPG, "--camera",
                    f"http://127.0.0.1:{port}/cam.mjpg", "--checkpoint", tiny_checkpoint, "--config", tiny_config,
                    "--output", tmp_path / "o.mp4", timeout=60)
    finally:
        server.kill()
        server.wait()
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "unplugged" in r.stderr or "stopped delivering" in r.stderr, r.stderr
    assert time.perf_counter() - started < 30
    n, size = frames_and_size(tmp_path / "o.mp4")   # what was recorded before the loss is kept
    assert n >= 1 and size == (64, 64)


def test_cli_bad_inputs(tmp_path, moving_face_clip, tiny_checkpoint):
    r = run_cli("live", "--no-window", "--source", tmp_path / "nope.jpg", "--camera", moving_face_clip,
                "--checkpoint", tiny_checkpoint)
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run_cli("live", "--no-window", "--source", FACE_JPG, "--camera", tmp_path / "missing.mp4",
                "--checkpoint", tiny_checkpoint)
    assert r.returncode == 2 and "neither a camera index nor an existing video" in r.stderr
    assert "(--camera 0)" in r.stderr                     # the library names the setting, the CLI its flag


def test_core_sentences_name_the_setting_not_a_flag(monkeypatch):
    """The library describes the way out; the setting that takes it travels with the error (err.setting)."""
    from fomm_core.live.window import check_window
    monkeypatch.setenv("DISPLAY", "")
    with pytest.raises(FommError) as err:
        check_window()      # no display here (or an OpenCV without windows): either way, run without one
    assert err.value.setting == ("no_window", "") and "--" not in str(err.value)
    with pytest.raises(FommError) as err:
        LiveSession(None, LiveOptions(sources=[], window=False)).run()
    assert err.value.setting == ("source", "IMG") and "--" not in str(err.value)
    with pytest.raises(FommError) as err:
        LatestFrameCapture("missing.mp4", stats=LiveStats()).open()
    assert err.value.setting == ("camera", "0") and "--" not in str(err.value)


def test_a_video_file_as_the_camera_is_read_as_every_video_file(moving_face_clip, tmp_path, ffmpeg_exe):
    """A file standing in for a camera goes through the reader `animate` and `crop` use: rotation applied, RGB."""
    from fomm_core.media.video import iter_frames
    phone = tmp_path / "phone.mp4"
    subprocess.run([ffmpeg_exe, "-y", "-v", "error", "-display_rotation", "90", "-i", str(moving_face_clip),
                    "-c", "copy", str(phone)], check=True)
    cap = LatestFrameCapture(str(phone), stats=LiveStats())
    cap.open()
    try:
        first = cap.latest(0, timeout=5)
    finally:
        cap.close()
    assert cap.size == (240, 320)                          # as shown: the 320x240 clip turned upright
    assert np.array_equal(first.image, list(iter_frames(phone))[first.seq - 1])


def test_virtual_camera_soft_failure(moving_face_clip, tiny_checkpoint, tiny_config, tmp_path):
    r = run_cli("live", "--no-window", "--virtual-camera", "--source", FACE_JPG, "--camera", moving_face_clip,
                "--checkpoint", tiny_checkpoint, "--config", tiny_config, "--max-frames", "2", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "virtual camera" in r.stderr


def test_cli_window_without_a_display_is_a_sentence_not_an_abort(moving_face_clip, tiny_checkpoint, tiny_config):
    # OpenCV's Qt build aborts the process (SIGABRT) when it cannot reach a display; we must say so first
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    r = run_cli("live", "--source", FACE_JPG, "--camera", moving_face_clip, "--checkpoint", tiny_checkpoint,
                "--config", tiny_config, "--max-frames", "1", env=env, timeout=60)
    assert r.returncode == 2 and "--no-window" in r.stderr, r.stderr


def test_fast_model_detects_faces_less_often_than_it_animates(moving_face_clip, tiny_checkpoint, tiny_config):
    animator, size = load_animator(str(tiny_checkpoint), str(tiny_config))
    session = LiveSession(animator, LiveOptions(camera=str(moving_face_clip), sources=[FACE_JPG], size=size,
                                                window=False, max_frames=20))
    stats = session.run()
    assert stats.processed == 20
    # detection (~50 ms on a CPU) is kept to a fraction of the time; the tracker holds the box in between
    assert 1 <= session.cropper.detections < stats.processed


def test_face_box_follows_a_moving_face_from_the_background_thread(tmp_path):
    from fomm_core.live.tracking import DrivingCropper
    from fomm_core.media.face import iou
    from test_face import planted_frame
    cropper = DrivingCropper(64)
    try:
        first, truth0 = planted_frame(h=240, w=320, x=20, y=40, scale=0.8)
        _, found = cropper(cv2.cvtColor(first, cv2.COLOR_BGR2RGB))     # camera frames reach it as RGB
        assert found and cropper.detections == 1      # first frame: detected in line
        moved, truth1 = planted_frame(h=240, w=320, x=140, y=40, scale=0.8)
        moved = cv2.cvtColor(moved, cv2.COLOR_BGR2RGB)
        calls = 0
        deadline = time.perf_counter() + 120           # a guard against a hang, not a speed claim
        while iou(cropper.tracker.box, truth1) < 0.5 and time.perf_counter() < deadline:
            cropper(moved)                               # never blocks on detection
            calls += 1
            time.sleep(0.02)
        assert iou(cropper.tracker.box, truth1) >= 0.5
        assert cropper.detections >= 2 and calls >= 1   # found by a later, background detection
    finally:
        cropper.close()


def test_next_source_keeps_the_reference_pose(moving_face_clip, tiny_checkpoint, tmp_path):
    animator, size = load_animator(str(tiny_checkpoint), None)
    other = tmp_path / "b.png"
    cv2.imwrite(str(other), cv2.imread(str(FACE_JPG))[:, ::-1])
    calls, session = [], None

    class Spy:
        def set_source(self, img):
            calls.append(("source", round(float(img.sum()), 2)))
            animator.set_source(img)

        def set_reference(self, frame):
            calls.append(("reference", round(float(frame.sum()), 2)))
            animator.set_reference(frame)

        def animate(self, frames):
            if session.stats.processed == 2:
                session.step_source(+1)   # as the `n` key does
            return animator.animate(frames)

    session = LiveSession(Spy(), LiveOptions(camera=str(moving_face_clip), sources=[FACE_JPG, other], size=size,
                                             window=False, max_frames=5))
    assert session.run().processed == 5
    kinds = [k for k, _ in calls]
    assert kinds == ["source", "reference", "source", "reference"], calls
    assert calls[0][1] != calls[2][1]      # another photo...
    assert calls[1] == calls[3]            # ...animated from the same reference pose


def test_source_photo_with_a_non_ascii_name_and_alpha_reads_as_animate_reads_it(tmp_path):
    """The library part of live (what a notebook uses) shares animate's loader: the bytes are read by us, so any
    file name works, and transparency is put on white (cv2.imread would give the hidden colour, here black)."""
    from fomm_core.media.crop import crop_face_image
    from fomm_core.media.images import load_image, square_resize
    bgra = np.zeros((60, 90, 4), np.uint8)
    bgra[:, :, :3] = (40, 160, 220)
    bgra[10:50, 25:65, 3] = 255                    # an opaque square; the rest is fully transparent black
    ok, png = cv2.imencode(".png", bgra)
    assert ok
    photo = tmp_path / "照片.png"
    photo.write_bytes(png.tobytes())
    centre = source_square(photo, 32, crop=False).image
    assert np.array_equal(centre, square_resize(load_image(photo), 32))     # what `animate` feeds the model
    assert centre[0, 0].tolist() == [255, 255, 255]                         # transparent -> white
    assert centre[16, 16].tolist() == [220, 160, 40]                        # opaque, in RGB order
    faced = source_square(photo, 32, crop=True).image                           # `animate --crop`
    assert np.array_equal(faced, crop_face_image(load_image(photo), 32).image)


def test_device_default_is_auto():
    import inspect

    from fomm_doctor.commands.live import live
    assert inspect.signature(live).parameters["device"].default.default == "auto"
    r = run_cli("live", "--help", env={"COLUMNS": "200"})
    assert r.returncode == 0 and all(f" {d}" in r.stdout for d in ("auto", "cpu", "cuda:N", "mps"))


def test_without_checkpoint_the_bundled_model_is_used_with_a_note(moving_face_clip, tmp_path, monkeypatch):
    from fomm_doctor.checkpoints import resolve_checkpoint
    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    monkeypatch.setenv("FOMM_CHECKPOINTS_DIR", str(empty))   # no face model fetched or added
    note = resolve_checkpoint(None).note
    assert note and "64" in note
    r = run_cli("live", "--no-window", "--source", FACE_JPG, "--camera", moving_face_clip, "--max-frames", "2",
                env={"FOMM_CHECKPOINTS_DIR": str(empty)}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert note in r.stderr and "2 frames animated" in r.stdout


def test_fast_starts_on_the_exact_path_at_once_and_the_measured_path_takes_over(tiny_checkpoint, tmp_path,
                                                                               monkeypatch):
    """Nothing cached: the session animates on exact fp32 from its first frame while `fast` is built and timed
    beside it (inference paused while it is timed), then the measured engine animates the rest."""
    import threading
    from fomm_doctor.commands.live import _prepare, _settled_later
    monkeypatch.setenv("FOMM_DOCTOR_CACHE", str(tmp_path / "cache"))   # nothing measured or built yet
    # a file camera is paced at its frame rate: 2500 frames at 5 fps last 500 s, far longer than the build and the
    # measurement take (15-20 s here, twice that with a second copy of the suite running)
    positions = [(60 + round(20 * np.sin(i / 4)), 40) for i in range(2500)]
    clip = write_face_clip(tmp_path / "long.mp4", positions, fps=5, audio=False)[0]
    choice = ModelChoice(str(tiny_checkpoint), mode="relative", batch=1, precision="fast")
    assert _settled_later(choice)
    models = Models(animators_kept=2)
    exact = models.load(ModelChoice(str(tiny_checkpoint), mode="relative", batch=1, precision="fp32"))
    session = LiveSession(exact.animator, LiveOptions(camera=str(clip), sources=[FACE_JPG], size=exact.size,
                                                      window=False))
    engines, statuses = [], []   # per animated frame: the engine that made it, the status shown meanwhile
    animate = LiveSession._animate

    def watched(self, frame):
        statuses.append(self.status)
        animate(self, frame)
        engines.append(self.animator)
        if engines[-1] is not exact.animator and engines.count(engines[-1]) >= 5:
            self.stop()   # five frames on the measured path: enough
    monkeypatch.setattr(LiveSession, "_animate", watched)
    threading.Thread(target=_prepare, args=(session, models, choice), daemon=True).start()
    stats = session.run()
    switched = [n for n in session.notes if n.startswith("from frame ")]
    assert len(switched) == 1 and "fast = " in switched[0], session.notes
    first_measured = engines.index(engines[-1])
    assert first_measured >= 1 and engines[:first_measured] == [exact.animator] * first_measured  # exact at once
    assert switched[0].startswith(f"from frame {first_measured + 1} on: fast = ")
    assert engines[-1].precision in ("fp32", "bf16", "int8") and engines.count(engines[-1]) == 5
    assert any(s.startswith("exact fp32 while fast is prepared") for s in statuses)
    assert stats.processed == len(engines)
