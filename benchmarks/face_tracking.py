"""Face tracking speed for `crop`, `animate --crop` and `live`: the old way against the new one, side by side.

    python benchmarks/face_tracking.py [--size 1280x720] [--seconds 10] [--repeat 1] [--keep clip.mp4]

Builds a realistic test clip first: the real test photo (tests/data/faces/astronaut_face.jpg, public domain)
pasted into a textured room-like scene (shelves of books, a window, a poster with text, camera noise), moving
and slowly growing and shrinking along a known smooth path, encoded as H.264 by the bundled ffmpeg. Then times

  old: the cascade searching the whole frame at every checked frame (every fps/8-th), what `track_faces`
       did before it tracked (now rescan=0), on every frame as `iter_frames` decodes it;
  new: `find_face_tracks` as `crop` runs it: searches near the followed face, the whole frame every 2 s,
       and reads ffmpeg's frames a few ahead in a thread (frames between checks are not queued).

both with decoding (the honest figure) and on frames decoded beforehand, and checks that both give the same
tracks and how well the boxes match the true face boxes. Prints frames/s and the ratio.
"""
from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FACE_JPG = ROOT / "tests" / "data" / "faces" / "astronaut_face.jpg"
FACE_IN_PATCH = (49, 50, 95, 95)   # the face's box in the photo, see tests/data/faces/README.md


