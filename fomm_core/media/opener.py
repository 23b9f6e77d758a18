"""The one way a user's video file reaches ffmpeg, and the probe that reads its header.

    args = input_args("in.mp4")            # ffmpeg input options + `-i file:/abs/in.mp4`, for any command
    info = probe_video("in.mp4")           # VideoInfo from the header; refuses what input_args refuses

ffmpeg follows what a file names unless told not to: an HLS playlist or a concat script reads other local files
(a private `.ts` came out animated, with its sound), and `data:`, `subfile,`, `http:` and other protocols open
what they name. So every ffmpeg that reads a user's file gets `input_args`: only the `file` protocol, only the
demuxers of the containers listed in READ_FORMATS (no playlist, manifest or script format among them), and a
decoder limit of MAX_PIXELS per frame (the images' limit: one concept, one number) so a frame larger than the
header said is not decoded either. Files are named `file:` plus an absolute path, so `12:30.mp4` is a file.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from fomm_core.errors import FommError
from fomm_core.media.images import MAX_PIXELS, check_pixels
from fomm_core.tools import resolve_tool

PROBE_TIMEOUT_SECONDS = 60.0    # `ffmpeg -i` reads only the header: a minute means a stalled drive or pipe

# ffmpeg's demuxer names for the containers of media.video.VIDEO_EXTENSIONS; a name matches any of the aliases
# ffmpeg gives a demuxer ("mov" is "mov,mp4,m4a,3gp,3g2,mj2", "matroska" is "matroska,webm").
READ_FORMATS = ("mov", "matroska", "avi", "flv", "asf", "mpeg", "mpegts", "gif")
FORMAT_NAMES = "MP4/MOV/3GP, MKV/WebM, AVI, FLV, WMV, MPEG-PS/TS or GIF"

# what ffmpeg prints when a whitelist stops it (the format's or a protocol's)
_REFUSED = re.compile(r"(Format|Protocol) .{0,40}not on whitelist")

# first bytes of the files people give that name other files, for a sentence that says what the file is
_KINDS = ((b"#EXTM3U", "an HLS playlist"), (b"ffconcat", "a concat script"), (b"<?xml", "an XML manifest"),
          (b"<MPD", "a DASH manifest"), (b"[playlist]", "a playlist"), (b"#EXTINF", "a playlist"))


def ffmpeg_exe() -> str:
    """The absolute path of imageio-ffmpeg's ffmpeg (a bare name it returns is looked up on PATH only)."""
    try:
        import imageio_ffmpeg
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as err:  # missing package, or no binary for this platform
        raise FommError(f"no ffmpeg available ({err}); install imageio-ffmpeg (pip install imageio-ffmpeg).")
    found = resolve_tool(exe)
    if found is None:
        raise FommError(f"ffmpeg '{exe}' is not on PATH; reinstall imageio-ffmpeg (pip install imageio-ffmpeg).")
    return found


def ffmpeg_file(path) -> str:
    """How a file is named to ffmpeg: `file:` + absolute path (a bare `12:30.mp4` reads as protocol '12')."""
    return "file:" + os.path.abspath(os.fspath(path))


def input_args(path) -> list:
    """The ffmpeg arguments that open `path` as a local video file of READ_FORMATS and nothing else."""
    return ["-protocol_whitelist", "file", "-format_whitelist", ",".join(READ_FORMATS),
            "-max_pixels", str(MAX_PIXELS), "-i", ffmpeg_file(path)]


def was_refused(stderr: str) -> bool:
    """Whether ffmpeg stopped because a file is of a format (or names a protocol) input_args does not allow."""
    return _REFUSED.search(stderr) is not None


def refusal(path) -> FommError:
    """The sentence for a file input_args does not open: what it is when its first bytes say so."""
    try:
        with open(path, "rb") as f:
            head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        head = b""
    kind = next((name for magic, name in _KINDS if head.startswith(magic)), "of a format this does not read")
    return FommError(f"{path} is {kind}, not a video file this reads ({FORMAT_NAMES}); give the video file itself.")


