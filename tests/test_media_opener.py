"""Every video file reaches ffmpeg through one opener: local files of the containers we read, nothing they name.

Real inputs: an HLS playlist and a concat script naming a private `.ts` encoded by the bundled ffmpeg (served
through a named pipe, so any opening of it is seen), a playlist naming a segment on a real HTTP server on
127.0.0.1, an 8200x8200 clip, a 2x2 clip, TIFF files built byte by byte with real deflated pixels.
"""
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, make_clip, run_cli
from fomm_core.errors import FommError

cv2 = pytest.importorskip("cv2")


def _playlist(segment: str) -> str:
    return f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:0.5,\n{segment}\n#EXT-X-ENDLIST\n"


@pytest.fixture(scope="module")
def secret_ts(tmp_path_factory, ffmpeg_exe):
    """The bytes of a real MPEG-TS clip with sound: what a playlist could name."""
    path = tmp_path_factory.mktemp("secret") / "secret.ts"
    subprocess.run([ffmpeg_exe, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10:duration=0.5",
                    "-f", "lavfi", "-i", "sine=frequency=880:duration=0.5", "-c:v", "libx264", "-c:a", "aac",
                    "-shortest", "-f", "mpegts", str(path)], check=True)
    return path.read_bytes()


class WatchedFile:
    """A named pipe that hands `data` to whoever opens it, and counts the openings (ffmpeg reading it)."""

    def __init__(self, path: Path, data: bytes):
        self.path, self.data, self.opened = path, data, 0
        os.mkfifo(path)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            fd = os.open(self.path, os.O_WRONLY)   # blocks until a reader opens the pipe
            if self._stop:
                os.close(fd)
                return
            self.opened += 1
            try:
                os.write(fd, self.data)
            except OSError:  # the reader went away early
                pass
            os.close(fd)

    def close(self) -> int:
        self._stop = True
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)   # releases the waiting open above
        self._thread.join(10)
        os.close(fd)
        return self.opened


@pytest.fixture
def watched_secret(tmp_path, secret_ts):
    if not hasattr(os, "mkfifo"):
        pytest.fail("these tests need named pipes (POSIX)")
    watched = WatchedFile(tmp_path / "secret.ts", secret_ts)
    yield watched
    if not watched._stop:
        watched.close()


def _photo(folder: Path) -> Path:
    path = folder / "photo.png"
    cv2.imwrite(str(path), np.full((64, 64, 3), 90, np.uint8))
    return path


