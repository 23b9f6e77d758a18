"""The live loop: a camera (or a video file standing in for one) drives a photo in real time.

Three parts that never wait on each other's backlog:
- a capture thread that keeps only the LATEST frame (older ones are dropped and counted, never queued), so a
  slow model never makes the picture lag further and further behind;
- an inference thread: face found and cropped (smoothed box), BGR->RGB, relative motion from a reference frame
  (the first one, or whenever the user presses r/space), result kept with the capture time of its frame;
- the caller's loop (`LiveSession.run`): shows source | camera | result with frames/s and capture->display
  latency, reads keys, records the results, feeds a virtual camera.

No terminal code here and no checkpoint lookup: give `LiveSession` an Animator already built (a notebook can);
problems are `FommError` sentences; statistics come back as `LiveStats`.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fomm_core.errors import FommError
from fomm_core.media.images import IMAGE_EXTENSIONS



# ---------------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class LiveStats:
    captured: int = 0            # frames the camera delivered
    processed: int = 0           # frames the model animated
    dropped: int = 0             # camera frames replaced by a newer one before the model took them
    read_failures: int = 0       # failed camera reads
    latencies: list = field(default_factory=list)   # seconds from capture to display/output, per result
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    stop_reason: str = ""

    @property
    def seconds(self) -> float:
        return (self.ended or time.perf_counter()) - self.started

    @property
    def fps(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_latency(self) -> float:
        return sum(self.latencies) / len(self.latencies) if self.latencies else 0.0

    @property
    def p95_latency(self) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    def as_dict(self) -> dict:
        return {"captured": self.captured, "processed": self.processed, "dropped": self.dropped,
                "read_failures": self.read_failures, "seconds": round(self.seconds, 3), "fps": round(self.fps, 2),
                "latency_mean_ms": round(1000 * self.mean_latency, 1),
                "latency_p95_ms": round(1000 * self.p95_latency, 1), "stop_reason": self.stop_reason}


# ---------------------------------------------------------------------------------------------------------------
# Capture: always the latest frame
# ---------------------------------------------------------------------------------------------------------------

def parse_camera(text) -> int | str:
    """'0' -> camera index 0; anything else is a file path or a stream URL."""
    text = str(text).strip()
    return int(text) if text.isdigit() else text


def _is_url(source) -> bool:
    return isinstance(source, str) and "://" in source


@dataclass
class Frame:
    seq: int              # 1, 2, 3... in capture order; a gap means dropped frames
    image: np.ndarray     # HxWx3 BGR, as OpenCV delivers
    captured_at: float    # time.perf_counter() when the read returned


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
        self._cap = None
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
        """Open the source (given up on after `open_timeout` s) and start the reader thread."""
        import cv2
        if self.is_file and not Path(self.source).is_file():
            raise FommError(f"{self.source} is neither a camera index nor an existing video file; "
                            "use --camera 0 for the first camera, or a video path or stream URL.")
        cap, answered = self._open_in_thread()
        if cap is None:
            raise self._open_failure(answered)
        self._cap = cap
        if self.is_file:  # rewind after the probe read
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 1 <= fps <= 240 else 25.0
        self.size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self._thread = threading.Thread(target=self._read_loop, name="live-capture", daemon=True)
        self._thread.start()

    def _open_in_thread(self):
        """(capture that delivered a first frame, or None; whether opening finished in time).

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
            return result["cap"], True
        if result.get("cap") is not None:
            result["cap"].release()
        return None, not opener.is_alive()

    def _open_failure(self, answered: bool) -> FommError:
        what = self.describe()
        if isinstance(self.source, int):
            reason = ("could not be opened: there is no such camera, or another program is using it" if answered
                      else "did not answer in time")
            return FommError(f"{what} {reason}; close other video programs, try another index, "
                             "or use --camera VIDEO_FILE.")
        return FommError(f"{what} could not be read as a video or stream; check the path or URL.")

    def _read_loop(self) -> None:
        seq, failures = 0, 0
        next_due = time.perf_counter()
        while not self._stop.is_set():
            ok, image = self._cap.read()
            now = time.perf_counter()
            if not ok or image is None:
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
            with self._cond:
                if self._frame is not None and self._frame.seq > self._taken:
                    self.stats.dropped += 1       # the previous frame was never taken: replaced, not queued
                self._frame = Frame(seq, image, now)
                self.stats.captured += 1
                self._cond.notify_all()
            if self.is_file:  # deliver at the file's rate, as a camera would
                next_due += 1.0 / self.fps
                delay = next_due - time.perf_counter()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_due = time.perf_counter()

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


