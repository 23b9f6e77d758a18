"""Face detection on a real photo planted at a known box, the tracker's smoothing, square crops.

Also home of the helpers the crop and live tests share: `planted_frame`, `paste_face`, `encode_clip` and
`write_face_clip`.
"""
import functools
import subprocess
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from fomm_core.errors import FommError  # noqa: E402
from fomm_core.media.face import Box, FaceDetector, FaceTracker, crop_square, iou, square_box  # noqa: E402
from fomm_core.media.haar import SHIPPED_CASCADE, NumpyHaarDetector, group_boxes, load_cascade  # noqa: E402

FACE_JPG = Path(__file__).parent / "data" / "faces" / "astronaut_face.jpg"
FACE_IN_PATCH = Box(49, 50, 95, 95)  # see tests/data/faces/README.md


def background(h, w, seed=0):
    """A smooth, non-uniform background (gradient + blurred noise) with no face in it."""
    return _background(h, w, seed).copy()


@functools.lru_cache(maxsize=8)
def _background(h, w, seed):
    # the same for every frame of a clip: made once (a 100-s clip's 2500 frames took 14 s of blurring)
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 9)
    ramp = np.linspace(40, 160, w, dtype=np.float32)[None, :, None]
    return np.clip(noise.astype(np.float32) * 0.5 + ramp, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _face_patch(scale):
    patch = cv2.imread(str(FACE_JPG))
    side = round(patch.shape[0] * scale)
    return cv2.resize(patch, (side, side), interpolation=cv2.INTER_LINEAR)


def planted_frame(h=480, w=640, x=300, y=100, scale=1.3, seed=0):
    """A frame (BGR) with the test face pasted at (x, y), scaled; returns (frame, the face's box in it)."""
    patch = _face_patch(scale)
    side = patch.shape[0]
    frame = background(h, w, seed)
    frame[y:y + side, x:x + side] = patch
    f = FACE_IN_PATCH
    return frame, Box(x + f.x * scale, y + f.y * scale, f.w * scale, f.h * scale)


def paste_face(frame, x, y, scale):
    """Paste the test photo, scaled, with its top-left corner at (x, y); whatever falls outside the frame is cut
    off. Returns the face's whole box (it may reach past the frame's edge)."""
    patch = _face_patch(scale)
    side = patch.shape[0]
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
    if x0 < x1 and y0 < y1:
        frame[y0:y1, x0:x1] = patch[y0 - y:y1 - y, x0 - x:x1 - x]
    f = FACE_IN_PATCH
    return Box(x + f.x * scale, y + f.y * scale, f.w * scale, f.h * scale)


def encode_clip(path, frames, *, fps=25, audio=False):
    """A real H.264 mp4 of BGR frames (bundled ffmpeg); with audio: a sine track of the same length."""
    import imageio_ffmpeg
    h, w = frames[0].shape[:2]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={len(frames) / fps}",
                "-c:a", "aac", "-shortest"]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "16", str(path)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)
    return Path(path)


def write_face_clip(path, positions, *, size=(320, 240), fps=25, audio=True, scale=0.8):
    """A real H.264 mp4 (bundled ffmpeg) of the test face at `positions` [(x, y)], one per frame, and the
    face boxes per frame. With audio: a sine track of the same length."""
    w, h = size
    frames, boxes = [], []
    for i, (x, y) in enumerate(positions):
        frame, box = planted_frame(h, w, x, y, scale, seed=1)
        frames.append(frame)
        boxes.append(box)
    return encode_clip(path, frames, fps=fps, audio=audio), boxes


def test_shipped_cascade_parses_into_stages():
    c = load_cascade(str(SHIPPED_CASCADE))
    assert c.window == (24, 24)
    assert len(c.stage_end) == 25 and c.stage_end[-1] == len(c.weak_threshold) == c.rects.shape[0]
    # every feature rectangle lies inside the 24x24 window
    x, y, w, h = (c.rects[..., i] for i in range(4))
    used = c.weights != 0
    assert (x[used] + w[used] <= 24).all() and (y[used] + h[used] <= 24).all()


@pytest.mark.parametrize("x,y,scale", [(300, 100, 1.3), (40, 200, 1.0), (150, 20, 2.0)])
def test_finds_the_face_planted_at_a_known_box(x, y, scale):
    frame, truth = planted_frame(x=x, y=y, scale=scale)
    boxes = FaceDetector().detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    assert boxes, "no face found"
    assert iou(boxes[0], truth) >= 0.5, (boxes[0], truth)


def test_numpy_evaluator_finds_the_face_at_full_resolution():
    frame, truth = planted_frame(h=300, w=400, x=120, y=60, scale=1.0)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    boxes = NumpyHaarDetector().detect(gray, 1.1, 3, min_size=60)
    assert len(boxes) == 1 and iou(Box(*boxes[0]), truth) >= 0.7


def test_no_face_in_a_background_without_one():
    assert FaceDetector().detect(background(240, 320, seed=3)) == []


# What OpenCV 4.14 (opencv-python 4.14.0.94 from PyPI, in a throwaway venv)'s CascadeClassifier(SHIPPED_CASCADE).detectMultiScale(gray, 1.1, 3, minSize=(40, 40)) returns
# for planted_frame(h, w, x, y, scale): recorded, because OpenCV 5 (what a fresh install gets) has no
# CascadeClassifier. The frames are the same pixels under OpenCV 4 and 5 (checked when recording).
OPENCV_BOXES = [
    ((240, 320, 60, 20, 1.0), (110, 71, 93, 93)),
    ((240, 320, 150, 40, 0.8), (188, 80, 78, 78)),
    ((300, 400, 200, 100, 0.7), (234, 136, 67, 67)),
]


