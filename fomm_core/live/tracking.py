"""The face in each camera frame, for live: detected in a background thread, its box smoothed, cropped square."""
from __future__ import annotations

import math
import threading
import time

import numpy as np

from fomm_core.media.face import Box, FaceDetector, FaceTracker, Framing, crop_square


class DrivingCropper:
    """Camera frame (RGB) -> the square face crop the model sees, with the box smoothed across frames.

    Once a face is being tracked, each detection searches only near the tracker's box (a few ms on a CPU;
    FaceDetector.detect's `near`), and the whole frame only when the face is not there; a whole-frame search
    costs ~50 ms on a CPU, as much as a GPU's whole frame. Detection runs in its own thread on the newest frame
    handed to it, paced to use at most ~`budget` of the time, and the model's frames use the tracker's current
    box without waiting (a head moves little in 0.2 s). Until a face is found (the first frame, which becomes
    the reference pose) detection runs in line, so the very first crop is already the face.
    """

    def __init__(self, size: int, crop: bool = True, framing: Framing = Framing(scale=1.5), budget: float = 0.25,
                 background: bool = True):
        self.size, self.crop, self.framing, self.budget = size, crop, framing, budget
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

    def _detect(self, frame):
        started = time.perf_counter()
        with self._lock:
            box = self.tracker.box
        found = self.detector.detect(frame, near=[box]) if box is not None else []
        if not found:  # no face yet, or not where it was: search the whole frame
            found = self.detector.detect(frame)
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

    def _box(self, frame):
        with self._lock:
            box = self.tracker.box
            due = time.perf_counter() - self.last_detect >= self.detect_cost / self.budget
        if box is None or not self.background:
            return self._detect(frame) if due else box
        with self._lock:
            self._pending = frame
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

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, bool]:
        """(the size x size crop, RGB; whether a face box was used)."""
        h, w = frame.shape[:2]
        box = self._box(frame) if self.crop else None
        if box is None:  # no face (yet), or cropping off: the centre square, which is not a fixed 640x480 guess
            side = min(h, w)
            square = Box((w - side) // 2, (h - side) // 2, side, side)
        else:
            square = self.framing.square(box)   # may reach past the edge: crop_square repeats the border
        return crop_square(frame, square, self.size), box is not None
