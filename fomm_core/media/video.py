"""Streaming video I/O on the ffmpeg that imageio-ffmpeg bundles (no ffmpeg on PATH needed).

    info = probe_video("in.mp4")                      # VideoInfo: width, height (as displayed), fps, audio...
    for frame in iter_frames("in.mp4"):               # uint8 RGB HxWx3, one at a time (rotation applied)
        ...
    with VideoWriter("out.mp4", info.fps, (w, h), audio_from="in.mp4") as out:
        out.write(frame)                              # uint8 RGB HxWx3; written to a temp file, renamed on close
    check_output_path("out.mp4", inputs=["in.mp4"])  # refuse a bad output before any work (one sentence)

Nothing here holds more than one frame: memory does not grow with the video's length.
Problems are `FommError` sentences.

Every ffmpeg we start has its stderr drained by a thread (a damaged file makes the decoder print an error line
per packet; once the pipe fills, ffmpeg blocks and so would we), the probe has a wall-clock limit and the
reader gives up when no frame byte arrives for READ_STALL_SECONDS, the writer when ffmpeg has not finished
CLOSE_TIMEOUT_SECONDS after the last frame. Every file written appears only when complete: it is written to a
temp file beside it (`temp_path_for`), moved into place in one rename and removed on any failure.
Every file read is opened by `opener.input_args` (only local files of the containers we read: no playlist,
protocol or script; the pixel limit of images), the probe included, so what is probed is what is read.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from fomm_core.errors import FommError
from fomm_core.private import create_new
from fomm_core.media.opener import (PROBE_TIMEOUT_SECONDS, VideoInfo, ffmpeg_exe, ffmpeg_file,  # noqa: F401
                                    input_args, parse_probe, probe_video, rate_text, refusal, was_refused)

READ_STALL_SECONDS = 120.0      # the reader gives up after this long without a single frame byte
CLOSE_TIMEOUT_SECONDS = 300.0   # for the writer's ffmpeg to finish (encoder flush, index moved to the front)
STDERR_KEEP_BYTES = 64 * 1024   # the tail of ffmpeg's messages kept for the error sentence
WRITABLE_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi")  # containers that take H.264 + AAC
# what a folder of driving videos holds (ffmpeg reads more; these are the names people give them)
VIDEO_EXTENSIONS = WRITABLE_SUFFIXES + (".webm", ".flv", ".wmv", ".mpg", ".mpeg", ".ts", ".3gp", ".gif")


class WriteError(FommError):
    """The output could not be written (ffmpeg stopped, a full disk, a size limit): a fault of the place written
    to, not of the inputs, so a batch tries the job again on its next run."""


class _StderrTail:
    """Reads a process's stderr to its end in a thread, keeping the last STDERR_KEEP_BYTES."""

    def __init__(self, stream, keep: int = STDERR_KEEP_BYTES):
        self._stream, self._keep = stream, keep
        self._buf = bytearray()
        self._thread = threading.Thread(target=self._drain, name="ffmpeg-stderr", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            while True:
                chunk = self._stream.read1(65536)
                if not chunk:
                    break
                self._buf += chunk
                if len(self._buf) > 2 * self._keep:
                    del self._buf[:-self._keep]
        except (OSError, ValueError):  # the stream was closed under us: the process is gone
            pass
        finally:
            try:
                self._stream.close()
            except OSError:
                pass

    def text(self, wait: float = 5.0) -> str:
        """What ffmpeg printed (its end), once it closed stderr or after `wait` seconds."""
        self._thread.join(wait)
        return bytes(self._buf[-self._keep:]).decode("utf-8", "replace").strip()

    def last_line(self, wait: float = 5.0) -> str:
        lines = self.text(wait).splitlines()
        return lines[-1].strip() if lines else ""


class _StallWatch:
    """Kills a process when one read from it has waited `limit` seconds (time between reads does not count)."""

    def __init__(self, proc, limit: float):
        self._proc, self.limit = proc, float(limit)
        self.fired = False
        self._since = None
        self._done = threading.Event()
        threading.Thread(target=self._watch, name="ffmpeg-watchdog", daemon=True).start()

    def reading(self) -> None:
        self._since = time.monotonic()

    def idle(self) -> None:
        self._since = None

    def stop(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self.limit / 4)):
            since = self._since
            if since is not None and time.monotonic() - since > self.limit:
                self.fired = True
                _kill(self._proc)
                return


