"""Face detection with no model download, a tracker that keeps the crop box still, and square crops.

    detector, tracker = FaceDetector(), FaceTracker()
    for frame in iter_frames("in.mp4"):                     # RGB, as every frame of this package
        box = tracker.update(detector.detect(frame, near=[tracker.box] if tracker.box else None))
        if box:
            face = crop_square(frame, square_box(box, 0.1), 256)

The detector is a Viola-Jones Haar cascade (OpenCV's `haarcascade_frontalface_default.xml`), run by OpenCV's
`CascadeClassifier` where it has one (4.x) and by our numpy evaluator (`fomm_core.media.haar`) where not (5.x).
Boxes are `Box(x, y, w, h)` in pixels of the frame they were found in (floats; `.ints()` rounds).
"""
from __future__ import annotations

import math
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np

from fomm_core.errors import FommError
from fomm_core.media.haar import CASCADE_NAME, SHIPPED_CASCADE, NumpyHaarDetector


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2

    @property
    def area(self) -> float:
        return max(self.w, 0.0) * max(self.h, 0.0)

    def ints(self) -> tuple[int, int, int, int]:
        return round(self.x), round(self.y), round(self.w), round(self.h)

    def scaled(self, factor: float) -> "Box":
        """The same box in an image `factor` times as large."""
        return Box(self.x * factor, self.y * factor, self.w * factor, self.h * factor)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    ix = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def cascade_path() -> Path:
    """OpenCV's own copy of the frontal face cascade when it ships one (4.x), else ours."""
    import cv2
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if folder and (Path(folder) / CASCADE_NAME).is_file():
        return Path(folder) / CASCADE_NAME
    if SHIPPED_CASCADE.is_file():
        return SHIPPED_CASCADE
    raise FommError(f"no face detector: this OpenCV ({cv2.__version__}) has no Haar cascades (cv2.data) and "
                    f"{SHIPPED_CASCADE} is missing; reinstall fomm-doctor.")


