"""A live session: capture, inference and outputs wired together (`LiveSession.run`), and its options."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fomm_core.errors import FommError
from fomm_core.live.capture import Frame, LatestFrameCapture
from fomm_core.live.outputs import LiveOutputs
from fomm_core.live.overlay import compose_view
from fomm_core.live.stats import LiveStats
from fomm_core.live.tracking import DrivingCropper
from fomm_core.live.window import check_window
from fomm_core.media.crop import source_square
from fomm_core.media.face import Framings
from fomm_core.media.images import frames_to_tensor, tensor_to_frames
from fomm_core.media.paste import paste_back


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
    open_timeout: float = 8.0   # seconds for a camera or stream to deliver its first frame
    frame_timeout: float = 5.0


@dataclass
class Result:
    seq: int
    captured_at: float
    camera: np.ndarray     # the driving crop, size x size RGB
    image: np.ndarray      # the animated source at the engine's output size, RGB (with paste-back: the photo's)
    face: bool             # whether a face box was in use


class LiveSession:
    """Wires capture, inference and outputs together. `run()` returns LiveStats; `notes` collects sentences
    worth showing (virtual camera state, why it stopped).

    Another engine can take over while the session runs (`switch`): the window opens at once on the exact path
    while the measured one is built and timed elsewhere; `hold` pauses inference while something times the CPU,
    and `status` is a line the window shows meanwhile.
    """

    def __init__(self, animator, options: LiveOptions, cropper=None):
        self.animator = animator
        self.options = options
        self.stats = LiveStats()
        self.notes: list[str] = [animator.LEFT_OUT] if getattr(animator, "LEFT_OUT", "") else []
        self.framing = getattr(animator, "FRAMING", Framings())   # where the family's crops put the face
        self.cropper = cropper or DrivingCropper(options.size, options.crop, self.framing.live)
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
        self._next_animator = None           # an engine to take over at the next frame (switch)
        self._running = threading.Event()    # cleared while held: inference waits
        self._running.set()
        self.status = ""                     # shown in the window (e.g. what is being prepared)

    # -- controls (keys call these; safe from any thread) ----------------------------------------------------------
    def request_reference(self):
        self._reference_requested = True

    def step_source(self, delta: int):
        if len(self.options.sources) > 1:
            self.source_index = (self.source_index + delta) % len(self.options.sources)
            self._source_changed = True

    def switch(self, animator, note: str = "") -> None:
        """From the next frame on, `animator` (same family and size) animates; the notes then say from which frame,
        and `note` (why that path)."""
        self._next_animator = (animator, note)

    def hold(self, held: bool) -> None:
        """Pause inference (the last result stays shown) or resume it."""
        (self._running.clear if held else self._running.set)()

    def stop(self):
        self._running.set()
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
        path = self.options.sources[self.source_index]
        cropped = source_square(path, self.options.size, self.options.crop, self.framing.source)
        self.source_rgb = cropped.image
        self.paste = paste_back(cropped.photo, cropped.box, getattr(self.animator, "FEATHER", None)) \
            if self.options.paste_back else None
        self.animator.set_source(frames_to_tensor([self.source_rgb]))
        if self._reference is not None:  # a new photo keeps the reference pose the user chose
            self.animator.set_reference(self._reference)
        self._source_changed = False

    def _animate(self, frame: Frame) -> None:
        """One camera frame -> the shared latest Result."""
        if self._next_animator is not None:  # its source and reference pose are set again below
            (self.animator, note), self._next_animator = self._next_animator, None
            self.notes.append(f"from frame {self.stats.processed + 1} on: {note}")
            self._source_changed = True
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
                self._running.wait()
                if self._stop.is_set():
                    break
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
            side = self.animator.output_size(self.options.size) if hasattr(self.animator, "output_size") \
                else self.options.size   # LivePortrait's results are twice the crop's side
            size = self.paste.size if self.paste is not None else (side, side)
            self.notes += outputs.open(capture.fps, size, self.options.output, self.options.virtual_camera)
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
            raise FommError("no source image was given; give an image or a folder of images.",
                            setting=("source", "IMG"))
        if self.options.window:
            check_window()

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
        if outputs.window is not None:
            outputs.show(compose_view(self.source_rgb, result.camera, result.image, self.stats,
                                      self._last_latency, result.face, self.status))
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