@dataclass(frozen=True)
class VideoInfo:
    width: int            # as displayed: rotation metadata already applied
    height: int
    fps: float
    frame_count: int      # estimate from duration x fps (exact only after decoding)
    duration: float       # seconds; 0.0 when unknown
    has_audio: bool
    rotation: int         # 0, 90, 180 or 270 (clockwise, as stored in the file)
    rate: str = ""        # ffmpeg's frame rate as text (e.g. '30000/1001'): exact, for the writer


def rate_text(fps: float) -> str:
    """Exact rate for ffmpeg: 29.97 -> '30000/1001', 25.0 -> '25'."""
    for base in (24, 30, 48, 60, 120):  # ffmpeg prints NTSC rates rounded ('29.97'): restore the exact ones
        if abs(fps - base * 1000 / 1001) < 0.006:
            return f"{base * 1000}/1001"
    frac = Fraction(fps).limit_denominator(1000)
    return f"{frac.numerator}/{frac.denominator}" if frac.denominator != 1 else str(frac.numerator)


# WxH in a stream line: no leading zero, so a codec tag such as `0x0021` is not a size; 1x1 and up
_SIZE = re.compile(r"(?<![0-9a-fx])([1-9]\d{0,4})x([1-9]\d{0,4})(?![0-9a-fx])")


def parse_probe(stderr: str, path="video") -> VideoInfo:
    """VideoInfo from the text `ffmpeg -i FILE` prints (a pure function, tested on real output)."""
    video = re.search(r"Stream #\S+.*?: Video: (.*)", stderr)
    if not video:
        raise FommError(f"{path} has no video stream ffmpeg can read (not a video, or corrupt).")
    line = video.group(1)
    size = _SIZE.search(line)
    if not size:
        raise FommError(f"{path}: ffmpeg reports no frame size for its video stream (corrupt file?).")
    w, h = int(size.group(1)), int(size.group(2))
    rate = re.search(r"([\d.]+)(k?) fps", line) or re.search(r"([\d.]+)(k?) tbr", line)
    fps = float(rate.group(1)) * (1000 if rate.group(2) else 1) if rate else 0.0
    if not fps > 0:
        raise FommError(f"{path}: ffmpeg reports no frame rate for its video stream (corrupt file?).")
    rotation = 0
    m = re.search(r"rotation of (-?[\d.]+) degrees", stderr) or re.search(r"\brotate\s*:\s*(-?\d+)", stderr)
    if m:
        # 'displaymatrix: rotation of -90.00 degrees' means 90 clockwise; the old 'rotate' tag is clockwise
        deg = -float(m.group(1)) if "rotation of" in m.group(0) else float(m.group(1))
        rotation = int(round(deg)) % 360
    if rotation in (90, 270):
        w, h = h, w
    d = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", stderr)
    duration = int(d.group(1)) * 3600 + int(d.group(2)) * 60 + float(d.group(3)) if d else 0.0
    has_audio = re.search(r"Stream #\S+.*?: Audio:", stderr) is not None
    return VideoInfo(w, h, fps, int(round(duration * fps)), duration, has_audio, rotation, rate_text(fps))


def probe_video(path, timeout: float | None = None) -> VideoInfo:
    """Size (as displayed), fps, estimated frame count, duration, audio and rotation of a video file.

    Refuses, in one sentence, a file input_args does not open and a frame size over MAX_PIXELS, from the
    header, before any frame is decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise FommError(f"video {path} does not exist." if not path.exists() else f"{path} is not a file.")
    limit = PROBE_TIMEOUT_SECONDS if timeout is None else timeout
    try:
        # run() reads stdout and stderr together, so a talkative ffmpeg cannot block on a full pipe
        proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *input_args(path)],
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=limit)
    except subprocess.TimeoutExpired:
        raise FommError(f"ffmpeg could not read the header of {path} within {limit:g} s "
                        "(a damaged file, or a stalled drive or network share).") from None
    text = proc.stderr.decode("utf-8", "replace")
    if was_refused(text):
        raise refusal(path)
    if "Invalid data found" in text or "could not find codec parameters" in text.lower():
        raise FommError(f"{path} is not a video ffmpeg can read (corrupt or not a video file).")
    info = parse_probe(text, path)
    check_pixels(info.width, info.height, path)
    return info