@pytest.mark.parametrize("frame_args,opencv_box", OPENCV_BOXES)
def test_numpy_evaluator_agrees_with_opencv(frame_args, opencv_box):
    h, w, x, y, scale = frame_args
    frame, _ = planted_frame(h=h, w=w, x=x, y=y, scale=scale)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    classifier = getattr(cv2, "CascadeClassifier", None)
    if classifier is not None:  # an OpenCV that still has it must give the recorded answer
        theirs = classifier(str(SHIPPED_CASCADE)).detectMultiScale(gray, 1.1, 3, minSize=(40, 40))
        assert [tuple(map(int, box)) for box in theirs] == [opencv_box]
    ours = NumpyHaarDetector().detect(gray, 1.1, 3, min_size=40)
    assert len(ours) == 1
    # OpenCV rounds the group's mean box to whole pixels; ours keeps the fractions
    assert max(abs(a - b) for a, b in zip(ours[0], opencv_box)) < 1.0


def test_search_near_a_face_finds_what_the_whole_frame_search_finds():
    frame, truth = planted_frame(h=240, w=320, x=150, y=40, scale=0.8)
    other = paste_face(frame, 0, 110, 0.65)                  # a second face, lower left
    frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    detector = FaceDetector()
    everywhere = detector.detect(frame)
    assert len(everywhere) == 2 and max(iou(b, other) for b in everywhere) >= 0.5
    ours = max(everywhere, key=lambda b: iou(b, truth))
    assert iou(ours, truth) >= 0.6
    # where a tracker expects it: a little off and a little larger than it is
    guess = Box(ours.x + 0.1 * ours.w, ours.y - 0.1 * ours.h, 1.1 * ours.w, 1.1 * ours.h)
    assert detector.detect(frame, near=[guess]) == [ours]    # the same box to the last bit, not the other face
    assert detector.detect(frame, near=[Box(270, 0, 40, 40)]) == []   # nothing near a spot without a face
    assert detector.detect(frame, near=[]) == []


def test_grouping_joins_chains_of_similar_boxes():
    # a is like b and b like c, but a is not like c: one group all the same, as OpenCV's partition makes it
    a, b, c, far = (0, 0, 100, 100), (15, 0, 100, 100), (30, 0, 100, 100), (300, 300, 50, 50)
    assert group_boxes([a, far, c, b], 2).tolist() == [[15, 0, 100, 100]]
    assert group_boxes([a, far, c], 0).tolist() == [list(a), list(far), list(c)]
    assert group_boxes([a, far, c], 1).tolist() == []


def test_not_a_haar_cascade_is_one_sentence(tmp_path):
    bad = tmp_path / "x.xml"
    bad.write_text("<opencv_storage><something/></opencv_storage>")
    with pytest.raises(FommError, match="not a Haar cascade"):
        load_cascade(str(bad))


def test_tracker_ignores_jitter_follows_moves_and_holds_through_dropouts():
    t = FaceTracker(smoothing=0.5, dead_band=0.06)
    first = t.update([Box(100, 100, 100, 100)])
    assert first == Box(100, 100, 100, 100)
    # detector noise of 3 px: the box stays exactly where it was
    assert t.update([Box(103, 98, 101, 101)]) == first
    # a real move of 40 px: followed half way (exponential smoothing), not jumped to
    moved = t.update([Box(140, 100, 100, 100)])
    assert moved.x == pytest.approx(120) and moved.y == pytest.approx(100)
    # detection drops out: the last box is held
    assert t.update([]) == moved and t.update([]) == moved
    # a far-away second face does not steal the track while ours is briefly missing
    assert t.update([Box(500, 400, 60, 60)]) == moved
    # two faces: the one overlapping the track wins over the larger one
    assert t.update([Box(400, 300, 200, 200), Box(121, 101, 100, 100)]) == moved


def test_tracker_forgets_after_max_missing():
    t = FaceTracker(max_missing=2)
    t.update([Box(0, 0, 50, 50)])
    assert t.update([]) is not None and t.update([]) is not None
    assert t.update([]) is None


def test_square_box_margin_and_frame_limits():
    sq = square_box(Box(100, 100, 80, 100), increase=0.1)
    assert sq.w == sq.h == 120 and sq.center == pytest.approx((140, 150))
    # near the edge: shifted inside, not shrunk
    edge = square_box(Box(0, 0, 100, 100), increase=0.1, frame_shape=(480, 640))
    assert (edge.x, edge.y, edge.w) == (0, 0, 120)
    # larger than the frame: shrunk to fit
    big = square_box(Box(0, 0, 300, 300), increase=0.5, frame_shape=(200, 640))
    assert big.h == 200 and big.y == 0


def test_crop_square_pads_by_repeating_the_edge():
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[:, :50] = 200
    out = crop_square(frame, Box(-20, 0, 100, 100), 64)
    assert out.shape == (64, 64, 3)
    assert out[:, :10].min() == 200  # the padded left strip copies the bright edge, no black bar