def room(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A room-like BGR scene with edges and texture everywhere: wall, shelves of books, a window, a poster."""
    import cv2
    rng = np.random.default_rng(seed)
    wall = np.linspace(150, 110, h, dtype=np.float32)[:, None, None] * np.array([0.9, 1.0, 1.1], np.float32)
    blotches = cv2.GaussianBlur(rng.normal(0, 12, (h, w, 3)).astype(np.float32), (0, 0), w / 60)
    img = np.clip(wall + blotches, 0, 255).astype(np.uint8)
    shelf_w = w // 4
    for top in range(h // 8, h - h // 5, h // 5):          # shelves of books on the left
        x = w // 40
        while x < shelf_w:
            bw, bh = int(rng.integers(w // 160, w // 50)), int(rng.integers(h // 10, h // 6))
            cv2.rectangle(img, (x, top + h // 5 - bh), (x + bw, top + h // 5), rng.integers(30, 220, 3).tolist(), -1)
            cv2.line(img, (x, top + h // 5 - bh), (x, top + h // 5), (20, 20, 20), 1)
            x += bw + 1
        cv2.rectangle(img, (0, top + h // 5), (shelf_w + w // 40, top + h // 5 + h // 60), (40, 60, 90), -1)
    wx, wy = w - w // 4, h // 10                           # a window on the right
    cv2.rectangle(img, (wx, wy), (w - w // 30, wy + h // 3), (235, 240, 245), -1)
    cv2.line(img, ((wx + w - w // 30) // 2, wy), ((wx + w - w // 30) // 2, wy + h // 3), (80, 80, 80), max(2, w // 200))
    cv2.line(img, (wx, wy + h // 6), (w - w // 30, wy + h // 6), (80, 80, 80), max(2, w // 200))
    px, py = w - w // 4, h // 2 + h // 12                  # a poster with text below it
    cv2.rectangle(img, (px, py), (px + w // 6, py + h // 4), (200, 190, 120), -1)
    for i, text in enumerate(("FOMM", "face", "crop 2026")):
        cv2.putText(img, text, (px + w // 80, py + (i + 1) * h // 16), cv2.FONT_HERSHEY_SIMPLEX, w / 1600,
                    (30, 30, 120), max(1, w // 640), cv2.LINE_AA)
    cv2.rectangle(img, (0, h - h // 8), (w, h), (60, 80, 110), -1)     # a desk
    return img


def face_path(i: int, n: int, w: int, h: int, base: float):
    """The photo's top-left corner and scale at frame i of n: a slow sway, a nod and a lean in and out."""
    t = i / n
    scale = base * (1 + 0.1 * math.sin(2 * math.pi * 1.3 * t))
    side = round(192 * scale)
    cx = w / 2 + 0.22 * w * math.sin(2 * math.pi * t)
    cy = h / 2 + 0.06 * h * math.sin(4 * math.pi * t)
    return round(cx - side / 2), round(cy - side / 2), side


def write_clip(path: Path, size: tuple[int, int], seconds: float, fps: int = 25):
    """Encode the clip; returns the true face box (x, y, w, h) per frame."""
    import cv2
    import imageio_ffmpeg
    w, h = size
    n = round(seconds * fps)
    photo, scene, rng = cv2.imread(str(FACE_JPG)), room(h, w), np.random.default_rng(1)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "20",
           str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    truth = []
    for i in range(n):
        x, y, side = face_path(i, n, w, h, base=h / 330)
        frame = scene.copy()
        frame[y:y + side, x:x + side] = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        noisy = frame.astype(np.int16) + rng.integers(-3, 4, frame.shape, dtype=np.int16)   # sensor noise
        proc.stdin.write(np.clip(noisy, 0, 255).astype(np.uint8).tobytes())
        k = side / 192
        fx, fy, fw, fh = FACE_IN_PATCH
        truth.append((x + fx * k, y + fy * k, fw * k, fh * k))
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("ffmpeg could not encode the test clip")
    return truth


def read_all(path: Path):
    """Every frame (RGB), decoded by the one reader `find_face_tracks` uses too."""
    from fomm_core.media.video import iter_frames
    return iter_frames(path)


def timed(fn, repeat: int):
    """(result, best seconds of `repeat` runs)."""
    best, result = math.inf, None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return result, best


def live_costs(frames) -> str:
    """The live cropper's detector (240 px) on every 10th frame: ms for the whole frame and near the face."""
    from fomm_core.media.face import FaceDetector
    detector, whole, near = FaceDetector(max_side=240, min_face=0.15), [], []
    for frame in frames[::10]:
        started = time.perf_counter()
        found = detector.detect(frame)
        whole.append(time.perf_counter() - started)
        if found:
            started = time.perf_counter()
            detector.detect(frame, near=found[:1])
            near.append(time.perf_counter() - started)
    ms = lambda xs: f"{1000 * float(np.median(xs)):.1f} ms" if xs else "-"   # noqa: E731
    return f"live's detector (240 px), median: whole frame {ms(whole)}, near the face {ms(near)}"


def agreement(old, new, truth) -> str:
    from fomm_core.media.face import Box, iou
    spans = lambda faces: [(t.start, t.end, len(t.boxes)) for t in faces.tracks]   # noqa: E731
    same = spans(old) == spans(new)
    pairs = [(a, b) for x, y in zip(old.tracks, new.tracks) for a, b in zip(x.boxes, y.boxes)]
    worst = min((iou(a, b) for a, b in pairs), default=0.0)
    every = max(1, round(new.fps / 8))
    hits = [iou(b, Box(*truth[t.start + k * every])) for t in new.tracks for k, b in enumerate(t.boxes)]
    return (f"tracks: old {len(old.tracks)}, new {len(new.tracks)}, same frames: {'yes' if same else 'NO'}; "
            f"box IoU new vs old: min {worst:.4f}; new vs true face: min {min(hits):.3f}, "
            f"mean {sum(hits) / len(hits):.3f} over {len(hits)} checked frames")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1280x720", help="frame size WxH (default 1280x720)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each way; the best is reported")
    parser.add_argument("--keep", type=Path, help="write the test clip here (default: a temp folder)")
    args = parser.parse_args(argv)
    from fomm_core.media.crop import find_face_tracks, track_faces
    w, h = map(int, args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.keep or Path(tmp) / "face.mp4"
        truth = write_clip(clip, (w, h), args.seconds)
        n = len(truth)
        print(f"clip: {clip.name} {w}x{h}, {n} frames at 25 fps, one face of {truth[0][2]:.0f}..."
              f"{max(t[2] for t in truth):.0f} px")
        old, t_old = timed(lambda: track_faces(read_all(clip), 25.0, rescan=0), args.repeat)
        new, t_new = timed(lambda: find_face_tracks(clip), args.repeat)
        frames = list(read_all(clip))
        _, t_old_mem = timed(lambda: track_faces(frames, 25.0, rescan=0), args.repeat)
        _, t_new_mem = timed(lambda: track_faces(frames, 25.0), args.repeat)
        live = live_costs(frames)
    print(f"{'':28}{'old':>10}{'new':>10}{'ratio':>8}")
    print(f"{'frames/s, decoding included':28}{n / t_old:10.1f}{n / t_new:10.1f}{t_old / t_new:7.1f}x")
    print(f"{'frames/s, frames in memory':28}{n / t_old_mem:10.1f}{n / t_new_mem:10.1f}{t_old_mem / t_new_mem:7.1f}x")
    print(agreement(old, new, truth))
    print(live)
    return 0


if __name__ == "__main__":
    sys.exit(main())