def _kill(proc) -> None:
    try:
        proc.kill()
    except OSError:  # already gone
        pass


def _reader_cmd(path, size, w: int, h: int) -> list:
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", *input_args(path), "-map", "0:v:0",
           "-f", "rawvideo", "-pix_fmt", "rgb24"]
    if size:
        cmd += ["-vf", f"scale={w}:{h}:flags=area"]
    return cmd + ["-"]


def iter_frames(path, size=None, info: VideoInfo | None = None, stall_seconds: float | None = None):
    """Yield the frames of a video as uint8 RGB HxWx3 arrays, streamed (ffmpeg applies rotation metadata).

    size: (w, h) to have ffmpeg scale every frame, or None for the displayed size.
    stall_seconds: give up when ffmpeg sends no frame byte for this long (default READ_STALL_SECONDS); the time
    the caller spends between frames does not count.
    Raises FommError when the file holds no decodable frame, or ffmpeg stalls.
    """
    info = info or probe_video(path)
    w, h = size or (info.width, info.height)
    proc = subprocess.Popen(_reader_cmd(path, size, w, h), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    errors = _StderrTail(proc.stderr)
    watch = _StallWatch(proc, READ_STALL_SECONDS if stall_seconds is None else stall_seconds)
    count = 0
    try:
        for buf in _raw_frames(proc.stdout, w * h * 3, watch):
            count += 1
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    finally:
        watch.stop()
        _end_reader(proc)
    if watch.fired:
        raise FommError(f"ffmpeg sent no frame of {path} for {watch.limit:g} s after frame {count}, so it was "
                        "stopped (a damaged file, or a stalled drive or network share).")
    if count == 0:
        if was_refused(errors.text()):
            raise refusal(path)
        reason = errors.last_line()
        reason = f" ({reason})" if reason else ""
        raise FommError(f"{path} has no video frame that can be decoded (empty or corrupt){reason}.")


def _raw_frames(stream, frame_bytes: int, watch: _StallWatch):
    """Whole frames from ffmpeg's stdout; the watch runs only while we wait on ffmpeg."""
    while True:
        watch.reading()
        buf = _read_exactly(stream, frame_bytes, watch)
        watch.idle()
        if len(buf) < frame_bytes:
            return
        yield buf


def _end_reader(proc) -> None:
    if proc.poll() is None:   # stopped early (or interrupted): end ffmpeg, don't wait for the whole file
        _kill(proc)
    proc.stdout.close()
    proc.wait()


def _read_exactly(stream, n: int, watch: _StallWatch | None = None) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read1(n - got) if hasattr(stream, "read1") else stream.read(n - got)
        if not chunk:
            break
        if watch is not None:
            watch.reading()  # bytes arrived: the stall clock starts again
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def check_output_path(path, inputs=()) -> Path:
    """Refuse, before any work, an output the writer cannot produce: -> the path, or a FommError sentence.

    The folder must exist and be writable, the name must end in a container for H.264 + AAC, and the file
    must not be one of `inputs` (ffmpeg would read what it overwrites).
    """
    path = Path(path)
    if path.is_dir():
        raise FommError(f"{path} is a folder; give a file name such as out.mp4.")
    folder = path.parent
    if not folder.is_dir():
        raise FommError(f"the folder {folder} does not exist; create it or choose another output path.")
    if not os.access(folder, os.W_OK):
        raise FommError(f"the folder {folder} is not writable; choose another output path.")
    if path.suffix.lower() not in WRITABLE_SUFFIXES:
        raise FommError(f"{path.name} does not end in a video extension this writes "
                        f"({', '.join(WRITABLE_SUFFIXES)}); name the output e.g. out.mp4.")
    for other in inputs:
        if other is not None and _same_file(path, Path(other)):
            raise FommError(f"the output {path} is the input {other}; choose another output name.")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def temp_path_for(path: Path, pid=None) -> Path:
    """A hidden file beside `path` with the same extension (ffmpeg picks the container by extension), named after
    the process writing it (`pid`, default this one; "*" gives a glob pattern for any process).

    Beside it, so that the final rename is atomic (same file system); every video this package writes goes there.
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.partial-{os.getpid() if pid is None else pid}{path.suffix or '.mp4'}")


def writer_temp_paths(path: Path, pid=None) -> tuple[Path, Path]:
    """Every temp file a VideoWriter for `path` in process `pid` may leave if killed: the file it writes, and
    the video-only file the audio is added to at close."""
    path = Path(path)
    return temp_path_for(path, pid), temp_path_for(path.with_name(path.stem + ".video.mp4"), pid)


def _claim(path: Path) -> None:
    """Make `path` a new empty file of ours before ffmpeg writes it: the temp names are predictable (a killed run's
    leftovers are found by them), and ffmpeg's -y would write through a link planted at one, so whatever is there
    is removed first, never opened."""
    for _ in range(3):
        try:
            os.close(create_new(path, 0o666))   # the umask decides, as for any file we write
            return
        except FileExistsError:
            path.unlink(missing_ok=True)
    raise WriteError(f"{path} keeps coming back; another program writes in {path.parent}.")


def _audio_args(audio_from, tone_hz) -> list:
    """The ffmpeg input arguments of the writer's audio track: another file's, a sine tone, or none."""
    if audio_from is not None:
        return input_args(audio_from)
    if tone_hz is not None:
        return ["-f", "lavfi", "-i", f"sine=frequency={tone_hz:g}:sample_rate=44100"]
    return []


def _mux_args(video: Path, audio_input: list, seconds: Fraction, out: Path) -> list:
    """ffmpeg arguments that copy `video` and add the audio cut to `seconds` (padded with silence if it ends
    first). The length is given, not left to -shortest: with the frames arriving through a pipe, -shortest cut
    the audio at a point that depended on timing, so one job gave files of different lengths run to run."""
    return ["-y", "-v", "error", *input_args(video), *audio_input, "-map", "0:v:0", "-map", "1:a:0?",
            "-c:v", "copy", "-af", "apad", "-c:a", "aac", "-t", f"{float(seconds):.6f}",
            "-movflags", "+faststart", ffmpeg_file(out)]


class VideoWriter:
    """Stream uint8 RGB frames into an H.264 (yuv420p) file, optionally with the audio of another file.

    Writes a temp file in the same folder and renames it on a clean close; on an exception (Ctrl-C included)
    inside the `with` block, or `abort()`, the temp file is removed and `path` is left untouched.
    Odd sizes are padded by one pixel (yuv420p needs even dimensions). close() waits at most `close_timeout`
    seconds for ffmpeg to finish. The audio track: `audio_from`'s, else a sine tone of `tone_hz`, else none.
    """

    def __init__(self, path, fps, size, audio_from=None, crf: int = 18,
                 close_timeout: float = CLOSE_TIMEOUT_SECONDS, tone_hz: float | None = None):
        self.path = Path(path)
        self.close_timeout = float(close_timeout)
        self.size = (int(size[0]), int(size[1]))
        folder = self.path.parent if str(self.path.parent) else Path(".")
        if not folder.is_dir():
            raise FommError(f"the folder {folder} does not exist; choose another output path.")
        if not os.access(folder, os.W_OK):
            raise FommError(f"the folder {folder} is not writable; choose another output path.")
        if self.path.is_dir():
            raise FommError(f"{self.path} is a folder; give a file name such as out.mp4.")
        self.tmp, video_only = writer_temp_paths(self.path)
        self.rate = fps if isinstance(fps, str) else rate_text(float(fps))
        self._audio_from = audio_from
        self._audio = _audio_args(audio_from, tone_hz)
        # with audio, the frames go to a video-only file first and the audio is added at close (_add_audio)
        self._video = video_only if self._audio else self.tmp
        for temp in {self.tmp, self._video}:
            _claim(temp)
        w, h = self.size
        cmd = [ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-framerate", self.rate, "-i", "-"]
        cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "medium", "-crf", str(crf),
                "-pix_fmt", "yuv420p", "-movflags", "+faststart", ffmpeg_file(self._video)]
        self.frames = 0
        self._closed = False
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._errors = _StderrTail(self._proc.stderr)

    def write(self, frame) -> None:
        """One uint8 RGB HxWx3 frame of the writer's size."""
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if frame.shape != (self.size[1], self.size[0], 3):
            raise FommError(f"frame of shape {frame.shape} given to a {self.size[0]}x{self.size[1]} video writer.")
        try:
            self._proc.stdin.write(frame.tobytes())
        except (BrokenPipeError, OSError):
            self.abort()
            raise WriteError(f"ffmpeg stopped while writing {self.path}: "
                            f"{self._errors.last_line() or 'no reason given'}.") from None
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and move it into place; returns the final path.

        An ffmpeg that has not finished within `close_timeout` seconds is killed, the temp file removed and a
        FommError raised; so is any failure, and an interruption leaves no temp file either.
        """
        if self._closed:
            return self.path
        self._closed = True
        try:
            rc, stuck = self._finish()
        except BaseException:  # Ctrl-C while ffmpeg finishes
            self.abort()
            raise
        if stuck:
            self._remove_tmp()
            raise WriteError(f"ffmpeg did not finish writing {self.path} within {self.close_timeout:g} s, so it was "
                            "stopped (a stalled drive or network share, or a hung encoder).")
        if rc != 0 or self.frames == 0 or not self._video.exists():
            self._remove_tmp()
            why = "no frame was written" if self.frames == 0 else (self._errors.last_line() or f"exit code {rc}")
            raise WriteError(f"could not write {self.path}: {why}.")
        if self._audio:
            self._add_audio()
        os.replace(self.tmp, self.path)
        return self.path

    def _add_audio(self) -> None:
        """Copy the video-only file into the temp file with the audio track, exactly as long as the frames."""
        seconds = self.frames / Fraction(self.rate)
        cmd = [ffmpeg_exe(), *_mux_args(self._video, self._audio, seconds, self.tmp)]
        try:
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  timeout=self.close_timeout)
        except subprocess.TimeoutExpired:
            self._remove_tmp()
            raise WriteError(f"ffmpeg did not finish adding the audio to {self.path} within {self.close_timeout:g} s, "
                            "so it was stopped (a stalled drive or network share).") from None
        except BaseException:  # Ctrl-C while the audio is added
            self._remove_tmp()
            raise
        self._video.unlink(missing_ok=True)
        if done.returncode != 0 or not self.tmp.exists():
            self._remove_tmp()
            text = done.stderr.decode("utf-8", "replace").strip()
            if self._audio_from is not None and was_refused(text):
                raise refusal(self._audio_from)
            lines = text.splitlines()
            raise WriteError(f"could not add the audio to {self.path}: "
                            f"{lines[-1] if lines else f'exit code {done.returncode}'}.")

    def _finish(self) -> tuple[int, bool]:
        """End ffmpeg's input and wait for it to exit, killing it after close_timeout: (exit code, whether killed)."""
        watch = _StallWatch(self._proc, self.close_timeout)
        watch.reading()  # the clock runs until ffmpeg exits (closing stdin can block on a full pipe too)
        try:
            try:
                self._proc.stdin.close()
            except OSError:  # ffmpeg already quit: its exit code and message tell why
                pass
            rc = self._proc.wait()
        finally:
            watch.stop()
        return rc, watch.fired

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial file; `path` is not created."""
        self._closed = True
        _kill(self._proc)
        try:
            self._proc.stdin.close()
        except (OSError, ValueError):
            pass
        self._proc.wait()
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        self.tmp.unlink(missing_ok=True)
        self._video.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
