"""fomm_core.media.video on real clips encoded by the bundled ffmpeg: probe, streamed frames, the atomic writer."""
import subprocess
import sys
import time

import numpy as np
import pytest

from fomm_core.errors import FommError
from fomm_core.media.video import VideoWriter, iter_frames, parse_probe, probe_video


def test_probe_reads_size_fps_audio_and_duration(clip_factory):
    clip = clip_factory("a.mp4", frames=12, size=(96, 64), fps=25, audio=True)
    info = probe_video(clip)
    assert (info.width, info.height, info.fps, info.rotation) == (96, 64, 25.0, 0)
    assert info.has_audio
    assert abs(info.duration - 12 / 25) < 0.05
    assert info.frame_count == 12
    assert not probe_video(clip_factory("b.mp4", audio=False)).has_audio


def test_odd_fps_is_kept_exactly(ffmpeg_exe, tmp_path):
    clip = tmp_path / "ntsc.mp4"
    subprocess.run([ffmpeg_exe, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=50x38:rate=30000/1001",
                    "-frames:v", "6", "-c:v", "libx264", "-pix_fmt", "yuv444p", str(clip)], check=True)
    info = probe_video(clip)
    assert info.rate == "30000/1001"
    assert (info.width, info.height) == (50, 38)


def test_frames_stream_as_rgb_uint8_and_count_is_exact(clip_factory):
    clip = clip_factory("c.mp4", frames=9, size=(96, 64), audio=False)
    frames = list(iter_frames(clip))
    assert len(frames) == 9
    assert all(f.shape == (64, 96, 3) and f.dtype == np.uint8 for f in frames)
    # testsrc2 moves: consecutive frames differ
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1
    scaled = next(iter_frames(clip, size=(32, 16)))
    assert scaled.shape == (16, 32, 3)


def test_rotation_metadata_is_applied(clip_factory, ffmpeg_exe, tmp_path):
    clip = clip_factory("r0.mp4", frames=5, size=(96, 64), audio=False)
    rotated = tmp_path / "r90.mp4"
    subprocess.run([ffmpeg_exe, "-y", "-v", "error", "-display_rotation", "90", "-i", str(clip), "-c", "copy",
                    str(rotated)], check=True)
    info = probe_video(rotated)
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (64, 96)
    frames = list(iter_frames(rotated))
    assert len(frames) == 5 and frames[0].shape == (96, 64, 3)
    upright = next(iter_frames(clip))
    # the rotated frame is the upright one turned by 90 degrees (one way or the other), up to codec noise
    best = min(np.abs(np.rot90(upright, k).astype(int) - frames[0].astype(int)).mean() for k in (1, 3))
    assert best < 3


def test_writer_writes_frames_fps_and_audio_then_renames(clip_factory, tmp_path):
    drv = clip_factory("drv.mp4", frames=10, size=(64, 64), fps=20, audio=True)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, "20", (48, 32), audio_from=drv) as w:
        assert not out.exists()
        for f in iter_frames(drv, size=(48, 32)):
            w.write(f)
    info = probe_video(out)
    assert (info.width, info.height, info.fps, info.has_audio) == (48, 32, 20.0, True)
    assert len(list(iter_frames(out))) == 10
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_writer_with_a_tone_has_audio_as_long_as_the_video(tmp_path):
    out = tmp_path / "tone.mp4"
    with VideoWriter(out, 25, (32, 32), tone_hz=440) as w:
        for i in range(10):
            w.write(np.full((32, 32, 3), 20 * i, np.uint8))
    info = probe_video(out)
    assert info.has_audio and len(list(iter_frames(out))) == 10
    assert abs(info.duration - 10 / 25) < 0.1       # the endless tone stopped with the video


def test_writer_pads_odd_sizes(tmp_path):
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, 25, (33, 17)) as w:
        for _ in range(3):
            w.write(np.full((17, 33, 3), 128, np.uint8))
    info = probe_video(out)
    assert (info.width, info.height) == (34, 18) and not info.has_audio


def test_exception_inside_writer_leaves_nothing(tmp_path):
    out = tmp_path / "broken.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out, 25, (32, 32)) as w:
            w.write(np.zeros((32, 32, 3), np.uint8))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in ffmpeg is a POSIX shell script")
def test_stuck_ffmpeg_at_close_is_killed_and_leaves_nothing(tmp_path, monkeypatch):
    """An ffmpeg that takes every frame and creates its output, then never exits: close() gives up in time."""
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    # the output (last argument, `file:/abs/path`) is created, stdin read to its end, then the process hangs
    fake.write_text('#!/bin/sh\nfor last; do :; done\n: > "${last#file:}"\ncat > /dev/null\nexec sleep 600\n')
    fake.chmod(0o755)
    monkeypatch.setattr("fomm_core.media.video.ffmpeg_exe", lambda: str(fake))
    out = tmp_path / "out" / "stuck.mp4"
    out.parent.mkdir()
    writer = VideoWriter(out, 25, (32, 32), close_timeout=1)
    writer.write(np.zeros((32, 32, 3), np.uint8))
    for _ in range(200):  # the stand-in creates the temp file as it starts
        if writer.tmp.exists():
            break
        time.sleep(0.05)
    assert writer.tmp.exists()
    with pytest.raises(FommError, match=r"did not finish writing .*stuck\.mp4 within 1 s, so it was stopped"):
        writer.close()
    assert writer._proc.poll() is not None          # killed, not left running
    assert list(out.parent.iterdir()) == []         # neither the temp file nor the output