def _one_sentence(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# --- playlists, scripts and protocols ------------------------------------------------------------------------


def test_a_playlist_given_to_animate_is_refused_and_its_segment_never_opened(tmp_path, tiny_checkpoint,
                                                                              watched_secret):
    playlist = tmp_path / "clip.m3u8"
    playlist.write_text(_playlist("secret.ts"))
    photo = _photo(tmp_path)
    try:
        r = run_cli("animate", photo, playlist, "-o", tmp_path / "out.mp4", "--checkpoint", tiny_checkpoint,
                    timeout=120, cwd=REPO)
    finally:
        opened = watched_secret.close()
    assert opened == 0, "ffmpeg opened the file the playlist names"
    line = _one_sentence(r.stderr)
    assert r.returncode == 2 and "HLS playlist, not a video file this reads" in line, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.m3u8", "photo.png", "secret.ts"]


def test_the_page_refuses_a_playlist_too(tmp_path, tiny_checkpoint, watched_secret):
    from fomm_doctor.ui import actions
    playlist = tmp_path / "clip.m3u8"
    playlist.write_text(_playlist("secret.ts"))
    results = tmp_path / "results"
    request = actions.AnimateRequest(str(_photo(tmp_path)), str(playlist))
    box = {}

    def page_action():
        try:
            box["value"] = actions.Animations(results).animate(request, lambda fraction, text: None)
        except Exception as err:  # noqa: BLE001 - handed back to the test
            box["value"] = err
    thread = threading.Thread(target=page_action, daemon=True)
    thread.start()
    thread.join(120)   # the playlist's segment being read would keep the page busy, not end in a sentence
    opened = watched_secret.close()
    assert not thread.is_alive(), "the page was still reading the playlist"
    assert isinstance(box["value"], FommError), box["value"]
    assert "HLS playlist, not a video file this reads" in str(box["value"])
    assert opened == 0
    assert not results.exists() or list(results.iterdir()) == []


def test_every_reading_ffmpeg_refuses_a_concat_script(tmp_path, watched_secret):
    """The probe, the reader (even when handed a probe result), the writer's audio copy and crop's ffmpeg."""
    from fomm_core.media.crop import crop_video
    from fomm_core.media.face import Box
    from fomm_core.media.video import VideoInfo, VideoWriter, iter_frames, probe_video
    script = tmp_path / "list.txt"
    script.write_text("ffconcat version 1.0\nfile secret.ts\n")
    said = "concat script, not a video file this reads"
    try:
        with pytest.raises(FommError, match=said):
            probe_video(script)
        with pytest.raises(FommError, match=said):
            list(iter_frames(script, info=VideoInfo(64, 64, 10.0, 5, 0.5, True, 0, "10")))
        writer = VideoWriter(tmp_path / "out.mp4", 10, (64, 64), audio_from=script)
        writer.write(np.zeros((64, 64, 3), np.uint8))
        with pytest.raises(FommError, match=said):
            writer.close()
        with pytest.raises(FommError, match=said):
            crop_video(script, tmp_path / "crop.mp4", Box(0, 0, 32, 32), 32)
    finally:
        opened = watched_secret.close()
    assert opened == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.txt", "secret.ts"]


def test_a_playlist_naming_a_web_address_sends_no_request(tmp_path, secret_ts):
    from httpfaults import FaultServer
    from fomm_core.media.video import iter_frames, probe_video
    with FaultServer({"/seg.ts": secret_ts}) as srv:
        playlist = tmp_path / "web.m3u8"
        playlist.write_text(_playlist(srv.url("/seg.ts")))
        with pytest.raises(FommError, match="HLS playlist"):
            probe_video(playlist)
        with pytest.raises(FommError, match="HLS playlist"):
            list(iter_frames(playlist, info=probe_video(make_clip(tmp_path / "ok.mp4", frames=3, audio=False))))
        assert srv.log == []


def test_names_like_protocols_are_files(tmp_path, secret_ts, monkeypatch):
    """`concat:`, `subfile,...:` and `data:` in a name are part of a file's name: the file itself is read, and a
    playlist under such a name is refused like any playlist."""
    from fomm_core.media.video import iter_frames, probe_video
    (tmp_path / "secret.ts").write_bytes(secret_ts)
    monkeypatch.chdir(tmp_path)
    real = make_clip(tmp_path / "concat:secret.ts|secret.ts", frames=3, size=(48, 32), audio=False)
    info = probe_video(Path(real.name))
    assert (info.width, info.height) == (48, 32)                     # not the 64x64 secret
    assert [f.shape for f in iter_frames(Path(real.name), info=info)] == [(32, 48, 3)] * 3
    disguised = Path("subfile,,start,0,end,0,,:secret.m3u8")
    disguised.write_text(_playlist("secret.ts"))
    with pytest.raises(FommError, match="HLS playlist"):
        probe_video(disguised)


def test_live_takes_a_file_camera_through_the_same_opener(tmp_path, watched_secret):
    from fomm_core.live.capture import LatestFrameCapture, parse_camera
    from fomm_core.live.stats import LiveStats
    playlist = tmp_path / "cam.m3u8"
    playlist.write_text(_playlist("secret.ts"))
    try:
        capture = LatestFrameCapture(str(playlist), stats=LiveStats())
        try:
            with pytest.raises(FommError, match="HLS playlist"):
                capture.open()
        finally:
            capture.close()
        with pytest.raises(FommError, match="not a network stream URL") as err:
            parse_camera(playlist.as_uri())      # file:// would hand it to OpenCV's own ffmpeg
    finally:
        opened = watched_secret.close()
    assert opened == 0
    assert err.value.setting == ("camera", "VIDEO_FILE") and "\n" not in str(err.value)


def test_every_container_a_folder_of_videos_may_hold_still_opens(tmp_path, ffmpeg_exe):
    """The whitelist keeps every extension of VIDEO_EXTENSIONS readable: one real clip of each, probed and read."""
    from fomm_core.media.video import VIDEO_EXTENSIONS, iter_frames, probe_video
    codec = {".mpg": "mpeg2video", ".mpeg": "mpeg2video", ".3gp": "libx264", ".ts": "libx264", ".wmv": "wmv2",
             ".gif": "gif"}
    for ext in VIDEO_EXTENSIONS:
        clip = tmp_path / f"clip{ext}"
        subprocess.run([ffmpeg_exe, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=32x32:rate=25:duration=0.12",
                        *(["-c:v", codec[ext]] if ext in codec else []), str(clip)], check=True)
        info = probe_video(clip)
        assert (info.width, info.height) == (32, 32), ext
        assert len(list(iter_frames(clip, info=info))) == 3, ext


# --- sizes: a video's pixels are capped as an image's, from the header ---------------------------------------


@pytest.fixture(scope="module")
def huge_clip(tmp_path_factory, ffmpeg_exe):
    """One black 8200x8200 frame (67 megapixels) in 200 KB of H.264."""
    path = tmp_path_factory.mktemp("huge") / "huge.mp4"
    subprocess.run([ffmpeg_exe, "-y", "-v", "error", "-f", "lavfi", "-i", "color=black:size=8200x8200:rate=1:duration=1",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def test_a_video_over_the_pixel_limit_is_refused_before_animating(huge_clip, tmp_path, tiny_checkpoint):
    photo = _photo(tmp_path)
    r = run_cli("animate", photo, huge_clip, "-o", tmp_path / "out.mp4", "--checkpoint", tiny_checkpoint, "--crop",
                timeout=120, cwd=REPO)
    line = _one_sentence(r.stderr)
    assert r.returncode == 2 and "8200x8200 pixels" in line and "megapixels allowed" in line, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_the_decoder_refuses_a_frame_larger_than_the_header_said(huge_clip):
    """Handed a probe result that says 64x64 (a file swapped after probing), the reader still decodes nothing."""
    from fomm_core.media.video import VideoInfo, iter_frames
    with pytest.raises(FommError, match="no video frame"):
        list(iter_frames(huge_clip, info=VideoInfo(64, 64, 1.0, 1, 1.0, False, 0, "1")))


def test_a_2x2_video_is_animated(tmp_path, tiny_checkpoint, ffmpeg_exe):
    clip = tmp_path / "tiny.mp4"
    subprocess.run([ffmpeg_exe, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=2x2:rate=10:duration=0.4",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)], check=True)
    from fomm_core.media.video import iter_frames, probe_video
    info = probe_video(clip)
    assert (info.width, info.height) == (2, 2)
    out = tmp_path / "out.mp4"
    r = run_cli("animate", _photo(tmp_path), clip, "-o", out, "--checkpoint", tiny_checkpoint, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert len(list(iter_frames(out))) == 4


_STREAM = "  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), {size}{sar}, " \
          "19 kb/s, 25 fps, 25 tbr, 12800 tbn (default)\n"


@settings(max_examples=200, deadline=None)
@given(w=st.integers(1, 99999), h=st.integers(1, 99999), sar=st.sampled_from(["", " [SAR 1:1 DAR 1:1]"]),
       tag=st.sampled_from(["avc1 / 0x31637661", "[0][0][0][0] / 0x0000", "[33][0][0][0] / 0x0021"]))
def test_parse_probe_reads_any_frame_size_and_never_a_codec_tag(w, h, sar, tag):
    from fomm_core.media.video import parse_probe
    text = "  Duration: 00:00:01.00, start: 0.000000\n" + _STREAM.format(size=f"{w}x{h}", sar=sar).replace(
        "avc1 / 0x31637661", tag)
    info = parse_probe(text)
    assert (info.width, info.height, info.fps) == (w, h, 25.0)
    with pytest.raises(FommError, match="no frame size"):
        parse_probe(text.replace(f"{w}x{h}", "0x0"))


# --- TIFF: sized from its header, every page and tile ---------------------------------------------------------


def tiff_bytes(width, height, *, rows=None, order="<", big=False, pages=(), tile=None) -> bytes:
    """A gray 8-bit TIFF whose first page says width x height, its strip `rows` deflated zero rows (all when
    None); `pages` more (w, h) pages with no pixel data; `tile` (w, h) declared on the first page."""
    deflate = zlib.compressobj(9)
    row = bytes(width)
    strip = b"".join(deflate.compress(row) for _ in range(height if rows is None else rows)) + deflate.flush()
    short, long_, word = 3, (16 if big else 4), ("Q" if big else "I")
    data_at = 16 if big else 8
    ifds, offset = [], data_at + len(strip)

    def ifd(w, h, extra, strip_at, strip_len):
        entries = [(256, long_, w), (257, long_, h), (258, short, 8), (259, short, 8), (262, short, 1),
                   (273, long_, strip_at), (277, short, 1), (278, long_, h), (279, long_, strip_len)] + extra
        return sorted(entries)

    pages_all = [(width, height, [(322, long_, tile[0]), (323, long_, tile[1])] if tile else [], data_at,
                  len(strip))] + [(w, h, [], data_at, 0) for w, h in pages]
    entry_size, count_fmt = (20, "Q") if big else (12, "H")
    sizes = [struct.calcsize(count_fmt) + entry_size * len(ifd(*p)) + struct.calcsize(word) for p in pages_all]
    starts = [offset + sum(sizes[:i]) for i in range(len(sizes))]
    for i, p in enumerate(pages_all):
        entries = ifd(*p)
        body = struct.pack(order + count_fmt, len(entries))
        for tag, kind, value in entries:
            packed = struct.pack(order + ("H" if kind == short else word), value)
            pad = (8 if big else 4) - len(packed)
            body += struct.pack(order + "HH", tag, kind) + struct.pack(order + ("Q" if big else "I"), 1)
            body += packed + bytes(pad)
        body += struct.pack(order + word, starts[i + 1] if i + 1 < len(starts) else 0)
        ifds.append(body)
    magic = (b"II" if order == "<" else b"MM") + struct.pack(order + "H", 43 if big else 42)
    header = magic + (struct.pack(order + "HHQ", 8, 0, offset) if big else struct.pack(order + "I", offset))
    assert len(header) == data_at
    return header + strip + b"".join(ifds)


def test_a_real_tiff_is_read_with_its_size_from_the_header(tmp_path):
    from fomm_core.media.images import image_size, load_image
    ok, buf = cv2.imencode(".tiff", np.full((23, 37, 3), 120, np.uint8))
    assert ok and image_size(buf.tobytes()) == (37, 23)
    built = tiff_bytes(37, 23)
    assert image_size(built) == (37, 23)
    path = tmp_path / "built.tif"
    path.write_bytes(built)
    assert load_image(path).shape == (23, 37, 3)     # the builder makes a TIFF OpenCV decodes


@pytest.mark.parametrize("kw,size", [({"order": "<"}, (60000, 60000)), ({"order": ">"}, (60000, 60000)),
                                     ({"big": True}, (60000, 60000))], ids=["II", "MM", "BigTIFF"])
def test_a_tiff_declaring_billions_of_pixels_is_refused_from_its_header(tmp_path, kw, size):
    from fomm_core.media.images import image_size, load_image
    data = tiff_bytes(*size, rows=16, **kw)
    assert len(data) < 10_000 and image_size(data) == size
    path = tmp_path / "bomb.tif"
    path.write_bytes(data)
    with pytest.raises(FommError) as err:
        load_image(path)
    assert "60000x60000 pixels" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kw", [{"pages": [(60000, 60000)]}, {"tile": (60000, 60000)}], ids=["page-2", "tile"])
def test_a_huge_second_page_or_tile_is_refused(kw):
    from fomm_core.media.images import decode_image
    with pytest.raises(FommError, match="60000x60000 pixels"):
        decode_image(tiff_bytes(32, 32, **kw), "pages.tif")


def test_a_refused_tiff_never_allocates_its_pixels(tmp_path):
    # 12000x12000 gray is 144 MB decoded from 150 KB, under OpenCV's own 1-gigapixel limit: only our check stops it
    if sys.platform == "win32":
        pytest.fail("ru_maxrss is POSIX")
    path = tmp_path / "big.tif"
    path.write_bytes(tiff_bytes(12000, 12000))
    probe = ("import resource, sys\n"
             "from fomm_core.media.images import load_image\n"
             "from fomm_core.errors import FommError\n"
             "import cv2\n"
             "decode = cv2.imdecode\n"
             "def watched(*a):\n    print('decoded'); return decode(*a)\n"
             "cv2.imdecode = watched\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "try:\n    load_image(sys.argv[1]); print('loaded')\n"
             "except FommError as e:\n    print('refused', e)\n"
             "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    # run from the checkout under test, so that `-c` imports its fomm_core whatever the current folder
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=300,
                         cwd=REPO)
    lines = out.stdout.strip().splitlines()
    assert lines and lines[0].startswith("refused") and "12000x12000" in lines[0], out.stdout + out.stderr
    assert int(lines[-1]) < 50, f"memory grew by {lines[-1]} MB"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=st.integers(1, 70000), h=st.integers(1, 70000), order=st.sampled_from("<>"), big=st.booleans(),
       second=st.one_of(st.none(), st.tuples(st.integers(1, 70000), st.integers(1, 70000))))
def test_tiff_header_size_is_the_largest_page(w, h, order, big, second):
    from fomm_core.media.images import image_size
    pages = [second] if second else []
    data = tiff_bytes(w, h, rows=0, order=order, big=big, pages=pages)
    assert image_size(data) == max([(w, h)] + pages, key=lambda s: s[0] * s[1])


@settings(max_examples=300, deadline=None)
@given(tail=st.binary(max_size=200), magic=st.sampled_from([b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"]))
def test_any_bytes_after_a_tiff_magic_are_a_sentence(tail, magic):
    from fomm_core.media.images import decode_image, image_size
    data = magic + tail
    size = image_size(data)
    assert size is None or (len(size) == 2 and all(isinstance(v, int) for v in size))
    try:
        decode_image(data, "x.tif")
    except FommError as err:
        assert "\n" not in str(err)
