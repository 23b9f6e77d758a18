"""Face detection with no model download, a tracker that keeps the crop box still, and square crops.

The detector is a Viola-Jones Haar cascade (OpenCV's `haarcascade_frontalface_default.xml`). OpenCV 4.x ships
the cascade files (`cv2.data.haarcascades`) and the C++ evaluator (`cv2.CascadeClassifier`); OpenCV 5 dropped
both. So we carry the cascade file ourselves (fomm_core/face_data/) and, where OpenCV has no evaluator, run the
cascade with a small numpy evaluator below: integral images, one vectorised pass per stage over the windows
that survived the previous stage.

Boxes are `Box(x, y, w, h)` in pixels of the frame they were found in (floats; `.ints()` rounds).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from fomm_core.errors import FommError

CASCADE_NAME = "haarcascade_frontalface_default.xml"
SHIPPED_CASCADE = Path(__file__).resolve().parent / "face_data" / CASCADE_NAME


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


# ---------------------------------------------------------------------------------------------------------------
# The cascade: parsed once into flat arrays
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cascade:
    window: tuple[int, int]          # (w, h) of the training window, 24x24 for the frontal face cascade
    stage_end: np.ndarray            # [S] index one past each stage's last weak classifier
    stage_threshold: np.ndarray      # [S]
    weak_threshold: np.ndarray       # [K] stump threshold on the normalised feature value
    leaves: np.ndarray               # [K, 2] value added when feature < threshold (0) or >= threshold (1)
    rects: np.ndarray                # [K, 3, 4] int (x, y, w, h) of each weak classifier's feature rectangles
    weights: np.ndarray              # [K, 3] rectangle weights (0 for an absent third rectangle)


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split()]


@lru_cache(maxsize=4)
def load_cascade(path: str) -> Cascade:
    """Parse an OpenCV (new-format, stump-based, upright Haar) cascade XML file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        raise FommError(f"the face detector's cascade file {path} is unreadable ({type(err).__name__}); "
                        "reinstall fomm-doctor.") from None
    cascade = root.find("cascade")
    if cascade is None or (cascade.findtext("featureType") or "").strip() != "HAAR":
        raise FommError(f"{path} is not a Haar cascade in OpenCV's format.")
    window = (int(cascade.findtext("width")), int(cascade.findtext("height")))
    features = []
    for feat in cascade.find("features"):
        if (feat.findtext("tilted") or "0").strip() not in ("", "0"):
            raise FommError(f"{path} uses tilted Haar features, which this evaluator does not support.")
        rects = [_floats(r.text) for r in feat.find("rects")]
        features.append(rects)

    stage_end, stage_threshold, weak_threshold, leaves, feature_index = [], [], [], [], []
    for stage in cascade.find("stages"):
        stage_threshold.append(float(stage.findtext("stageThreshold")))
        for weak in stage.find("weakClassifiers"):
            nodes = _floats(weak.findtext("internalNodes"))
            if len(nodes) != 4:  # left, right, feature, threshold: a single stump
                raise FommError(f"{path} uses tree-based weak classifiers; use a stump-based cascade.")
            feature_index.append(int(nodes[2]))
            weak_threshold.append(nodes[3])
            leaves.append(_floats(weak.findtext("leafValues")))
        stage_end.append(len(weak_threshold))

    rects = np.zeros((len(feature_index), 3, 4), np.int64)
    weights = np.zeros((len(feature_index), 3), np.float64)
    for k, f in enumerate(feature_index):
        for r, (x, y, w, h, weight) in enumerate(features[f]):
            rects[k, r] = (x, y, w, h)
            weights[k, r] = weight
    return Cascade(window, np.array(stage_end), np.array(stage_threshold), np.array(weak_threshold),
                   np.array(leaves), rects, weights)



