"""What drives a live session: a camera (or a stream) through OpenCV, or a video file through the one ffmpeg
reader (`fomm_core.media.video.iter_frames`, rotation applied, as `animate` and `crop` read it), always as its
latest frame.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fomm_core.errors import FommError
from fomm_core.live.stats import LiveStats


# what OpenCV is given as a stream: network sources only (a `file://` or other local scheme would let ffmpeg
# follow a playlist on this machine; a local file goes through the reader every video file goes through)
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "rtp", "srt", "tcp")


def parse_camera(text) -> int | str:
    """'0' -> camera index 0; anything else is a file path (which must exist) or a network stream URL."""
    text = str(text).strip()
    source = int(text) if text.isdigit() else text
    check_source(source)
    return source


def _is_url(source) -> bool:
    return isinstance(source, str) and "://" in source


def check_source(source) -> None:
    """A FommError when `source` names a video file that is not there or not one this reads (through the one
    opener), or a URL that is not a network stream (a camera or a stream is tried when opened)."""
    if _is_url(source):
        scheme = source.split("://", 1)[0].lower()
        if scheme not in STREAM_SCHEMES:
            raise FommError(f"{source} is not a network stream URL ({', '.join(STREAM_SCHEMES)}); give a local video "
                            "by its path instead.", setting=("camera", "VIDEO_FILE"))
        return
    if isinstance(source, int):
        return
    if not Path(source).is_file():
        raise FommError(f"{source} is neither a camera index nor an existing video file; give the first "
                        "camera's index, or a video path or stream URL.", setting=("camera", "0"))
    from fomm_core.media.opener import probe_video
    probe_video(source)   # a playlist or a file that is no video is said now, not after the model has loaded


@dataclass
class Frame:
    seq: int              # 1, 2, 3... in capture order; a gap means dropped frames
    image: np.ndarray     # HxWx3 RGB
    captured_at: float    # time.perf_counter() when the read returned


class _CameraReader:
    """A camera or a stream, opened by OpenCV: its BGR frames turned to RGB, the order of everything after it."""

    def __init__(self, cap):
        import cv2
        self._cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 1 <= fps <= 240 else 25.0
        self.size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def read(self):
        import cv2
        ok, image = self._cap.read()
        return (True, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)) if ok and image is not None else (False, None)

    def release(self) -> None:
        self._cap.release()


class _FileReader:
    """A video file read like a camera, by the reader every video file goes through. Its first frame is decoded
    when it opens, so a file without one fails before the session starts."""

    def __init__(self, path):
        from fomm_core.media.video import iter_frames, probe_video
        info = probe_video(path)
        self.fps = info.fps if 1 <= info.fps <= 240 else 25.0
        self.size = (info.width, info.height)   # as displayed: rotation applied
        self._frames = iter_frames(path, info=info)
        self._first = next(self._frames)

    def read(self):
        if self._first is not None:
            first, self._first = self._first, None
            return True, first
        try:
            return True, next(self._frames)
        except StopIteration:
            return False, None

    def release(self) -> None:
        self._frames.close()


class LatestFrameCapture:
    """Reads a camera/file/stream in a thread, keeping only the newest frame.

    A video file is paced at its own frame rate, as a camera would deliver it (so frames are dropped the same
    way), and its end is a clean stop. A camera that stops delivering (unplugged, taken by another program) is
    noticed by `latest()` timing out: the reader thread may be stuck inside the driver, so nobody waits on it.
    """

    def __init__(self, source, *, open_timeout: float = 8.0, max_read_failures: int = 25, stats: LiveStats):
        self.source = source
        self.is_file = not isinstance(source, int) and not _is_url(source)
        self.open_timeout = open_timeout
        self.max_read_failures = max_read_failures
        self.stats = stats
        self.fps = 25.0
        self.size = (0, 0)
        self._cap = None                  # the reader: read() -> (ok, RGB frame), release()
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._taken = 0
        self._ended: str | None = None    # why the reader stopped ("end of file", a failure sentence)
        self._failed = False              # ... and whether that is an error (a camera lost) or a clean end
        self._stop = threading.Event()
        self._thread = None

    def describe(self) -> str:
        return f"camera {self.source}" if isinstance(self.source, int) else str(self.source)

    def open(self) -> None:
        """Open the source (a camera is given up on after `open_timeout` s) and start the reader thread."""
        check_source(self.source)
        self._cap = _FileReader(self.source) if self.is_file else self._open_camera()
        self.fps, self.size = self._cap.fps, self._cap.size
        self._thread = threading.Thread(target=self._read_loop, name="live-capture", daemon=True)
        self._thread.start()

    def _open_camera(self) -> _CameraReader:
        """The camera or stream, once it delivered a first frame.

        Opening a camera can block for a long time on some drivers, so it runs in a thread that is given up on.
        """
        import cv2
        result = {}

        def _open():
            cap = cv2.VideoCapture(self.source)
            result["cap"] = cap
            result["ok"] = cap.isOpened() and cap.read()[0]

        opener = threading.Thread(target=_open, daemon=True)
        opener.start()
        opener.join(self.open_timeout)
        if not opener.is_alive() and result.get("ok"):
            return _CameraReader(result["cap"])
        if result.get("cap") is not None:
            result["cap"].release()
        raise self._open_failure(answered=not opener.is_alive())

    def _open_failure(self, answered: bool) -> FommError:
        what = self.describe()
        if isinstance(self.source, int):
            reason = ("could not be opened: there is no such camera, or another program is using it" if answered
                      else "did not answer in time")
            return FommError(f"{what} {reason}; close other video programs, or give another camera index or a "
                             "video file.", setting=("camera", "VIDEO_FILE"))
        return FommError(f"{what} could not be read as a stream; check the URL.")

    def _read_loop(self) -> None:
        seq, failures = 0, 0
        next_due = time.perf_counter()
        while not self._stop.is_set():
            try:
                ok, image = self._cap.read()
            except FommError as err:   # a file that cannot be decoded further (damaged, or a stalled drive)
                self._finish(str(err).rstrip("."), failed=True)
                return
            now = time.perf_counter()
            if not ok:
                if self.is_file:
                    self._finish("end of the video file")
                    return
                failures += 1
                self.stats.read_failures += 1
                if failures >= self.max_read_failures:
                    self._finish(f"{self.describe()} stopped delivering frames ({failures} failed reads in a row: "
                                 "unplugged, or taken by another program); check it and start again", failed=True)
                    return
                time.sleep(0.02)
                continue
            failures = 0
            seq += 1
            self._publish(Frame(seq, image, now))
            if self.is_file:  # deliver at the file's rate, as a camera would
                next_due = self._pace(next_due)

    def _publish(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None and self._frame.seq > self._taken:
                self.stats.dropped += 1       # the previous frame was never taken: replaced, not queued
            self._frame = frame
            self.stats.captured += 1
            self._cond.notify_all()

    def _pace(self, next_due: float) -> float:
        """Wait until the next frame is due at the file's rate; the new due time."""
        next_due += 1.0 / self.fps
        delay = next_due - time.perf_counter()
        if delay > 0:
            self._stop.wait(delay)
            return next_due
        return time.perf_counter()

    def _finish(self, reason: str, failed: bool = False) -> None:
        with self._cond:
            self._ended = reason
            self._failed = failed
            self._cond.notify_all()

    def latest(self, after_seq: int, timeout: float) -> Frame | None:
        """The newest frame newer than `after_seq`; None once the source has ended cleanly (see `ended`).

        Raises FommError when the camera was lost, or no frame comes within `timeout` seconds.
        """
        deadline = time.perf_counter() + timeout
        with self._cond:
            while True:
                if self._frame is not None and self._frame.seq > after_seq:
                    self._taken = self._frame.seq
                    return self._frame
                if self._failed:
                    raise FommError(self._ended + ".")
                if self._ended is not None or self._stop.is_set():
                    return None
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise FommError(f"no frame from {self.describe()} for {timeout:g} s (unplugged, or taken by "
                                    "another program); check the camera and start again.")
                self._cond.wait(left)

    @property
    def ended(self) -> str | None:
        return self._ended

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._cap is not None and (self._thread is None or not self._thread.is_alive()):
            self._cap.release()
