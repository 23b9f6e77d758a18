"""Streaming video I/O on the ffmpeg that imageio-ffmpeg bundles (no ffmpeg on PATH needed).

    info = probe_video("in.mp4")                      # VideoInfo: width, height (as displayed), fps, audio...
    for frame in iter_frames("in.mp4"):               # uint8 RGB HxWx3, one at a time (rotation applied)
        ...
    with VideoWriter("out.mp4", info.fps, (w, h), audio_from="in.mp4") as out:
        out.write(frame)                              # uint8 RGB HxWx3; written to a temp file, renamed on close

Nothing here holds more than one frame: memory does not grow with the video's length.
Problems are `FommError` sentences.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import FommError


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as err:  # missing package, or no binary for this platform
        raise FommError(f"no ffmpeg available ({err}); install imageio-ffmpeg (pip install imageio-ffmpeg).")


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


def _rate_text(fps: float) -> str:
    """Exact rate for ffmpeg: 29.97 -> '30000/1001', 25.0 -> '25'."""
    for base in (24, 30, 48, 60, 120):  # ffmpeg prints NTSC rates rounded ('29.97'): restore the exact ones
        if abs(fps - base * 1000 / 1001) < 0.006:
            return f"{base * 1000}/1001"
    frac = Fraction(fps).limit_denominator(1000)
    return f"{frac.numerator}/{frac.denominator}" if frac.denominator != 1 else str(frac.numerator)


def parse_probe(stderr: str, path="video") -> VideoInfo:
    """VideoInfo from the text `ffmpeg -i FILE` prints (a pure function, tested on real output)."""
    video = re.search(r"Stream #\S+.*?: Video: (.*)", stderr)
    if not video:
        raise FommError(f"{path} has no video stream ffmpeg can read (not a video, or corrupt).")
    line = video.group(1)
    size = re.search(r"(?<![0-9a-fx])(\d{2,5})x(\d{2,5})(?![0-9a-fx])", line)
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
    return VideoInfo(w, h, fps, int(round(duration * fps)), duration, has_audio, rotation, _rate_text(fps))


def probe_video(path) -> VideoInfo:
    """Size (as displayed), fps, estimated frame count, duration, audio and rotation of a video file."""
    path = Path(path)
    if not path.is_file():
        raise FommError(f"video {path} does not exist." if not path.exists() else f"{path} is not a file.")
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True,
                          stdin=subprocess.DEVNULL)
    text = proc.stderr.decode("utf-8", "replace")
    if "Invalid data found" in text or "could not find codec parameters" in text.lower():
        raise FommError(f"{path} is not a video ffmpeg can read (corrupt or not a video file).")
    return parse_probe(text, path)


def iter_frames(path, size=None, info: VideoInfo | None = None):
    """Yield the frames of a video as uint8 RGB HxWx3 arrays, streamed (ffmpeg applies rotation metadata).

    size: (w, h) to have ffmpeg scale every frame, or None for the displayed size.
    Raises FommError when the file holds no decodable frame.
    """
    info = info or probe_video(path)
    w, h = size or (info.width, info.height)
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0",
           "-f", "rawvideo", "-pix_fmt", "rgb24"]
    if size:
        cmd += ["-vf", f"scale={w}:{h}:flags=area"]
    cmd += ["-"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    frame_bytes = w * h * 3
    count = 0
    try:
        while True:
            buf = _read_exactly(proc.stdout, frame_bytes)
            if len(buf) < frame_bytes:
                break
            count += 1
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    finally:
        if proc.poll() is None:   # stopped early (or interrupted): end ffmpeg, don't wait for the whole file
            proc.kill()
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.stderr.close()
        proc.wait()
    if count == 0:
        reason = f" ({err.splitlines()[-1]})" if err else ""
        raise FommError(f"{path} has no video frame that can be decoded (empty or corrupt){reason}.")


def _read_exactly(stream, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def temp_path_for(path: Path) -> Path:
    """A hidden file beside `path` with the same extension (ffmpeg picks the container by extension)."""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix or '.mp4'}")


class VideoWriter:
    """Stream uint8 RGB frames into an H.264 (yuv420p) file, optionally with the audio of another file.

    Writes a temp file in the same folder and renames it on a clean close; on an exception (Ctrl-C included)
    inside the `with` block, or `abort()`, the temp file is removed and `path` is left untouched.
    Odd sizes are padded by one pixel (yuv420p needs even dimensions).
    """

    def __init__(self, path, fps, size, audio_from=None, crf: int = 18):
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        folder = self.path.parent if str(self.path.parent) else Path(".")
        if not folder.is_dir():
            raise FommError(f"the folder {folder} does not exist; choose another output path.")
        if not os.access(folder, os.W_OK):
            raise FommError(f"the folder {folder} is not writable; choose another output path.")
        if self.path.is_dir():
            raise FommError(f"{self.path} is a folder; give a file name such as out.mp4.")
        self.tmp = temp_path_for(self.path)
        rate = fps if isinstance(fps, str) else _rate_text(float(fps))
        w, h = self.size
        cmd = [ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-framerate", rate, "-i", "-"]
        if audio_from is not None:
            # apad + shortest: the audio is cut to the video, and padded with silence if it ends first
            # (plain -shortest would cut the video at the end of a short audio track)
            cmd += ["-i", str(audio_from), "-map", "0:v:0", "-map", "1:a:0?", "-af", "apad", "-c:a", "aac",
                    "-shortest"]
        cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "medium", "-crf", str(crf),
                "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(self.tmp)]
        self.frames = 0
        self._closed = False
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def write(self, frame) -> None:
        """One uint8 RGB HxWx3 frame of the writer's size."""
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if frame.shape != (self.size[1], self.size[0], 3):
            raise FommError(f"frame of shape {frame.shape} given to a {self.size[0]}x{self.size[1]} video writer.")
        try:
            self._proc.stdin.write(frame.tobytes())
        except (BrokenPipeError, OSError):
            err = self._proc.stderr.read().decode("utf-8", "replace").strip()
            self.abort()
            raise FommError(f"ffmpeg stopped while writing {self.path}: {err.splitlines()[-1] if err else 'no reason given'}.")
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and move it into place; returns the final path."""
        if self._closed:
            return self.path
        self._closed = True
        self._proc.stdin.close()
        err = self._proc.stderr.read().decode("utf-8", "replace").strip()
        self._proc.stderr.close()
        rc = self._proc.wait()
        if rc != 0 or self.frames == 0 or not self.tmp.exists():
            self._remove_tmp()
            why = "no frame was written" if self.frames == 0 else (err.splitlines()[-1] if err else f"exit code {rc}")
            raise FommError(f"could not write {self.path}: {why}.")
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial file; `path` is not created."""
        self._closed = True
        try:
            self._proc.kill()
        except OSError:
            pass
        for stream in (self._proc.stdin, self._proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        self._proc.wait()
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