def test_wrong_frame_shape_and_missing_folder_are_sentences(tmp_path):
    with pytest.raises(FommError, match="does not exist"):
        VideoWriter(tmp_path / "nope" / "x.mp4", 25, (32, 32))
    with VideoWriter(tmp_path / "x.mp4", 25, (32, 32)) as w:
        with pytest.raises(FommError, match="shape"):
            w.write(np.zeros((10, 10, 3), np.uint8))
        w.write(np.zeros((32, 32, 3), np.uint8))


def test_corrupt_empty_and_missing_videos(tmp_path, clip_factory, ffmpeg_exe):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for bad in (junk, empty, tmp_path / "missing.mp4"):
        with pytest.raises(FommError):
            probe_video(bad)
    # a real header with its frames cut away: probes, yet yields no frame
    clip = clip_factory("t.mp4", frames=30, size=(64, 64), audio=False, extra_args=("-movflags", "+faststart"))
    cut = tmp_path / "cut.mp4"
    data = clip.read_bytes()
    cut.write_bytes(data[:data.index(b"mdat") + 4])  # header kept, every frame's data gone
    with pytest.raises(FommError, match="corrupt"):
        list(iter_frames(cut))
    with pytest.raises(FommError, match="no video frame"):  # past the probe, decoding finds nothing
        list(iter_frames(cut, info=probe_video(clip)))
    audio_only = tmp_path / "audio.m4a"
    subprocess.run([ffmpeg_exe, "-y", "-v", "error", "-f", "lavfi", "-i", "sine=duration=0.2", str(audio_only)],
                   check=True)
    with pytest.raises(FommError, match="no video stream"):
        probe_video(audio_only)


def test_parse_probe_on_old_rotate_tag():
    text = ("  Duration: 00:00:02.00, start: 0.000000, bitrate: 100 kb/s\n"
            "  Stream #0:0(und): Video: h264 (avc1), yuv420p, 1920x1080, 29.97 fps, 29.97 tbr\n"
            "    Metadata:\n      rotate          : 90\n")
    info = parse_probe(text)
    assert (info.width, info.height, info.rotation, info.rate) == (1080, 1920, 90, "30000/1001")
    assert info.frame_count == 60 and not info.has_audio


def test_short_audio_does_not_cut_the_video(ffmpeg_exe, tmp_path):
    drv = tmp_path / "short_audio.mp4"
    subprocess.run([ffmpeg_exe, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=32x32:rate=25:duration=2",
                    "-f", "lavfi", "-i", "sine=duration=0.4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    str(drv)], check=True)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 25, (32, 32), audio_from=drv) as w:
        for f in iter_frames(drv):
            w.write(f)
    info = probe_video(out)
    assert info.has_audio and len(list(iter_frames(out))) == 50
    assert abs(info.duration - 2.0) < 0.1


def _audio_samples(ffmpeg_exe, path) -> int:
    raw = subprocess.run([ffmpeg_exe, "-v", "error", "-i", str(path), "-map", "0:a", "-ac", "1", "-ar", "44100",
                          "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return len(raw) // 2


def test_audio_is_cut_to_the_frames_and_a_second_write_is_the_same_file(ffmpeg_exe, tmp_path):
    """A driving clip with 3 s of audio under 10 frames: the audio ends with the tenth frame (0.4 s), every time.
    With -shortest and frames arriving through a pipe, the cut depended on timing: 0.2 s in one run, 0.5 s in
    the next, so the same job gave different files."""
    from fomm_doctor.net.digests import file_sha256
    drv = tmp_path / "long_audio.mp4"
    subprocess.run([ffmpeg_exe, "-y", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=32x32:rate=25:duration=0.4",
                    "-f", "lavfi", "-i", "sine=duration=3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    str(drv)], check=True)
    frames = list(iter_frames(drv))
    digests = set()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        with VideoWriter(tmp_path / name, 25, (32, 32), audio_from=drv) as w:
            for f in frames:
                w.write(f)
                time.sleep(0.02)  # frames arrive as a model makes them: slowly
        assert abs(_audio_samples(ffmpeg_exe, tmp_path / name) - 0.4 * 44100) <= 1024  # within one AAC frame
        digests.add(file_sha256(tmp_path / name))
    assert len(digests) == 1
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


def test_a_link_planted_at_the_writers_temp_names_is_never_written_through(clip_factory, tmp_path):
    from fomm_core.media.video import writer_temp_paths

    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"ours, not a video")
    out = tmp_path / "out" / "result.mp4"
    out.parent.mkdir()
    for temp in writer_temp_paths(out):
        temp.symlink_to(victim)
    clip = clip_factory("drv.mp4", frames=3, size=(32, 32), audio=True)
    with VideoWriter(out, fps=10, size=(32, 32), audio_from=clip) as writer:
        for _ in range(3):
            writer.write(np.zeros((32, 32, 3), np.uint8))
    assert victim.read_bytes() == b"ours, not a video"
    assert probe_video(out).width == 32
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.mp4"]
