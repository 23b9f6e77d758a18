"""Hostile inputs for the media and loading code: damaged videos, names ffmpeg reads as protocols, images that
declare billions of pixels, programs planted in the current folder, checkpoints torch's safe loader refuses.

Every input is real: clips encoded by the bundled ffmpeg, then damaged; PNG/JPEG/BMP/GIF/WebP files encoded by
OpenCV or built byte by byte; checkpoints written by torch.save.
"""
import os
import random
import stat
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import make_clip, run_cli
from fomm_core.errors import FommError
from fomm_core.tools import find_tool

cv2 = pytest.importorskip("cv2")

PIPE_BYTES = 64 * 1024   # a Linux pipe's buffer: ffmpeg blocks writing stderr once this much is unread
BOUND = 180              # seconds a read may take before the test calls it a hang (it takes about one)


def finishes(fn, bound=BOUND):
    """Run fn in a thread: -> (finished, result or exception). A hang shows as finished=False, not a stuck suite."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["value"] = exc
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(bound)
    return not thread.is_alive(), box.get("value")


# --- 1. a damaged driving video must not hang the reader ---------------------------------------------------------


@pytest.fixture(scope="module")
def damaged_clip(tmp_path_factory):
    """1200 frames of 320x240 H.264 (with AAC audio) with 500 random bytes every 1500 in the middle 80 %."""
    folder = tmp_path_factory.mktemp("damaged")
    good = make_clip(folder / "good.mp4", frames=1200, size=(320, 240), fps=25, audio=True,
                     extra_args=("-preset", "ultrafast"))
    data = bytearray(good.read_bytes())
    rng = random.Random(0)
    for start in range(len(data) // 10, len(data) * 9 // 10, 1500):
        data[start:start + 500] = bytes(rng.randrange(256) for _ in range(500))
    bad = folder / "bad.mp4"
    bad.write_bytes(bytes(data))
    return bad


def test_damaged_video_streams_past_a_full_stderr_pipe(damaged_clip, ffmpeg_exe):
    from fomm_core.media.video import iter_frames
    # the decoder's complaints about this file overflow a pipe that nobody reads
    errors = subprocess.run([ffmpeg_exe, "-v", "error", "-nostdin", "-i", str(damaged_clip), "-map", "0:v:0",
                             "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE).stderr
    assert len(errors) > 2 * PIPE_BYTES, len(errors)

    done, result = finishes(lambda: sum(1 for _ in iter_frames(damaged_clip)))
    assert done, "reading the damaged video hung"
    assert isinstance(result, (int, FommError)), result
    if isinstance(result, int):
        assert result > 0


def test_damaged_video_through_the_animate_pipeline(damaged_clip, tmp_path):
    torch = pytest.importorskip("torch")
    from conftest import TINY_MODEL
    from fomm_core.model.config import build_models
    from fomm_core.inference.fomm import Animator
    from fomm_core.inference.pipeline import animate_video
    from fomm_core.media.video import probe_video
    torch.manual_seed(0)
    animator = Animator(*build_models(TINY_MODEL), device="cpu", precision="fp32")
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((64, 64, 3), 200, np.uint8))
    out = tmp_path / "out.mp4"
    done, result = finishes(lambda: animate_video(photo, damaged_clip, out, animator, size=64, batch_size=16))
    assert done, "animating the damaged video hung"
    if isinstance(result, FommError):
        assert not out.exists()
    else:
        assert not isinstance(result, BaseException), result
        assert result.frames > 0 and probe_video(out).has_audio
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["photo.png"] + (["out.mp4"] if out.exists() else []))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
def test_reader_stops_ffmpeg_that_sends_nothing(tmp_path):
    from fomm_core.media.video import VideoInfo, iter_frames
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)  # nobody ever writes: ffmpeg waits on it forever, as on a stalled network share
    info = VideoInfo(64, 64, 25.0, 10, 0.4, False, 0)
    done, result = finishes(lambda: list(iter_frames(fifo, info=info, stall_seconds=1)))
    assert done, "the reader waited forever on a silent ffmpeg"
    assert isinstance(result, FommError) and "no frame" in str(result) and "\n" not in str(result), result


def test_probe_has_a_wall_clock_limit(clip_factory):
    from fomm_core.media.video import probe_video
    clip = clip_factory("slow.mp4", frames=5, audio=False)
    with pytest.raises(FommError, match="could not read the header"):
        probe_video(clip, timeout=1e-6)  # no ffmpeg starts, let alone answers, within a microsecond


# --- 2. names with a colon are files, not protocols --------------------------------------------------------------


def test_colon_names_are_read_probed_and_written(clip_factory, tmp_path, monkeypatch):
    from fomm_core.media.video import VideoWriter, iter_frames, probe_video
    clip_factory("12:30.mp4", frames=6, size=(64, 48), audio=True)
    monkeypatch.chdir(tmp_path)
    name = Path("12:30.mp4")  # relative, as a user types it: ffmpeg saw the protocol '12'
    info = probe_video(name)
    assert (info.width, info.height, info.has_audio) == (64, 48, True)
    frames = list(iter_frames(name, info=info))
    assert len(frames) == 6
    with VideoWriter(Path("13:45.mp4"), info.rate, (64, 48), audio_from=name) as out:
        for frame in frames:
            out.write(frame)
    written = probe_video(Path("13:45.mp4"))
    assert (written.width, written.height, written.has_audio) == (64, 48, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["12:30.mp4", "13:45.mp4"]


def test_animate_cli_with_colon_names(clip_factory, tiny_checkpoint, tmp_path):
    clip_factory("12:30.mp4", frames=5, size=(64, 64), audio=True)
    cv2.imwrite(str(tmp_path / "9:00.png"), np.full((80, 60, 3), 90, np.uint8))
    r = run_cli("animate", "9:00.png", "12:30.mp4", "-o", "12:31.mp4", "--checkpoint", tiny_checkpoint,
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    from fomm_core.media.video import iter_frames
    assert len(list(iter_frames(tmp_path / "12:31.mp4"))) == 5


def test_animate_refuses_a_bad_output_before_any_work(clip_factory, tmp_path):
    drv = clip_factory("drv.mp4", frames=4, size=(64, 64), audio=False)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((64, 64, 3), 90, np.uint8))
    before = drv.read_bytes()
    missing = tmp_path / "none.pth.tar"  # the output must be refused before the checkpoint is even looked at
    cases = [(tmp_path / "out.txt", "video extension"), (drv, "is the input"), (photo, "video extension"),
             (tmp_path / "gone" / "out.mp4", "does not exist")]
    for output, words in cases:
        r = run_cli("animate", photo, drv, "-o", output, "--checkpoint", missing)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, (output, r.stderr)
        assert "checkpoint" not in r.stderr, r.stderr
    assert drv.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drv.mp4", "photo.png"]


def test_crop_cli_with_colon_names_and_a_bad_output(tmp_path):
    from test_face import write_face_clip
    write_face_clip(tmp_path / "12:30.mp4", [(60 + 2 * i, 40) for i in range(12)])
    r = run_cli("crop", "12:30.mp4", "-o", "12:30.txt", cwd=tmp_path)
    assert r.returncode == 2 and "video extension" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run_cli("crop", "12:30.mp4", "-o", "12:31.mp4", "--size", "64", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    from fomm_core.media.video import probe_video
    info = probe_video(tmp_path / "12:31.mp4")
    assert (info.width, info.height, info.has_audio) == (64, 64, True)


# --- 3. images that declare more pixels than any photo ------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bytes(width, height, rows=None) -> bytes:
    """An RGB PNG whose IHDR says width x height; `rows` zero rows of data (all when None), deflated."""
    deflate = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte 0, black pixels
    idat = b"".join(deflate.compress(row) for _ in range(height if rows is None else rows)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_bytes(width, height) -> bytes:
    """A JPEG with a 20 KB EXIF segment before its frame header (SOF0) that says width x height."""
    exif = b"Exif\x00\x00" + bytes(20000)
    segments = [(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"), (0xE1, exif),
                (0xDB, b"\x00" + bytes(range(1, 65))),
                (0xC0, struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01")]
    body = b"".join(b"\xff" + bytes([m]) + struct.pack(">H", len(d) + 2) + d for m, d in segments)
    return b"\xff\xd8" + body + b"\xff\xd9"


def test_png_declaring_billions_of_pixels_is_refused_from_its_header(tmp_path):
    from fomm_core.media.images import image_size, load_image
    data = png_bytes(60000, 60000, rows=64)
    assert len(data) < 40_000
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    assert image_size(data) == (60000, 60000)
    with pytest.raises(FommError) as err:
        load_image(path)
    assert "60000x60000" in str(err.value) and "megapixels" in str(err.value) and "\n" not in str(err.value)


def test_jpeg_declaring_billions_of_pixels_is_refused_from_its_header():
    from fomm_core.media.images import decode_image, image_size
    data = jpeg_bytes(65000, 50000)
    assert image_size(data) == (65000, 50000)
    with pytest.raises(FommError, match="65000x50000"):
        decode_image(data, "bomb.jpg")


def test_a_refused_image_never_allocates_its_pixels(tmp_path):
    # 12000x12000 is 432 MB decoded, under OpenCV's own 1-gigapixel limit: only our check stops it
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes(12000, 12000))
    probe = ("import resource, sys\n"
             "from fomm_core.media.images import load_image\n"
             "from fomm_core.errors import FommError\n"
             "import cv2\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "try:\n    load_image(sys.argv[1]); print('loaded')\n"
             "except FommError as e:\n    print('refused', e)\n"
             "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    if sys.platform == "win32":
        pytest.skip("ru_maxrss is POSIX")
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=300)
    lines = out.stdout.strip().splitlines()
    assert lines and lines[0].startswith("refused") and "12000x12000" in lines[0], out.stdout + out.stderr
    assert int(lines[-1]) < 100, f"memory grew by {lines[-1]} MB"


def _encoded(ext, size=(37, 23), params=()):
    ok, buf = cv2.imencode(ext, np.full((size[1], size[0], 3), 120, np.uint8), list(params))
    assert ok, ext
    return buf.tobytes()


@pytest.mark.parametrize("ext,params", [(".png", ()), (".jpg", ()), (".bmp", ()),
                                        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 80)),
                                        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101))],
                         ids=["png", "jpeg", "bmp", "webp-lossy", "webp-lossless"])
def test_header_size_matches_real_files(ext, params):
    from fomm_core.media.images import decode_image, image_size
    data = _encoded(ext, params=params)
    assert image_size(data) == (37, 23)
    assert decode_image(data).shape == (23, 37, 3)


def test_header_size_of_a_real_gif():
    from fomm_core.media.images import image_size
    if not cv2.haveImageWriter("x.gif"):
        pytest.skip("this OpenCV writes no GIF")
    assert image_size(_encoded(".gif")) == (37, 23)


def _grown(ext, params=()):
    """A real encoded file whose header is rewritten to declare 40000x30000 pixels."""
    data = bytearray(_encoded(ext, params=params))
    if ext == ".bmp":
        data[18:26] = struct.pack("<ii", 40000, -30000)  # negative: top-down rows
    elif ext == ".gif":
        data[6:10] = struct.pack("<HH", 40000, 30000)
    elif data[12:16] == b"VP8L":  # 14-bit sizes minus one; the top 4 bits are alpha hint and version
        bits = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)
        data[21:25] = (bits | (16000 - 1) | (15000 - 1) << 14).to_bytes(4, "little")
        return bytes(data), (16000, 15000)
    else:  # lossy WebP: 14-bit sizes after the start code
        data[26:30] = struct.pack("<HH", 16000, 15000)
        return bytes(data), (16000, 15000)
    return bytes(data), (40000, 30000)


@pytest.mark.parametrize("ext,params", [(".bmp", ()), (".gif", ()), (".webp", (cv2.IMWRITE_WEBP_QUALITY, 80)),
                                        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101))],
                         ids=["bmp", "gif", "webp-lossy", "webp-lossless"])
def test_grown_headers_are_refused(ext, params):
    from fomm_core.media.images import decode_image, image_size
    if ext == ".gif" and not cv2.haveImageWriter("x.gif"):
        pytest.skip("this OpenCV writes no GIF")
    data, size = _grown(ext, params)
    assert image_size(data) == size
    with pytest.raises(FommError, match=f"{size[0]}x{size[1]} pixels"):
        decode_image(data, "grown" + ext)


def test_image_with_a_non_ascii_path_loads(tmp_path):
    from fomm_core.media.images import load_image
    path = tmp_path / "фото 照片 ü.png"
    path.write_bytes(_encoded(".png", size=(30, 20)))
    assert load_image(path).shape == (20, 30, 3)


# --- 4. programs are found on PATH, never in the current folder ---------------------------------------------------


def _plant(folder: Path, name: str, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_find_tool_on_windows_skips_the_current_folder(tmp_path):
    here, bin_dir = tmp_path / "downloads", tmp_path / "tools"
    _plant(here, "ffmpeg.exe")
    path = f'{here};.;;"{here}"'
    assert find_tool("ffmpeg", path=path, platform="win32", cwd=str(here), pathext=".COM;.EXE") is None
    real = _plant(bin_dir, "ffmpeg.exe")
    found = find_tool("ffmpeg", path=f"{path};{bin_dir}", platform="win32", cwd=str(here), pathext=".COM;.EXE")
    assert found == str(real)
    # the name with its extension, as given, is found too
    assert find_tool("ffmpeg.exe", path=str(bin_dir), platform="win32", cwd=str(here)) == str(real)


@pytest.mark.skipif(sys.platform == "win32", reason="executable bits and ':'-separated PATH")
def test_find_tool_here_skips_cwd_and_relative_entries(tmp_path, monkeypatch):
    here, bin_dir = tmp_path / "work", tmp_path / "bin"
    _plant(here, "fomm-hostile-tool")
    monkeypatch.chdir(here)
    monkeypatch.setenv("PATH", f":.:work:{tmp_path}/nothing")
    assert find_tool("fomm-hostile-tool") is None
    real = _plant(bin_dir, "fomm-hostile-tool")
    monkeypatch.setenv("PATH", f":.:{bin_dir}")
    assert find_tool("fomm-hostile-tool") == str(real)
    (bin_dir / "not-executable").write_text("")
    assert find_tool("not-executable") is None


@pytest.fixture
def planted(tmp_path, monkeypatch, ffmpeg_exe):
    """cwd holds planted ffmpeg/nvidia-smi/rocminfo scripts that leave a mark when run; PATH lists '.' first,
    then a folder with the real ffmpeg (a link) and harmless nvidia-smi/rocminfo."""
    here, bin_dir = tmp_path / "here", tmp_path / "bin"
    mark = tmp_path / "planted-ran"
    for name in ("ffmpeg", "nvidia-smi", "rocminfo"):
        _plant(here, name, f"#!/bin/sh\necho ran > '{mark}'\nexit 1\n")
    for name in ("nvidia-smi", "rocminfo"):
        _plant(bin_dir, name)
    (bin_dir / "ffmpeg").symlink_to(ffmpeg_exe)
    monkeypatch.chdir(here)
    monkeypatch.setenv("PATH", f".:{bin_dir}")
    return bin_dir, mark


@pytest.mark.skipif(sys.platform == "win32", reason="shell scripts as planted programs")
def test_checks_never_run_a_program_planted_in_the_current_folder(planted, monkeypatch):
    from fomm_doctor.checks import ffmpeg as ffchk
    from fomm_doctor.checks.gpu.nvidia import nvidia_smi_candidates
    from fomm_doctor.checks.gpu.amd import rocminfo_candidates
    bin_dir, mark = planted
    facts = ffchk.probe_path()
    assert facts["path"] == str(bin_dir / "ffmpeg") and facts["version"], facts
    assert not mark.exists()
    assert nvidia_smi_candidates("linux")[0] == str(bin_dir / "nvidia-smi")
    assert rocminfo_candidates()[0] == str(bin_dir / "rocminfo")
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", "ffmpeg")  # a bare name: imageio-ffmpeg hands it back as is
    from fomm_core.media.video import ffmpeg_exe
    assert ffmpeg_exe() == str(bin_dir / "ffmpeg")
    assert ffchk.probe_bundled()["path"] == str(bin_dir / "ffmpeg")
    assert not mark.exists()


def test_windows_gpu_listing_runs_powershell_by_its_full_path():
    from fomm_doctor.checks.gpu.intel import probe_intel
    ran = []

    def run(cmd, **kw):
        ran.append(cmd[0])
        raise FileNotFoundError(cmd[0])
    res = probe_intel(run=run, platform="win32")
    assert ran and ran[0].lower().endswith(r"\system32\windowspowershell\v1.0\powershell.exe"), ran
    assert res["errors"] == ["powershell: not found"]


# --- 5. checkpoints torch's safe loader refuses get our sentence -------------------------------------------------


class RunsCode:
    """What a hostile checkpoint carries: unpickling it would call os.system."""

    def __reduce__(self):
        return (os.system, ("echo unpickled",))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip-format", "torch-1.0-format"])
def test_checkpoint_with_code_is_refused_in_one_sentence(tmp_path, legacy):
    torch = pytest.importorskip("torch")
    from fomm_core.model.checkpoint import read_checkpoint
    path = tmp_path / "hostile.pth.tar"
    torch.save({"generator": {}, "kp_detector": {}, "payload": RunsCode()}, path,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(FommError) as err:
        read_checkpoint(path)
    text = str(err.value)
    assert "contains a Python object" in text and ".system)" in text and "\n" not in text, text


@pytest.mark.parametrize("payload,named", [
    (lambda: __import__("argparse").Namespace(lr=0.1), "argparse.Namespace"),
    (lambda: RunsCode, "test_media_hostile.RunsCode"),
])
def test_checkpoint_with_objects_names_them(tmp_path, payload, named):
    torch = pytest.importorskip("torch")
    from fomm_core.model.checkpoint import read_checkpoint
    path = tmp_path / "objects.pth.tar"
    torch.save({"generator": {}, "kp_detector": {}, "opts": payload()}, path)
    with pytest.raises(FommError, match=f"contains a Python object \\({named}\\)"):
        read_checkpoint(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_the_safe_loader_cannot_parse_is_refused_not_called_garbage(tmp_path):
    torch = pytest.importorskip("torch")
    from fomm_core.model.checkpoint import read_checkpoint
    path = tmp_path / "protocol4.pth.tar"
    torch.save({"generator": {"w": torch.zeros(2)}, "kp_detector": {}}, path, pickle_protocol=4)
    with pytest.raises(FommError) as err:
        read_checkpoint(path)
    text = str(err.value)
    assert "safe loader refuses (Unsupported operand" in text and "\n" not in text, text


def test_live_reads_its_source_like_animate(tmp_path):
    """`live` used cv2.imread: no pixel limit, and no non-ASCII paths on Windows. It now shares load_image."""
    from fomm_core.media.crop import source_square
    photo = tmp_path / "照片.png"
    photo.write_bytes(_encoded(".png", size=(40, 30)))
    assert source_square(photo, 16, crop=False).image.shape == (16, 16, 3)
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_bytes(60000, 60000, rows=1))
    with pytest.raises(FommError) as err:
        source_square(huge, 16, crop=False).image
    assert "60000" in str(err.value).replace(",", "")
