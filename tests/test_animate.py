"""`fomm-doctor animate` end to end on real ffmpeg clips, with a tiny random model saved as a checkpoint."""
import subprocess

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
torch = pytest.importorskip("torch")

from conftest import TINY_MODEL as TINY, run_cli  # noqa: E402
from fomm_core.media.video import iter_frames, probe_video  # noqa: E402


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A non-square RGBA source with a clear shape in the middle."""
    img = np.zeros((90, 140, 4), np.uint8)
    img[:, :, 3] = 255
    cv2.circle(img, (70, 45), 30, (40, 160, 220, 255), -1)
    path = tmp_path_factory.mktemp("src") / "photo.png"
    cv2.imwrite(str(path), img)
    return path


def _animator():
    from fomm_core.model.config import build_models
    from fomm_core.inference.fomm import Animator
    torch.manual_seed(0)
    generator, kp_detector = build_models(TINY)
    return Animator(generator, kp_detector, device="cpu", precision="fp32")


def test_cli_animates_a_clip_keeping_frames_fps_and_audio(clip_factory, tiny_checkpoint, photo, tmp_path):
    drv = clip_factory("drv.mp4", frames=14, size=(96, 72), fps=20, audio=True)
    out = tmp_path / "out.mp4"
    r = run_cli("animate", photo, drv, "-o", out, "--checkpoint", tiny_checkpoint, "--batch-size", "3")
    assert r.returncode == 0, r.stderr
    assert "inference path: cpu" in r.stderr and "wrote" in r.stdout
    info = probe_video(out)
    assert (info.width, info.height, info.fps, info.has_audio) == (64, 64, 20.0, True)
    frames = list(iter_frames(out))
    assert len(frames) == 14
    assert [p.name for p in tmp_path.iterdir()] == ["drv.mp4", "out.mp4"]  # no temp file left


def test_side_by_side_no_audio_rotated_odd_clip(ffmpeg_exe, clip_factory, tiny_checkpoint, photo, tmp_path):
    plain = clip_factory("odd.mp4", frames=9, size=(50, 38), fps=15, audio=True)
    rotated = tmp_path / "rot.mp4"
    subprocess.run([ffmpeg_exe, "-y", "-v", "error", "-display_rotation", "90", "-i", str(plain), "-c", "copy",
                    str(rotated)], check=True)
    out = tmp_path / "sbs.mp4"
    r = run_cli("animate", photo, rotated, "-o", out, "--checkpoint", tiny_checkpoint, "--side-by-side",
                "--no-audio", "--find-best-frame", "--mode", "relative", "--adapt-scale")
    assert r.returncode == 0, r.stderr
    assert "started from driving frame" in r.stderr
    info = probe_video(out)
    assert (info.width, info.height, info.fps, info.has_audio) == (192, 64, 15.0, False)
    frames = list(iter_frames(out))
    assert len(frames) == 9
    # left third is the source in RGB: the disc (BGR 40,160,220 = orange) at its centre, black at the corner
    left = frames[0][:, :64].astype(int)
    assert left[32, 32, 0] > 180 and left[32, 32, 2] < 90 and left[2, 2].max() < 40


def test_streamed_result_matches_animating_all_frames_at_once(clip_factory, photo, tmp_path):
    from fomm_core.media.images import frames_to_tensor, load_image, square_resize, tensor_to_frames
    from fomm_core.inference.pipeline import animate_video
    drv = clip_factory("d.mp4", frames=7, size=(64, 64), fps=25, audio=False)
    animator = _animator()
    seen = []
    result = animate_video(photo, drv, tmp_path / "o.mp4", animator, size=64, batch_size=2,
                           progress=lambda done, total: seen.append(done))
    assert result.frames == 7 and seen == [2, 4, 6, 7]
    # the same frames animated in one batch (no streaming), compared after the codec round trip
    animator.set_source(frames_to_tensor([square_resize(load_image(photo), 64)]))
    expected = tensor_to_frames(animator.animate(frames_to_tensor([square_resize(f, 64) for f in iter_frames(drv)])))
    got = list(iter_frames(tmp_path / "o.mp4"))
    assert len(got) == 7
    assert np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(got, expected)]) < 4


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_interrupt_leaves_no_output(clip_factory, photo, tmp_path, stop):
    from fomm_core.inference.pipeline import animate_video
    drv = clip_factory("d.mp4", frames=10, size=(64, 64), audio=True)
    out = tmp_path / "out.mp4"

    def progress(done, total):
        raise stop("stopped")
    with pytest.raises(stop):
        animate_video(photo, drv, out, _animator(), size=64, batch_size=2, progress=progress)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.mp4"]


def test_bad_inputs_are_one_sentence(clip_factory, tiny_checkpoint, photo, tmp_path, ffmpeg_exe):
    drv = clip_factory("drv.mp4", frames=4, size=(64, 64), audio=False)
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a picture")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00garbage" * 500)
    data = drv.read_bytes()
    cut = tmp_path / "noframes.mp4"
    cut.write_bytes(data[:data.index(b"mdat") + 4] if b"moov" in data[:data.index(b"mdat")] else data[:200])
    out = tmp_path / "out.mp4"
    cases = [
        (("animate", tmp_path / "missing.png", drv, "-o", out), "does not exist"),
        (("animate", not_image, drv, "-o", out), "not an image"),
        (("animate", photo, tmp_path / "missing.mp4", "-o", out), "does not exist"),
        (("animate", photo, corrupt, "-o", out), "not a video"),
        (("animate", photo, cut, "-o", out), "video"),
        (("animate", photo, drv, "-o", tmp_path / "no" / "such" / "out.mp4"), "does not exist"),
        (("animate", photo, drv, "-o", tmp_path, "--checkpoint", tiny_checkpoint), "folder"),
        (("animate", photo, drv, "-o", out, "--checkpoint", tiny_checkpoint, "--config", "vox-256"), "does not fit"),
        (("animate", photo, drv, "-o", out, "--checkpoint", tiny_checkpoint, "--device", "cuda"), "GPU"),
        (("animate", photo, drv, "-o", out, "--checkpoint", tmp_path / "none.pth.tar"), "does not exist"),
        (("animate", photo, drv, "-o", out, "--mode", "sideways"), "--mode must be relative"),
    ]
    for args, words in cases:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and words in r.stderr, (args, r.stderr)
        assert r.stderr.strip().startswith("error:") or "error:" in r.stderr
    assert not out.exists()


def test_help_says_inputs_are_cropped_to_square():
    r = run_cli("animate", "--help", env={"COLUMNS": "200"})
    assert r.returncode == 0
    assert "centre-cropped to a square" in " ".join(r.stdout.split())


def test_device_default_is_auto():
    import inspect

    from fomm_doctor.commands.animate import animate
    assert inspect.signature(animate).parameters["device"].default.default == "auto"
    r = run_cli("animate", "--help", env={"COLUMNS": "200"})
    assert r.returncode == 0 and all(f" {d}" in r.stdout for d in ("auto", "cpu", "cuda:N", "mps"))


def test_without_checkpoint_the_bundled_model_is_used_with_a_note(clip_factory, photo, tmp_path, monkeypatch):
    from fomm_doctor.checkpoints import resolve_checkpoint
    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    monkeypatch.setenv("FOMM_CHECKPOINTS_DIR", str(empty))   # no face model fetched or added
    note = resolve_checkpoint(None).note
    assert note and "64" in note
    drv = clip_factory("drv.mp4", frames=3, size=(64, 64), audio=False)
    out = tmp_path / "out.mp4"
    r = run_cli("animate", photo, drv, "-o", out, env={"FOMM_CHECKPOINTS_DIR": str(empty)})
    assert r.returncode == 0, r.stderr
    assert note in r.stderr
    info = probe_video(out)
    assert (info.width, info.height) == (64, 64)


def test_bad_precision_is_one_sentence(clip_factory, photo, tmp_path):
    drv = clip_factory("drv.mp4", frames=2, size=(64, 64), audio=False)
    r = run_cli("animate", photo, drv, "-o", tmp_path / "o.mp4", "--precision", "fp8")
    assert r.returncode == 2 and "unknown precision 'fp8'" in r.stderr and "Traceback" not in r.stderr
