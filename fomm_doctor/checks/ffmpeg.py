"""ffmpeg checks: the binary bundled with imageio-ffmpeg and any ffmpeg on PATH — their versions, and a real
1-second encode of a generated clip with an audio track (H.264 + AAC, what the results are written with).

ids: ffmpeg.bundled, ffmpeg.path
"""
import os
import subprocess
import tempfile

from fomm_doctor.preflight import tr
from fomm_doctor.report import CheckResult
from fomm_doctor.checks.common import pip_cmd
from fomm_core.tools import find_tool, resolve_tool

ENCODE_TIMEOUT = 20.0


def ffmpeg_version(exe: str, timeout: float = 10.0):
    """'ffmpeg version 7.0.2-static https://...' -> '7.0.2-static'; None when it does not run."""
    out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=timeout,
                         errors="replace")
    first = (out.stdout or "").splitlines()[:1]
    if out.returncode != 0 or not first:
        return None
    words = first[0].split()
    return words[2] if len(words) > 2 and words[1] == "version" else first[0]


def encode_test_clip(exe: str, timeout: float = ENCODE_TIMEOUT) -> dict:
    """Encode 1 s of test pattern + sine tone to mp4, then read it back: {"ok", "bytes", "has_audio", "error"}."""
    with tempfile.TemporaryDirectory(prefix="fomm-doctor-") as tmp:
        out_path = os.path.join(tmp, "probe.mp4")
        cmd = [exe, "-nostdin", "-y", "-v", "error",
               "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10:duration=1",
               "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050:duration=1",
               "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
               out_path]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, errors="replace")
        except subprocess.TimeoutExpired:
            return {"ok": False, "bytes": 0, "has_audio": False, "error": f"encode did not finish in {timeout:g} s"}
        size = os.path.getsize(out_path) if os.path.isfile(out_path) else 0
        if run.returncode != 0 or size == 0:
            tail = (run.stderr or "").strip().splitlines()[-1:] or [f"exit code {run.returncode}"]
            return {"ok": False, "bytes": size, "has_audio": False, "error": tail[0]}
        # Read it back: ffmpeg lists the streams it finds on stderr.
        info = subprocess.run([exe, "-nostdin", "-hide_banner", "-i", out_path], capture_output=True, text=True,
                              timeout=timeout, errors="replace")
        has_video = "Video: h264" in info.stderr
        has_audio = "Audio: aac" in info.stderr
        ok = has_video and has_audio
        return {"ok": ok, "bytes": size, "has_audio": has_audio,
                "error": None if ok else "the encoded file lacks its video or audio stream"}


def _probe_exe(exe: str) -> dict:
    try:
        version = ffmpeg_version(exe)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"path": exe, "version": None, "encode": None, "error": str(exc)}
    if version is None:
        return {"path": exe, "version": None, "encode": None, "error": "`ffmpeg -version` failed"}
    try:
        encode = encode_test_clip(exe)
    except (OSError, subprocess.SubprocessError) as exc:
        encode = {"ok": False, "error": str(exc)}
    return {"path": exe, "version": version, "encode": encode, "error": None}


def probe_bundled() -> dict:
    try:
        import imageio_ffmpeg
    except ImportError:
        return {"installed": False}
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:  # the package is there but its binary is missing for this platform
        return {"installed": True, "path": None, "error": str(exc)}
    # a bare name (IMAGEIO_FFMPEG_EXE=ffmpeg, or its fallback to PATH) would run a copy in the current folder
    # on Windows: run the absolute path found on PATH instead
    found = resolve_tool(exe)
    if found is None:
        return {"installed": True, "path": None, "error": f"'{exe}' is not on PATH"}
    return dict(_probe_exe(found), installed=True, package_version=getattr(imageio_ffmpeg, "__version__", None))


def probe_path(which=find_tool) -> dict:
    """The ffmpeg on PATH (never the current folder: see fomm_core.tools), run by its absolute path."""
    exe = which("ffmpeg")
    return _probe_exe(exe) if exe else {"path": None}


def judge_bundled(facts: dict, platform_facts: dict, lang: str = "en") -> CheckResult:
    platform = platform_facts.get("platform", "linux")
    reinstall = pip_cmd(platform, "install --force-reinstall imageio-ffmpeg")
    reinstall_run = (("pip", "install", "--force-reinstall", "imageio-ffmpeg"),)
    if not facts.get("installed"):
        return CheckResult("ffmpeg.bundled", "fail", tr(lang, "imageio-ffmpeg is not installed.",
                                                        "未安装 imageio-ffmpeg。"), {},
                           pip_cmd(platform, "install imageio-ffmpeg"), (("pip", "install", "imageio-ffmpeg"),))
    encode = facts.get("encode") or {}
    details = {"path": facts.get("path"), "version": facts.get("version"), "encode": encode or None,
               "package_version": facts.get("package_version")}
    if not facts.get("path") or not facts.get("version"):
        return CheckResult("ffmpeg.bundled", "fail", tr(
            lang, f"The bundled ffmpeg does not run: {facts.get('error')}",
            f"自带的 ffmpeg 无法运行：{facts.get('error')}"), details, reinstall, reinstall_run)
    if not encode.get("ok"):
        return CheckResult("ffmpeg.bundled", "fail", tr(
            lang, f"Bundled ffmpeg {facts['version']} failed a 1-second H.264+AAC encode: {encode.get('error')}",
            f"自带 ffmpeg {facts['version']} 无法完成 1 秒 H.264+AAC 编码：{encode.get('error')}"), details, reinstall,
            reinstall_run)
    return CheckResult("ffmpeg.bundled", "ok", tr(
        lang, f"Bundled ffmpeg {facts['version']} encodes video with audio.",
        f"自带 ffmpeg {facts['version']} 可以编码带声音的视频。"), details)


def judge_path(facts: dict, bundled: dict, lang: str = "en") -> CheckResult:
    encode = facts.get("encode") or {}
    details = {"path": facts.get("path"), "version": facts.get("version"), "encode": encode or None}
    bundled_ok = bool((bundled.get("encode") or {}).get("ok"))
    if not facts.get("path"):
        status = "ok" if bundled_ok else "warn"
        return CheckResult("ffmpeg.path", status, tr(
            lang, "No ffmpeg on PATH (not needed: the bundled one is used).",
            "PATH 中没有 ffmpeg（不需要：使用自带的）。"), details)
    if not facts.get("version") or not encode.get("ok"):
        why = facts.get("error") or encode.get("error")
        return CheckResult("ffmpeg.path", "warn", tr(
            lang, f"ffmpeg on PATH ({facts['path']}) does not work: {why}. fomm-doctor uses the bundled one.",
            f"PATH 中的 ffmpeg（{facts['path']}）不可用：{why}。fomm-doctor 使用自带的。"), details)
    return CheckResult("ffmpeg.path", "ok", tr(lang, f"ffmpeg {facts['version']} on PATH encodes video with audio.",
                                               f"PATH 中的 ffmpeg {facts['version']} 可以编码带声音的视频。"), details)
