"""ffmpeg.*: the bundled binary really encodes a clip with audio; a broken ffmpeg on PATH is reported."""
import stat

from fomm_doctor.checks import ffmpeg as ffchk

LINUX = {"platform": "linux", "os": "linux"}


def script(tmp_path, name, body):
    exe = tmp_path / name
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


def test_bundled_ffmpeg_encodes_video_with_audio(ffmpeg_exe):
    facts = ffchk.probe_bundled()
    assert facts["path"] == ffmpeg_exe
    assert facts["encode"]["ok"] and facts["encode"]["has_audio"] and facts["encode"]["bytes"] > 1000
    r = ffchk.judge_bundled(facts, LINUX)
    assert r.status == "ok" and facts["version"] in r.summary


def test_real_ffmpeg_on_path_works(ffmpeg_exe):
    facts = ffchk.probe_path(which=lambda name: ffmpeg_exe)
    assert facts["encode"]["ok"]
    assert ffchk.judge_path(facts, {"encode": {"ok": True}}).status == "ok"


def test_ffmpeg_that_cannot_encode(tmp_path):
    # Prints a version, then fails every encode, like a build without libx264.
    exe = script(tmp_path, "ffmpeg", 'case "$*" in *-version*) echo "ffmpeg version 4.2.7-0ubuntu0.1"; exit 0;; esac\n'
                                     'echo "Unknown encoder \'libx264\'" >&2; exit 1\n')
    facts = ffchk.probe_path(which=lambda name: exe)
    assert facts["version"] == "4.2.7-0ubuntu0.1" and facts["encode"]["ok"] is False
    assert "libx264" in facts["encode"]["error"]
    r = ffchk.judge_path(facts, {"encode": {"ok": True}})
    assert r.status == "warn" and "libx264" in r.summary
    bundled_broken = ffchk.judge_bundled(dict(facts, installed=True), LINUX)
    assert bundled_broken.status == "fail" and "imageio-ffmpeg" in bundled_broken.fix


def test_ffmpeg_that_does_not_run(tmp_path):
    exe = script(tmp_path, "ffmpeg", "exit 127\n")
    facts = ffchk.probe_path(which=lambda name: exe)
    assert facts["version"] is None
    assert ffchk.judge_path(facts, {"encode": {"ok": True}}).status == "warn"


def test_missing_pieces():
    none_on_path = ffchk.judge_path({"path": None}, {"encode": {"ok": True}})
    assert none_on_path.status == "ok"
    assert ffchk.judge_path({"path": None}, {"installed": False}).status == "warn"
    r = ffchk.judge_bundled({"installed": False}, {"platform": "win32"})
    assert r.status == "fail" and r.fix == "py -m pip install imageio-ffmpeg"