class NumpyHaarDetector:
    """Runs an OpenCV Haar cascade with numpy: what `cv2.CascadeClassifier.detectMultiScale` does, for OpenCV 5."""

    def __init__(self, path=SHIPPED_CASCADE):
        self.cascade = load_cascade(str(path))

    def _candidates(self, gray: np.ndarray, scale: float) -> list[Box]:
        """Windows of the image shrunk by `scale` that pass the whole cascade, as boxes in the original image."""
        import cv2
        c = self.cascade
        ww, wh = c.window
        height, width = gray.shape
        sw, sh = round(width / scale), round(height / scale)
        if sw < ww or sh < wh:
            return []
        small = cv2.resize(gray, (sw, sh), interpolation=cv2.INTER_LINEAR) if scale != 1 else gray
        ii, sq = cv2.integral2(small, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
        stride = sw + 1
        ii, sq = ii.ravel(), sq.ravel()
        step = 2 if scale < 2 else 1  # as OpenCV: coarser steps where the window is small compared to the face
        ys, xs = np.mgrid[0:sh - wh + 1:step, 0:sw - ww + 1:step]
        bases = (ys * stride + xs).ravel()

        # variance normalisation over the window's inner (w-2)x(h-2) rectangle, as OpenCV does
        nx, ny, nw, nh = 1, 1, ww - 2, wh - 2
        corners = np.array([ny * stride + nx, ny * stride + nx + nw, (ny + nh) * stride + nx,
                            (ny + nh) * stride + nx + nw])

        def rect_sums(table, offsets):  # offsets [..., 4] -> sums [..., N] for the current bases
            vals = table[bases + offsets[..., None]]
            return vals[..., 0, :] - vals[..., 1, :] - vals[..., 2, :] + vals[..., 3, :]

        area = nw * nh
        s = rect_sums(ii, corners)
        s2 = rect_sums(sq, corners)
        nf = area * s2 - s * s
        inv_norm = 1.0 / np.where(nf > 0, np.sqrt(np.maximum(nf, 0)), 1.0)

        x, y, w, h = (c.rects[..., i] for i in range(4))  # each [K, 3]
        offsets = np.stack([y * stride + x, y * stride + x + w, (y + h) * stride + x,
                            (y + h) * stride + x + w], axis=-1)  # [K, 3, 4]
        start = 0
        for end, threshold in zip(c.stage_end, c.stage_threshold):
            if bases.size == 0:
                return []
            # feature value of every weak classifier of this stage on every surviving window: [k, N]
            sums = rect_sums(ii, offsets[start:end])                      # [k, 3, N]
            value = np.einsum("kr,krn->kn", c.weights[start:end], sums) * inv_norm
            votes = np.where(value < c.weak_threshold[start:end, None],
                             c.leaves[start:end, 0, None], c.leaves[start:end, 1, None])
            keep = votes.sum(axis=0) >= threshold
            bases, inv_norm = bases[keep], inv_norm[keep]
            start = end
        top, left = np.divmod(bases, stride)
        return [Box(float(l * scale), float(t * scale), ww * scale, wh * scale) for t, l in zip(top, left)]

    def detect_raw(self, gray: np.ndarray, scale_factor=1.1, min_size=30, max_size=None) -> list[Box]:
        """Every window the cascade accepts, over a pyramid of scales (no grouping)."""
        height, width = gray.shape
        ww, wh = self.cascade.window
        max_size = max_size or min(width, height)
        found, scale = [], 1.0
        while ww * scale <= min(width, height) and wh * scale <= max_size:
            if ww * scale >= min_size:
                found.extend(self._candidates(gray, scale))
            scale *= scale_factor
        return found

    def detect(self, gray, scale_factor=1.1, min_neighbors=3, min_size=30, max_size=None) -> list[Box]:
        raw = self.detect_raw(gray, scale_factor, min_size, max_size)
        return group_boxes(raw, min_neighbors)


def _similar(a: Box, b: Box, eps: float) -> bool:
    """OpenCV's SimilarRects: every edge within eps times the mean of the smaller sizes."""
    delta = eps * (min(a.w, b.w) + min(a.h, b.h)) * 0.5
    return (abs(a.x - b.x) <= delta and abs(a.y - b.y) <= delta
            and abs(a.x + a.w - b.x - b.w) <= delta and abs(a.y + a.h - b.y - b.h) <= delta)


def _clusters(boxes: list[Box], eps: float) -> list[list[Box]]:
    """The boxes partitioned into classes of (transitively) similar ones, in order of first appearance."""
    labels = list(range(len(boxes)))

    def find(i):
        while labels[i] != i:
            labels[i] = labels[labels[i]]
            i = labels[i]
        return i

    for i in range(len(boxes)):
        for j in range(i):
            if _similar(boxes[i], boxes[j], eps):
                labels[find(i)] = find(j)
    groups: dict[int, list[Box]] = {}
    for i, box in enumerate(boxes):
        groups.setdefault(find(i), []).append(box)
    return list(groups.values())


def _inside(box: Box, other: Box, eps: float) -> bool:
    """Whether `box` lies within `other` grown by eps of its size on every side."""
    dx, dy = other.w * eps, other.h * eps
    return (box.x >= other.x - dx and box.y >= other.y - dy and box.x + box.w <= other.x + other.w + dx
            and box.y + box.h <= other.y + other.h + dy)


def group_boxes(boxes: list[Box], min_neighbors: int, eps: float = 0.2) -> list[Box]:
    """Merge overlapping raw detections as OpenCV's groupRectangles does; keep groups of > min_neighbors boxes."""
    if min_neighbors <= 0:
        return list(boxes)
    merged = [(Box(*(sum(getattr(b, f) for b in g) / len(g) for f in "xywh")), len(g))
              for g in _clusters(boxes, eps) if len(g) > min_neighbors]
    # drop a box that lies inside a bigger, better supported one (OpenCV's last grouping step)
    return [box for box, n in merged
            if not any(other is not box and n2 >= max(3, n) and _inside(box, other, eps) for other, n2 in merged)]


# ---------------------------------------------------------------------------------------------------------------
# The detector callers use
# ---------------------------------------------------------------------------------------------------------------

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

    def detect(self, frame: np.ndarray) -> list[Box]:
        """frame: HxW gray or HxWx3 uint8 (BGR or RGB: the cascade sees gray only)."""
        import cv2
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        height, width = gray.shape
        shrink = min(1.0, self.max_side / max(height, width))
        if shrink < 1.0:
            gray = cv2.resize(gray, (max(1, round(width * shrink)), max(1, round(height * shrink))),
                              interpolation=cv2.INTER_AREA)
        min_size = max(24, int(self.min_face * min(gray.shape)))
        if self._cv is not None:
            found = [Box(*map(float, r)) for r in self._cv.detectMultiScale(
                gray, self.scale_factor, self.min_neighbors, minSize=(min_size, min_size))]
        else:
            found = self._np.detect(gray, self.scale_factor, self.min_neighbors, min_size)
        boxes = [b.scaled(1.0 / shrink) for b in found]
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