# ---------------------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------------------

def list_sources(path) -> list[Path]:
    """An image file -> [it]; a folder -> its images sorted by name (n/p step through them)."""
    path = Path(path).expanduser()
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise FommError(f"the folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        return images
    if not path.is_file():
        raise FommError(f"source image {path} does not exist; give an image file or a folder of images.")
    return [path]



# ---------------------------------------------------------------------------------------------------------------
# Inference on the latest frame
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class Result:
    seq: int
    captured_at: float
    camera: np.ndarray     # the driving crop, size x size RGB
    image: np.ndarray      # the animated source, size x size RGB (with paste-back: the whole photo's size)
    face: bool             # whether a face box was in use


class DrivingCropper:
    """Camera frame -> the square face crop the model sees (RGB), with the box smoothed across frames.

    Once a face is being tracked, each detection searches only near the tracker's box (a few ms on a CPU;
    FaceDetector.detect's `near`), and the whole frame only when the face is not there; a whole-frame search
    costs ~50 ms on a CPU, as much as a GPU's whole frame. Detection runs in its own thread on the newest frame
    handed to it, paced to use at most ~`budget` of the time, and the model's frames use the tracker's current
    box without waiting (a head moves little in 0.2 s). Until a face is found (the first frame, which becomes
    the reference pose) detection runs in line, so the very first crop is already the face.
    """

    def __init__(self, size: int, crop: bool = True, increase: float = 0.25, budget: float = 0.25,
                 background: bool = True):
        from fomm_core.media.face import FaceDetector, FaceTracker
        self.size, self.crop, self.increase, self.budget = size, crop, increase, budget
        self.background = background
        self.detector = FaceDetector(max_side=240, min_face=0.15) if crop else None
        self.tracker = FaceTracker()
        self.detect_cost = 0.0          # running mean of one detection's seconds
        self.last_detect = -math.inf    # perf_counter() at the last detection
        self.detections = 0
        self._lock = threading.Lock()
        self._pending = None            # the newest frame waiting for the detection thread (one slot, no queue)
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = None

    def _detect(self, frame_bgr):
        started = time.perf_counter()
        with self._lock:
            box = self.tracker.box
        found = self.detector.detect(frame_bgr, near=[box]) if box is not None else []
        if not found:  # no face yet, or not where it was: search the whole frame
            found = self.detector.detect(frame_bgr)
        cost = time.perf_counter() - started
        with self._lock:
            self.detect_cost = cost if self.detections == 0 else 0.8 * self.detect_cost + 0.2 * cost
            self.last_detect, self.detections = started, self.detections + 1
            return self.tracker.update(found)

    def _detect_loop(self):
        while not self._closed.is_set():
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                frame, self._pending = self._pending, None
            if frame is None:
                continue
            self._detect(frame)
            self._closed.wait(self.detect_cost * (1 / self.budget - 1))  # stay within the time budget

    def _box(self, frame_bgr):
        with self._lock:
            box = self.tracker.box
            due = time.perf_counter() - self.last_detect >= self.detect_cost / self.budget
        if box is None or not self.background:
            return self._detect(frame_bgr) if due else box
        with self._lock:
            self._pending = frame_bgr
        if self._thread is None:
            self._thread = threading.Thread(target=self._detect_loop, name="live-face", daemon=True)
            self._thread.start()
        self._wake.set()
        return box

    def close(self):
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def __call__(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, bool]:
        import cv2
        from fomm_core.media.face import Box, crop_square, square_box
        h, w = frame_bgr.shape[:2]
        box = self._box(frame_bgr) if self.crop else None
        if box is None:  # no face (yet), or cropping off: the centre square, which is not a fixed 640x480 guess
            side = min(h, w)
            square = Box((w - side) // 2, (h - side) // 2, side, side)
        else:
            square = square_box(box, self.increase)   # may reach past the edge: crop_square repeats the border
        patch = crop_square(frame_bgr, square, self.size)
        return cv2.cvtColor(patch, cv2.COLOR_BGR2RGB), box is not None   # the model wants RGB


# ---------------------------------------------------------------------------------------------------------------
# Outputs: recording, virtual camera, window
# ---------------------------------------------------------------------------------------------------------------

def open_virtual_camera(frame_size: tuple[int, int], fps: float):
    """(camera or None, sentence): pyvirtualcam where installed with a backend; a soft failure otherwise."""
    try:
        import pyvirtualcam
    except ImportError:
        return None, ('virtual camera off: pyvirtualcam is not installed (pip install "fomm-doctor[virtualcam]", '
                      "plus OBS or v4l2loopback as its backend)")
    try:
        cam = pyvirtualcam.Camera(width=frame_size[0], height=frame_size[1], fps=fps)
    except Exception as err:  # no backend: OBS / v4l2loopback / Unity Capture missing
        return None, f"virtual camera off: pyvirtualcam found no backend ({err})"
    return cam, f"virtual camera on: {cam.device}"


# ---------------------------------------------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class LiveOptions:
    camera: int | str = 0
    sources: list = field(default_factory=list)   # source image paths; n/p step through them
    size: int = 256
    crop: bool = True
    paste_back: bool = False    # results put back into the whole photo (fomm_core.media.paste)
    window: bool = True
    output: Path | None = None
    max_frames: int | None = None
    virtual_camera: bool = False
    open_timeout: float = 8.0
    frame_timeout: float = 5.0


def window_problem() -> str | None:
    """Why an OpenCV window cannot open here (a sentence), or None.

    OpenCV's Qt build does not raise when there is no display: Qt aborts the whole process. So on Linux the
    display is checked first, and opening a window is tried in a throwaway subprocess.
    """
    import subprocess
    import sys

    import cv2
    gui = next((line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
                if line.strip().startswith("GUI:")), "")
    if gui.upper() == "NONE":
        return "this OpenCV has no window support (a -headless build); use --no-window, or install opencv-python"
    if sys.platform.startswith("linux"):
        display = os.environ.get("DISPLAY")
        if not display:
            return "there is no display (DISPLAY is not set); use --no-window, with --output FILE to record"
        probe = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
        try:
            done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=15)
        except subprocess.TimeoutExpired:
            return f"opening a window on display {display} did not finish; use --no-window"
        if done.returncode != 0:
            return f"no window can be opened on display {display}; use --no-window, with --output FILE to record"
    return None


def compose_view(source, camera, result, stats: LiveStats, last_latency: float, face: bool) -> np.ndarray:
    """source | camera crop | result side by side (BGR, for cv2.imshow) with frames/s and latency written on."""
    import cv2
    height = max(256, camera.shape[0])   # small models: tiles big enough to see and to hold the text
    tiles = [t if t.shape[0] == height else
             cv2.resize(t, (round(t.shape[1] * height / t.shape[0]), height),
                        interpolation=cv2.INTER_NEAREST if t.shape[0] < height else cv2.INTER_AREA)
             for t in (source, camera, result)]   # a pasted-back result keeps its aspect
    panel = cv2.cvtColor(np.hstack(tiles), cv2.COLOR_RGB2BGR)
    text = (f"{stats.fps:4.1f} fps  latency {1000 * last_latency:4.0f} ms  dropped {stats.dropped}"
            + ("" if face else "  no face"))
    for top, bottom in ((0, 28), (panel.shape[0] - 24, panel.shape[0])):  # darkened bands keep text legible
        panel[top:bottom] = (panel[top:bottom] * 0.35).astype(np.uint8)
    cv2.putText(panel, text, (8, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(panel, "r/space: reference  n/p: source  q/Esc: quit", (8, panel.shape[0] - 8),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def letterbox(image: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """The image scaled to fit (w, h), its aspect kept, centred on black; unchanged when it is that size."""
    import cv2
    w, h = frame_size
    if image.shape[1] == w and image.shape[0] == h:
        return image
    scale = min(w / image.shape[1], h / image.shape[0])
    fw, fh = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    out = np.zeros((h, w, 3), np.uint8)
    top, left = (h - fh) // 2, (w - fw) // 2
    out[top:top + fh, left:left + fw] = cv2.resize(image, (fw, fh), interpolation=cv2.INTER_AREA)
    return out


class LiveOutputs:
    """Where results go, each optional: a recording (one frame per camera frame it stands for, so it keeps real
    time), a virtual camera, a window. `close()` keeps a recording cut short by a lost camera."""

    WINDOW = "fomm-doctor live"

    def __init__(self, window: bool):
        self.window = window
        self.writer = None
        self.vcam = None
        self.frame_size = (0, 0)

    def open(self, options: LiveOptions, fps: float, notes: list, frame_size: tuple[int, int]) -> None:
        """frame_size: (w, h) of every frame sent; a frame of another size (after n/p to a photo of another
        shape, with paste-back) is fitted into it, its aspect kept."""
        import cv2
        from fomm_core.media.video import VideoWriter
        self.frame_size = frame_size
        if options.output:
            self.writer = VideoWriter(options.output, fps, frame_size)
        if options.virtual_camera:
            self.vcam, sentence = open_virtual_camera(frame_size, fps)
            notes.append(sentence)
        if self.window:
            try:
                cv2.namedWindow(self.WINDOW, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # no Qt toolbar
            except cv2.error:  # the checks in window_problem() passed, yet no window
                raise FommError("no window could be opened; use --no-window (with --output FILE to "
                                "record).") from None

    def send(self, image: np.ndarray, repeat: int) -> None:
        image = letterbox(image, self.frame_size)
        if self.writer is not None:
            for _ in range(repeat):
                self.writer.write(image)
        if self.vcam is not None:
            self.vcam.send(np.ascontiguousarray(image))

    def show(self, view: np.ndarray) -> None:
        import cv2
        cv2.imshow(self.WINDOW, view)

    def key(self) -> int:
        """The key pressed in the window (which also lets it redraw); -1 without one."""
        import cv2
        return cv2.waitKey(1) & 0xFF if self.window else -1

    def close(self) -> None:
        import cv2
        if self.writer is not None:
            if self.writer.frames:
                self.writer.close()
            else:
                self.writer.abort()
        if self.vcam is not None:
            self.vcam.close()
        if self.window:
            cv2.destroyAllWindows()


class LiveSession:
    """Wires capture, inference and outputs together. `run()` returns LiveStats; `notes` collects sentences
    worth showing (virtual camera state, why it stopped)."""

    def __init__(self, animator, options: LiveOptions, cropper=None):
        self.animator = animator
        self.options = options
        self.stats = LiveStats()
        self.notes: list[str] = []
        self.cropper = cropper or DrivingCropper(options.size, options.crop)
        self.source_index = 0
        self.source_rgb = None
        self.paste = None                    # with paste-back: the current photo's PasteBack
        self._reference_requested = True     # the first frame is the reference
        self._reference = None               # the driving frame [1, 3, H, W] of the current reference pose
        self._source_changed = True
        self._result: Result | None = None
        self._result_cond = threading.Condition()
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._last_latency = 0.0

    # -- controls (keys call these; safe from any thread) ----------------------------------------------------------
    def request_reference(self):
        self._reference_requested = True

    def step_source(self, delta: int):
        if len(self.options.sources) > 1:
            self.source_index = (self.source_index + delta) % len(self.options.sources)
            self._source_changed = True

    def stop(self):
        self._stop.set()
        with self._result_cond:
            self._result_cond.notify_all()

    def press(self, key: int) -> bool:
        """A key from the window: r/space new reference, n/p next/previous photo; False for q/Esc (quit)."""
        if key in (ord("q"), 27):
            return False
        if key in (ord("r"), ord(" ")):
            self.request_reference()
        elif key in (ord("n"), ord("p")):
            self.step_source(+1 if key == ord("n") else -1)
        return True

    # -- inference thread ---------------------------------------------------------------------------------------------
    def _load_source(self):
        from fomm_core.media.crop import source_square
        from fomm_core.media.images import frames_to_tensor
        from fomm_core.media.paste import paste_back
        path = self.options.sources[self.source_index]
        cropped = source_square(path, self.options.size, self.options.crop)
        self.source_rgb = cropped.image
        self.paste = paste_back(cropped.photo, cropped.box) if self.options.paste_back else None
        self.animator.set_source(frames_to_tensor([self.source_rgb]))
        if self._reference is not None:  # a new photo keeps the reference pose the user chose
            self.animator.set_reference(self._reference)
        self._source_changed = False

    def _animate(self, frame: Frame) -> None:
        """One camera frame -> the shared latest Result."""
        from fomm_core.media.images import frames_to_tensor, tensor_to_frames
        if self._source_changed:
            self._load_source()
        camera_rgb, face = self.cropper(frame.image)
        driving = frames_to_tensor([camera_rgb])
        if self._reference_requested:
            self.animator.set_reference(driving)
            self._reference, self._reference_requested = driving, False
        image = tensor_to_frames(self.animator.animate(driving))[0]
        if self.paste is not None:
            image = self.paste(image)
        with self._result_cond:
            self._result = Result(frame.seq, frame.captured_at, camera_rgb, image, face)
            self.stats.processed += 1
            self._result_cond.notify_all()

    def _infer_loop(self, capture: LatestFrameCapture):
        try:
            seq = 0
            while not self._stop.is_set():
                frame = capture.latest(seq, self.options.frame_timeout)
                if frame is None:
                    self.stats.stop_reason = capture.ended or "stopped"
                    break
                seq = frame.seq
                self._animate(frame)
                if self.options.max_frames and self.stats.processed >= self.options.max_frames:
                    self.stats.stop_reason = f"{self.options.max_frames} frames done"
                    break
        except BaseException as err:  # handed to the main thread, which raises it
            self._error = err
        finally:
            self.stop()

    # -- the caller's loop ----------------------------------------------------------------------------------------------
    def run(self) -> LiveStats:
        self._check_ready()
        self._load_source()           # a bad source image fails before the camera opens
        capture = LatestFrameCapture(self.options.camera, open_timeout=self.options.open_timeout, stats=self.stats)
        capture.open()
        outputs, worker = LiveOutputs(self.options.window), None
        try:
            size = self.paste.size if self.paste is not None else (self.options.size, self.options.size)
            outputs.open(self.options, capture.fps, self.notes, size)
            worker = threading.Thread(target=self._infer_loop, args=(capture,), name="live-infer", daemon=True)
            self.stats.started = time.perf_counter()
            worker.start()
            self._deliver_results(outputs)
        finally:
            self._shut_down(worker, capture, outputs)
        if self._error is not None:
            raise self._error
        return self.stats

    def _check_ready(self) -> None:
        if not self.options.sources:
            raise FommError("give a source image with --source IMG (or a folder of images).")
        if self.options.window:
            problem = window_problem()
            if problem:
                raise FommError(problem + ".")

    def _deliver_results(self, outputs: LiveOutputs) -> None:
        """Hand each new result to the outputs until the worker stops (and its last result is out) or q/Esc."""
        shown_seq = 0
        while True:
            result = self._wait_for_result(shown_seq)
            if result is not None and result.seq != shown_seq:
                self._deliver(result, shown_seq, outputs)
                shown_seq = result.seq
            if not self.press(outputs.key()):
                self.stats.stop_reason = "quit"
                return
            if self._stop.is_set() and (self._result is None or self._result.seq == shown_seq):
                return

    def _wait_for_result(self, shown_seq: int) -> Result | None:
        with self._result_cond:
            if (self._result is None or self._result.seq == shown_seq) and not self._stop.is_set():
                self._result_cond.wait(0.03 if self.options.window else 0.5)
            return self._result

    def _deliver(self, result: Result, shown_seq: int, outputs: LiveOutputs) -> None:
        """Record, send and show one result, and count its capture-to-display latency."""
        outputs.send(result.image, repeat=max(1, result.seq - shown_seq) if shown_seq else 1)
        if outputs.window:
            outputs.show(compose_view(self.source_rgb, result.camera, result.image, self.stats,
                                      self._last_latency, result.face))
        self._last_latency = time.perf_counter() - result.captured_at
        self.stats.latencies.append(self._last_latency)

    def _shut_down(self, worker, capture: LatestFrameCapture, outputs: LiveOutputs) -> None:
        self.stop()
        if worker is not None:
            worker.join(timeout=5.0)
        if hasattr(self.cropper, "close"):
            self.cropper.close()
        capture.close()
        self.stats.ended = time.perf_counter()
        outputs.close()