class FaceDetector:
    """Frontal faces in a frame -> boxes, largest first.

    Works on a copy shrunk to `max_side` pixels (faces in webcam and driving videos are large, and the cascade's
    cost grows with the pixel count), and ignores faces smaller than `min_face` of the shorter side.
    """

    def __init__(self, max_side: int = 320, min_face: float = 0.12, scale_factor: float = 1.1,
                 min_neighbors: int = 3):
        import cv2
        self.max_side, self.min_face = max_side, min_face
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        path = cascade_path()
        classifier = getattr(cv2, "CascadeClassifier", None)  # gone in OpenCV 5
        self._cv = classifier(str(path)) if classifier is not None else None
        if self._cv is not None and self._cv.empty():
            self._cv = None
        self._np = None if self._cv is not None else NumpyHaarDetector(path)
        self.backend = "opencv" if self._cv is not None else "numpy"

    def _gray(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """The frame in gray, shrunk to max_side; and the shrink factor."""
        import cv2
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        height, width = gray.shape
        shrink = min(1.0, self.max_side / max(height, width))
        if shrink < 1.0:
            gray = cv2.resize(gray, (max(1, round(width * shrink)), max(1, round(height * shrink))),
                              interpolation=cv2.INTER_AREA)
        return gray, shrink

    def detect(self, frame: np.ndarray, near: list[Box] | None = None) -> list[Box]:
        """frame: HxW gray or HxWx3 uint8 RGB (the order of every frame in this package; the cascade sees its
        luminance).

        near: boxes (frame pixels) where faces are expected; then only windows of about their size close to
        them are tried (see haar.NEAR_SIZES, NEAR_REACH), at a fraction of the cost, and no face elsewhere is
        found.
        A face less than about a sixth of its size away from its box gets the very box a search of the whole
        frame gives. OpenCV's own evaluator (4.x) is fast enough to search the whole frame every time,
        so it ignores `near`.
        """
        gray, shrink = self._gray(frame)
        min_size = max(24, int(self.min_face * min(gray.shape)))
        if self._cv is not None:
            found = self._cv.detectMultiScale(gray, self.scale_factor, self.min_neighbors,
                                              minSize=(min_size, min_size))
        else:
            where = None if near is None else [astuple(b.scaled(shrink)) for b in near]
            found = self._np.detect(gray, self.scale_factor, self.min_neighbors, min_size, near=where)
        boxes = [Box(*map(float, r)).scaled(1.0 / shrink) for r in found]
        return sorted(boxes, key=lambda b: -b.area)


# ---------------------------------------------------------------------------------------------------------------
# Keeping the box still across frames
# ---------------------------------------------------------------------------------------------------------------

class FaceTracker:
    """One face's box across frames, smoothed so the crop does not jitter.

    Each `update(detections)` picks the detection that best continues the current box (overlap, else nearness),
    ignores moves inside a dead band (hysteresis: detector noise of a few pixels must not shake the crop),
    follows bigger moves with exponential smoothing, and holds the last box while detection drops out.
    """

    def __init__(self, smoothing: float = 0.35, dead_band: float = 0.06, max_missing: int | None = None):
        self.smoothing = smoothing        # weight of the new detection in the running box
        self.dead_band = dead_band        # moves/size changes below this fraction of the box size are ignored
        self.max_missing = max_missing    # forget the face after this many frames without it (None: never)
        self.box: Box | None = None
        self.missing = 0

    def _pick(self, detections: list[Box]) -> Box | None:
        if not detections:
            return None
        if self.box is None:
            return max(detections, key=lambda b: b.area)
        best = max(detections, key=lambda b: iou(b, self.box))
        if iou(best, self.box) > 0:
            return best
        cx, cy = self.box.center
        near = min(detections, key=lambda b: math.hypot(b.center[0] - cx, b.center[1] - cy))
        # a far-away face is someone else (or a false hit) unless we have lost ours for a while
        far = math.hypot(near.center[0] - cx, near.center[1] - cy) > 1.5 * self.box.w
        return None if far and self.missing < 5 else near

    def update(self, detections: list[Box]) -> Box | None:
        found = self._pick(detections)
        if found is None:
            self.missing += 1
            if self.max_missing is not None and self.missing > self.max_missing:
                self.box = None
            return self.box
        self.missing = 0
        if self.box is None:
            self.box = found
            return self.box
        old = self.box
        size = max(old.w, old.h)
        moved = max(abs(found.center[0] - old.center[0]), abs(found.center[1] - old.center[1])) / size
        resized = abs(found.w - old.w) / size
        if moved < self.dead_band and resized < self.dead_band:
            return self.box
        a = self.smoothing
        cx = old.center[0] + a * (found.center[0] - old.center[0])
        cy = old.center[1] + a * (found.center[1] - old.center[1])
        w = old.w + a * (found.w - old.w)
        h = old.h + a * (found.h - old.h)
        self.box = Box(cx - w / 2, cy - h / 2, w, h)
        return self.box


# ---------------------------------------------------------------------------------------------------------------
# Square crops with margin
# ---------------------------------------------------------------------------------------------------------------

def square_box(box: Box, increase: float = 0.1, frame_shape=None) -> Box:
    """The box grown by `increase` of its size on every side and made square (as the original crop script).

    With frame_shape (h, w, ...) the square is shifted to lie inside the frame, and shrunk only when the frame
    is smaller than the square. Returns integer coordinates (as a Box of whole numbers).
    """
    cx, cy = box.center
    side = max(box.w, box.h) * (1 + 2 * increase)
    if frame_shape is not None:
        fh, fw = frame_shape[:2]
        side = min(side, fw, fh)
    side = max(1, int(round(side)))
    x, y = int(round(cx - side / 2)), int(round(cy - side / 2))
    if frame_shape is not None:
        x = min(max(x, 0), fw - side)
        y = min(max(y, 0), fh - side)
    return Box(float(x), float(y), float(side), float(side))


@dataclass(frozen=True)
class Framing:
    """Where a model family's training crops put the face, from a face box.

    The square's side is `scale` times the box's longer side; its centre is `lift` of that side above the box's
    centre (room for the forehead and hair). `inside`: the square is moved (and shrunk only if it must) to lie in
    the frame, as first-order-model's crop script does; otherwise it keeps its scale and may reach past the
    edges, as LivePortrait's crops do (crop_square repeats the border there; paste-back uses the part inside).
    """
    scale: float = 1.2     # first-order-model's crop script: 10 % added on each side
    lift: float = 0.0
    inside: bool = True

    def square(self, face: Box, frame_shape=None) -> Box:
        """The square (whole numbers) this framing takes around `face` in a frame of frame_shape (h, w, ...)."""
        cx, cy = face.center
        side = max(face.w, face.h) * self.scale
        centred = Box(cx - side / 2, cy - self.lift * side - side / 2, side, side)
        return square_box(centred, 0.0, frame_shape if self.inside else None)


@dataclass(frozen=True)
class Framings:
    """A family's framing of the source photo, of a driving video, and of the camera in `live` (which adds room
    for a head that moves before the tracker follows)."""
    source: Framing = Framing()
    driving: Framing = Framing()
    live: Framing = Framing(scale=1.5)


def crop_square(frame: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The box's pixels resized to size x size; parts outside the frame repeat the edge (no black bars)."""
    import cv2
    x, y, w, h = box.ints()
    w, h = max(w, 1), max(h, 1)
    fh, fw = frame.shape[:2]
    pad = max(0, -x, -y, x + w - fw, y + h - fh)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x, y = x + pad, y + pad
    patch = frame[y:y + h, x:x + w]
    interp = cv2.INTER_AREA if w > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)
