"""Face detection with no model download, a tracker that keeps the crop box still, and square crops.

The detector is a Viola-Jones Haar cascade (OpenCV's `haarcascade_frontalface_default.xml`). OpenCV 4.x ships
the cascade files (`cv2.data.haarcascades`) and the C++ evaluator (`cv2.CascadeClassifier`); OpenCV 5 dropped
both. So we carry the cascade file ourselves (fomm_core/face_data/) and, where OpenCV has no evaluator, run the
cascade with a small numpy evaluator below: integral images of every pyramid level stacked into one table, one
vectorised pass per stage over the windows that survived the previous stage. Once a face is known, a search
can try only the windows near it (`near`), a fraction of the cost of the whole frame: that is how videos and
the camera are tracked.

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



# A face's raw hits (the windows OpenCV's grouping averages into its box) are 0.61..1.38 x the box's size, their
# centres within 0.13 x its size of the box's centre; against the box expected from the previous look (the face
# grows, shrinks and moves in between) hits went down to 0.48 x (measured on test clips with a textured scene).
# A search near a known face covers that, plus a move of about a sixth of the face from where it was expected.
NEAR_SIZES = (0.45, 1.45)
NEAR_REACH = 0.3


@dataclass(frozen=True)
class _Stage:
    """One cascade stage, laid out for a given row stride of the integral tables."""
    offsets: np.ndarray              # [P] distinct table offsets (from a window's corner) its features read
    columns: np.ndarray              # [k, m] which of those each weak classifier's feature reads (m <= 12)...
    coef: np.ndarray                 # [k, m] ...and with what factor (0 pads a feature with fewer reads)
    weak_threshold: np.ndarray       # [k, 1]
    leaves: tuple                    # ([k, 1], [k, 1]) votes for value < threshold and for value >= threshold
    threshold: float


def _merged_reads(corners: np.ndarray, signed: np.ndarray):
    """(distinct offsets, [k, m] columns into them, [k, m] factors) of k features given as [k, 12] reads."""
    offsets, column = np.unique(corners, return_inverse=True)
    column = column.reshape(corners.shape)
    dense = np.zeros((len(corners), offsets.size), np.int32)
    np.add.at(dense, (np.arange(len(corners))[:, None], column), signed)
    m = max(1, int((dense != 0).sum(axis=1).max()))
    columns = np.argsort(dense == 0, axis=1, kind="stable")[:, :m]   # each row's non-zero columns first
    return offsets, columns, np.take_along_axis(dense, columns, axis=1)


def stage_plan(cascade: Cascade, stride: int) -> list[_Stage]:
    """The cascade as gathers from integral tables `stride` wide: per stage, each distinct offset read once.

    A rectangle's sum is four table reads (+ - - +). The weights and the table values are whole numbers, so a
    feature is summed in int32: exact, in any order, even where a partial sum wraps around (the final value,
    at most a few 100000, fits), and so the same as OpenCV's float sums of whole numbers.
    """
    x, y, w, h = (cascade.rects[..., i] for i in range(4))
    corners = np.stack([y * stride + x, y * stride + x + w, (y + h) * stride + x,
                        (y + h) * stride + x + w], axis=-1).reshape(len(x), 12)
    signed = (cascade.weights[..., None] * np.array([1, -1, -1, 1])).reshape(len(x), 12).astype(np.int32)
    plan, start = [], 0
    for end, threshold in zip(cascade.stage_end, cascade.stage_threshold):
        offsets, columns, coef = _merged_reads(corners[start:end], signed[start:end])
        plan.append(_Stage(offsets, columns, coef, cascade.weak_threshold[start:end, None],
                           (cascade.leaves[start:end, 0, None], cascade.leaves[start:end, 1, None]),
                           float(threshold)))
        start = end
    return plan


@lru_cache(maxsize=16)
def _cached_plan(path: str, stride: int) -> list[_Stage]:
    return stage_plan(load_cascade(path), stride)


def pyramid_scales(size: tuple[int, int], window: tuple[int, int], scale_factor: float, min_size: float,
                   max_size: float | None) -> list[float]:
    """The scales detectMultiScale tries on an image of `size` (w, h): 1, f, f*f, ... while the window fits."""
    width, height = size
    ww, wh = window
    max_size = max_size or min(width, height)
    scales, scale = [], 1.0
    while ww * scale <= min(width, height) and wh * scale <= max_size:
        if ww * scale >= min_size and round(width / scale) >= ww and round(height / scale) >= wh:
            scales.append(scale)
        scale *= scale_factor
    return scales


@dataclass(frozen=True)
class _Level:
    """One pyramid level inside the stacked integral tables."""
    scale: float
    row: int        # its first row in the tables
    width: int      # of the shrunk image
    height: int


def stacked_integrals(gray: np.ndarray, scales: list[float]):
    """(integral table, squared integral table, levels, stride): the gray image shrunk by each scale, integrated,
    and stacked one below the other with one row stride (the image's width + 1), both flattened."""
    import cv2
    height, width = gray.shape
    stride, levels, row = width + 1, [], 0
    for scale in scales:
        levels.append(_Level(scale, row, round(width / scale), round(height / scale)))
        row += levels[-1].height + 1
    # int32 sums are exact (up to 8421504 pixels); the right margin of a small level is never read
    ii, sq = np.empty((row, stride), np.int32), np.empty((row, stride))
    for lv in levels:
        small = cv2.resize(gray, (lv.width, lv.height), interpolation=cv2.INTER_LINEAR) if lv.scale != 1 else gray
        a, b = cv2.integral2(small, sdepth=cv2.CV_32S, sqdepth=cv2.CV_64F)
        ii[lv.row:lv.row + lv.height + 1, :lv.width + 1] = a
        sq[lv.row:lv.row + lv.height + 1, :lv.width + 1] = b
    return ii.ravel(), sq.ravel(), levels, stride


def level_windows(lv: _Level, stride: int, window: tuple[int, int], near=None) -> np.ndarray:
    """Table offsets of the windows tried at one level, row by row (OpenCV's grid: every 2nd pixel while the
    window is under 2x its trained size). near=(cx, cy, reach) in unshrunk pixels keeps those whose centre is
    within reach of (cx, cy) on both axes."""
    ww, wh = window
    step = 2 if lv.scale < 2 else 1
    xs, ys = np.arange(0, lv.width - ww + 1, step), np.arange(0, lv.height - wh + 1, step)
    if near is not None:
        cx, cy, reach = near
        xs = xs[np.abs((xs + ww / 2) * lv.scale - cx) <= reach]
        ys = ys[np.abs((ys + wh / 2) * lv.scale - cy) <= reach]
    return ((lv.row + ys)[:, None] * stride + xs[None, :]).ravel()


class NumpyHaarDetector:
    """Runs an OpenCV Haar cascade with numpy: what `cv2.CascadeClassifier.detectMultiScale` does, for OpenCV 5.

    All pyramid levels go through the cascade together (per stage: one gather of the table values its
    features read, one weighted sum), and a search can be limited to the windows near known faces (`near`),
    which is what makes tracking cheap. Boxes are the same as the per-level loop's, to the last bit.
    """

    def __init__(self, path=SHIPPED_CASCADE):
        self.path = str(path)
        self.cascade = load_cascade(self.path)
        if not np.array_equal(self.cascade.weights, np.round(self.cascade.weights)):
            raise FommError(f"{path} has fractional feature weights, which the numpy evaluator does not support.")

    def _plan(self, stride: int) -> list[_Stage]:
        return _cached_plan(self.path, stride)

    def _inv_norm(self, ii, sq, bases, stride):
        """1 / (window area x the pixels' standard deviation) over the inner (w-2)x(h-2) rectangle, as OpenCV."""
        ww, wh = self.cascade.window
        nw, nh = ww - 2, wh - 2
        corners = np.array([stride + 1, stride + 1 + nw, (1 + nh) * stride + 1, (1 + nh) * stride + 1 + nw])

        def rect_sum(table):
            a, b, c, d = (table[bases + offset] for offset in corners)
            return a - b - c + d
        s, s2 = rect_sum(ii).astype(np.float64), rect_sum(sq)
        nf = nw * nh * s2 - s * s
        return 1.0 / np.where(nf > 0, np.sqrt(np.maximum(nf, 0)), 1.0)

    def accepted(self, ii, sq, bases: np.ndarray, stride: int, chunk: int = 4096) -> np.ndarray:
        """The window offsets (of `bases`) that pass every stage of the cascade."""
        inv_norm = self._inv_norm(ii, sq, bases, stride)
        for stage in self._plan(stride):
            if bases.size == 0:
                break
            keep = np.empty(bases.size, bool)
            for at in range(0, bases.size, chunk):  # in slices that stay in cache
                reads = ii[bases[None, at:at + chunk] + stage.offsets[:, None]]                  # [P, n]
                value = np.einsum("km,kmn->kn", stage.coef, reads[stage.columns]) * inv_norm[at:at + chunk]
                votes = np.where(value < stage.weak_threshold, *stage.leaves)
                keep[at:at + chunk] = votes.sum(axis=0) >= stage.threshold
            bases, inv_norm = bases[keep], inv_norm[keep]
        return bases

    def _windows(self, levels, stride, near, reach, sizes) -> np.ndarray:
        window = self.cascade.window
        if near is None:
            parts = [level_windows(lv, stride, window) for lv in levels]
        else:
            parts = [level_windows(lv, stride, window, (*b.center, reach * b.w)) for b in near for lv in levels
                     if sizes[0] * b.w <= window[0] * lv.scale <= sizes[1] * b.w]
        if not parts:
            return np.zeros(0, np.int64)
        # sorted and unique: level by level, row by row, the order OpenCV lists raw hits in
        return np.unique(np.concatenate(parts)) if near is not None else np.concatenate(parts)

    def detect_raw(self, gray: np.ndarray, scale_factor=1.1, min_size=30, max_size=None, near=None,
                   reach=NEAR_REACH, sizes=NEAR_SIZES) -> list[Box]:
        """Every window the cascade accepts, over a pyramid of scales (no grouping).

        near: boxes (pixels of `gray`); then only the windows whose centre lies within `reach` x the box's
        width of a box's centre (on both axes) and whose side is `sizes` (low, high) x the box's width are tried.
        """
        height, width = gray.shape
        scales = pyramid_scales((width, height), self.cascade.window, scale_factor, min_size, max_size)
        if near is not None:
            side = self.cascade.window[0]
            scales = [s for s in scales if any(sizes[0] * b.w <= side * s <= sizes[1] * b.w for b in near)]
        if not scales:
            return []
        ii, sq, levels, stride = stacked_integrals(gray, scales)
        hits = self.accepted(ii, sq, self._windows(levels, stride, near, reach, sizes), stride)
        rows, left = np.divmod(hits, stride)
        level = np.searchsorted([lv.row for lv in levels], rows, side="right") - 1
        ww, wh = self.cascade.window
        return [Box(float(x * levels[i].scale), float((r - levels[i].row) * levels[i].scale),
                    ww * levels[i].scale, wh * levels[i].scale) for x, r, i in zip(left, rows, level)]

    def detect(self, gray, scale_factor=1.1, min_neighbors=3, min_size=30, max_size=None, near=None) -> list[Box]:
        """Faces in a gray image, grouped as OpenCV groups them; `near`: see detect_raw."""
        raw = self.detect_raw(gray, scale_factor, min_size, max_size, near)
        return group_boxes(raw, min_neighbors)


def _similar_pairs(boxes: list[Box], eps: float) -> np.ndarray:
    """[n, n] bool: whether boxes i and j are alike by OpenCV's SimilarRects (every edge within eps times the
    mean of the smaller sizes). Computed for i > j with a = boxes[i], b = boxes[j] in the float operations'
    order of `abs(a.x + a.w - b.x - b.w) <= eps * (min(a.w, b.w) + min(a.h, b.h)) * 0.5`, and mirrored."""
    x, y, w, h = (np.array([getattr(b, f) for b in boxes], np.float64) for f in "xywh")
    delta = eps * (np.minimum(w[:, None], w[None, :]) + np.minimum(h[:, None], h[None, :])) * 0.5
    close = ((np.abs(x[:, None] - x[None, :]) <= delta) & (np.abs(y[:, None] - y[None, :]) <= delta)
             & (np.abs(x[:, None] + w[:, None] - x[None, :] - w[None, :]) <= delta)
             & (np.abs(y[:, None] + h[:, None] - y[None, :] - h[None, :]) <= delta))
    lower = np.tril(close, -1)
    return lower | lower.T | np.eye(len(boxes), dtype=bool)


def _clusters(boxes: list[Box], eps: float) -> list[list[Box]]:
    """The boxes partitioned into classes of (transitively) similar ones, in order of first appearance."""
    if not boxes:
        return []
    pairs = _similar_pairs(boxes, eps)
    label = np.arange(len(boxes))
    while True:  # each box takes the smallest label among its neighbours until nothing changes
        smaller = np.where(pairs, label[None, :], len(boxes)).min(axis=1)
        if np.array_equal(smaller, label):
            break
        label = smaller
    groups: dict[int, list[Box]] = {}
    for i, box in enumerate(boxes):
        groups.setdefault(int(label[i]), []).append(box)
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

    def _gray(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """The frame in gray, shrunk to max_side; and the shrink factor."""
        import cv2
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        height, width = gray.shape
        shrink = min(1.0, self.max_side / max(height, width))
        if shrink < 1.0:
            gray = cv2.resize(gray, (max(1, round(width * shrink)), max(1, round(height * shrink))),
                              interpolation=cv2.INTER_AREA)
        return gray, shrink

    def detect(self, frame: np.ndarray, near: list[Box] | None = None) -> list[Box]:
        """frame: HxW gray or HxWx3 uint8 (BGR or RGB: the cascade sees gray only).

        near: boxes (frame pixels) where faces are expected; then only windows of about their size close to
        them are tried (see NEAR_SIZES, NEAR_REACH), at a fraction of the cost, and no face elsewhere is found.
        A face less than about a sixth of its size away from its box gets the very box a search of the whole
        frame gives. OpenCV's own evaluator (4.x) is fast enough to search the whole frame every time,
        so it ignores `near`.
        """
        gray, shrink = self._gray(frame)
        min_size = max(24, int(self.min_face * min(gray.shape)))
        if self._cv is not None:
            found = [Box(*map(float, r)) for r in self._cv.detectMultiScale(
                gray, self.scale_factor, self.min_neighbors, minSize=(min_size, min_size))]
        else:
            where = None if near is None else [b.scaled(shrink) for b in near]
            found = self._np.detect(gray, self.scale_factor, self.min_neighbors, min_size, near=where)
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
