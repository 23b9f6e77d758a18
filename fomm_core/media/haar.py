"""A Viola-Jones Haar cascade evaluated with numpy: what `cv2.CascadeClassifier.detectMultiScale` does, for an
OpenCV without it.

OpenCV 4.x ships the cascade files (`cv2.data.haarcascades`) and the C++ evaluator (`cv2.CascadeClassifier`);
OpenCV 5 dropped both. So the frontal face cascade travels with us (face_data/), and where OpenCV has no
evaluator it runs here: integral images of every pyramid level stacked into one table, one vectorised pass per
stage over the windows that survived the previous stage. Once a face is known, a search can try only the windows
near it (`near`), a fraction of the cost of the whole frame: that is how videos and the camera are tracked.

Rectangles are float arrays [n, 4] of (x, y, w, h) in pixels of the image searched; `fomm_core.media.face`
turns them into its `Box`es.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from fomm_core.errors import FommError

CASCADE_NAME = "haarcascade_frontalface_default.xml"
SHIPPED_CASCADE = Path(__file__).resolve().parent / "face_data" / CASCADE_NAME


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
    which is what makes tracking cheap. Rectangles are the same as the per-level loop's, to the last bit.
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
            parts = [level_windows(lv, stride, window, (x + w / 2, y + h / 2, reach * w))
                     for x, y, w, h in near for lv in levels if sizes[0] * w <= window[0] * lv.scale <= sizes[1] * w]
        if not parts:
            return np.zeros(0, np.int64)
        # sorted and unique: level by level, row by row, the order OpenCV lists raw hits in
        return np.unique(np.concatenate(parts)) if near is not None else np.concatenate(parts)

    def detect_raw(self, gray: np.ndarray, scale_factor=1.1, min_size=30, max_size=None, near=None,
                   reach=NEAR_REACH, sizes=NEAR_SIZES) -> np.ndarray:
        """Every window the cascade accepts, over a pyramid of scales (no grouping): [n, 4] (x, y, w, h).

        near: rectangles (x, y, w, h) in pixels of `gray`; then only the windows whose centre lies within `reach`
        x the rectangle's width of its centre (on both axes) and whose side is `sizes` (low, high) x its width are
        tried.
        """
        height, width = gray.shape
        scales = pyramid_scales((width, height), self.cascade.window, scale_factor, min_size, max_size)
        if near is not None:
            side = self.cascade.window[0]
            scales = [s for s in scales if any(sizes[0] * w <= side * s <= sizes[1] * w for _, _, w, _ in near)]
        if not scales:
            return np.zeros((0, 4))
        ii, sq, levels, stride = stacked_integrals(gray, scales)
        hits = self.accepted(ii, sq, self._windows(levels, stride, near, reach, sizes), stride)
        rows, left = np.divmod(hits, stride)
        level = np.searchsorted([lv.row for lv in levels], rows, side="right") - 1
        scale = np.array([lv.scale for lv in levels])[level]
        top = rows - np.array([lv.row for lv in levels])[level]
        ww, wh = self.cascade.window
        return np.stack([left * scale, top * scale, ww * scale, wh * scale], axis=1).reshape(-1, 4)

    def detect(self, gray, scale_factor=1.1, min_neighbors=3, min_size=30, max_size=None,
               near=None) -> np.ndarray:
        """Faces in a gray image, grouped as OpenCV groups them: [n, 4] (x, y, w, h); `near`: see detect_raw."""
        raw = self.detect_raw(gray, scale_factor, min_size, max_size, near)
        return group_boxes(raw, min_neighbors)


def _similar_pairs(boxes: np.ndarray, eps: float) -> np.ndarray:
    """[n, n] bool: whether rectangles i and j are alike by OpenCV's SimilarRects (every edge within eps times
    the mean of the smaller sizes). Computed for i > j with a = boxes[i], b = boxes[j] in the float operations'
    order of `abs(a.x + a.w - b.x - b.w) <= eps * (min(a.w, b.w) + min(a.h, b.h)) * 0.5`, and mirrored."""
    x, y, w, h = boxes.T
    delta = eps * (np.minimum(w[:, None], w[None, :]) + np.minimum(h[:, None], h[None, :])) * 0.5
    close = ((np.abs(x[:, None] - x[None, :]) <= delta) & (np.abs(y[:, None] - y[None, :]) <= delta)
             & (np.abs(x[:, None] + w[:, None] - x[None, :] - w[None, :]) <= delta)
             & (np.abs(y[:, None] + h[:, None] - y[None, :] - h[None, :]) <= delta))
    lower = np.tril(close, -1)
    return lower | lower.T | np.eye(len(boxes), dtype=bool)


def _clusters(boxes: np.ndarray, eps: float) -> list[list[int]]:
    """The rectangles' indices partitioned into classes of (transitively) similar ones, in order of first
    appearance."""
    if not len(boxes):
        return []
    pairs = _similar_pairs(boxes, eps)
    label = np.arange(len(boxes))
    while True:  # each box takes the smallest label among its neighbours until nothing changes
        smaller = np.where(pairs, label[None, :], len(boxes)).min(axis=1)
        if np.array_equal(smaller, label):
            break
        label = smaller
    groups: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(int(label[i]), []).append(i)
    return list(groups.values())


def _inside(box: np.ndarray, other: np.ndarray, eps: float) -> bool:
    """Whether rectangle `box` lies within `other` grown by eps of its size on every side."""
    x, y, w, h = box
    ox, oy, ow, oh = other
    dx, dy = ow * eps, oh * eps
    return bool(x >= ox - dx and y >= oy - dy and x + w <= ox + ow + dx and y + h <= oy + oh + dy)


def group_boxes(boxes, min_neighbors: int, eps: float = 0.2) -> np.ndarray:
    """Merge overlapping raw detections as OpenCV's groupRectangles does; keep groups of > min_neighbors.

    boxes: rectangles (x, y, w, h), [n, 4]; returns the merged ones, [m, 4]."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if min_neighbors <= 0:
        return boxes
    # a group's mean summed one rectangle after another, as OpenCV sums it
    merged = [(sum(boxes[i] for i in g) / len(g), len(g)) for g in _clusters(boxes, eps) if len(g) > min_neighbors]
    # drop a rectangle that lies inside a bigger, better supported one (OpenCV's last grouping step)
    kept = [box for k, (box, n) in enumerate(merged)
            if not any(j != k and n2 >= max(3, n) and _inside(box, other, eps) for j, (other, n2) in enumerate(merged))]
    return np.array(kept).reshape(-1, 4)
