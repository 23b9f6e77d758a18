"""Procedural training clips: a textured, face-like sprite on a textured background.

The head moves with smooth translation, rotation and scale; the eyes blink and the mouth opens (non-rigid parts),
so a model has to learn both rigid and local motion. Everything follows from the seed (numpy Generator), drawing
is cv2 at 4x resolution then downsampled (anti-aliased). Also: datasets of (source, driving) frame pairs, from
synthetic clips or from a folder of the user's own video files (read as every video file is: `iter_frames`).
"""
from __future__ import annotations

from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from fomm_core.errors import FommError
from fomm_core.media.video import VIDEO_EXTENSIONS, iter_frames

SUPERSAMPLE = 4


def _texture(rng, size, base, amount, blur):
    """Smooth random texture around colour `base`: [size, size, 3] float32 in 0..255."""
    noise = rng.normal(0.0, 1.0, (max(2, size // blur), max(2, size // blur), 3)).astype(np.float32)
    noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.asarray(base, np.float32) + amount * noise, 0, 255)


def _face_params(rng):
    """Appearance of one clip (colours, proportions) and the parameters of its motion."""
    skin = rng.uniform([90, 110, 150], [170, 190, 240])          # BGR-ish order does not matter: RGB here
    return {
        "skin": skin[::-1].copy(),
        "hair": rng.uniform(10, 110, 3),
        "eye": rng.uniform(0, 90, 3),
        "mouth": rng.uniform([120, 10, 20], [220, 80, 90]),
        "axes": rng.uniform([0.22, 0.28], [0.28, 0.36]),           # head half-width/height, fraction of size
        "eye_dx": rng.uniform(0.09, 0.13), "eye_y": rng.uniform(-0.10, -0.04),
        "mouth_y": rng.uniform(0.12, 0.18), "mouth_w": rng.uniform(0.07, 0.11),
        # motion: each degree of freedom is a sum of two sinusoids with random frequency and phase
        "freq": rng.uniform(0.02, 0.09, (6, 2)), "phase": rng.uniform(0, 2 * np.pi, (6, 2)),
        "amp": np.array([0.16, 0.12, 25.0, 0.12, 1.0, 1.0]) * rng.uniform(0.5, 1.0, 6),
        "blink_period": rng.integers(14, 30), "blink_phase": rng.integers(0, 14),
    }


def _motion(p, t):
    """(dx, dy, angle_deg, scale, eye_open 0..1, mouth_open 0..1) at frame t."""
    wave = (np.sin(2 * np.pi * p["freq"] * t + p["phase"])).mean(axis=1) * p["amp"]
    dx, dy, angle, ds = wave[:4]
    mouth = 0.5 + 0.5 * np.sin(2 * np.pi * p["freq"][4, 0] * 2 * t + p["phase"][4, 0])
    k = (t + p["blink_phase"]) % p["blink_period"]
    eye = 1.0 if k > 3 else abs(k - 1.5) / 1.5                       # a quick close-open every period
    return dx, dy, angle, 1.0 + ds, eye, mouth


def _draw_face(canvas, p, centre, axes, angle, eye_open, mouth_open, s):
    """Draw the face onto `canvas` (float32 RGB, supersampled) in the head's rotated frame."""
    cx, cy = centre
    rad = np.deg2rad(angle)
    rot = np.array([[np.cos(rad), -np.sin(rad)], [np.sin(rad), np.cos(rad)]])

    def at(u, v):  # head-relative offsets (fractions of the size) -> pixel coordinates
        x, y = rot @ np.array([u * s, v * s])
        return int(round(cx + x)), int(round(cy + y))

    def ell(u, v, a, b, color, extra=0.0):
        cv2.ellipse(canvas, at(u, v), (max(1, int(a * s)), max(1, int(b * s))), angle + extra, 0, 360,
                    tuple(float(c) for c in color), -1, cv2.LINE_AA)

    ax, ay = axes
    ell(0, -0.06, ax * 1.05, ay * 0.85, p["hair"])                       # hair behind the top of the head
    head = np.zeros(canvas.shape[:2], np.uint8)
    cv2.ellipse(head, at(0, 0), (int(ax * s), int(ay * s)), angle, 0, 360, 255, -1, cv2.LINE_AA)
    mask = (head.astype(np.float32) / 255)[..., None]
    canvas[:] = canvas * (1 - mask) + p["skin_tex"] * mask               # textured skin
    for side in (-1, 1):
        u = side * p["eye_dx"]
        ell(u, p["eye_y"], 0.055, 0.035, (240, 240, 235))                  # white of the eye
        ell(u, p["eye_y"], 0.026, 0.026 * max(eye_open, 0.08), p["eye"])   # iris squashed by the blink
        ell(u, p["eye_y"] - 0.065, 0.05, 0.012, p["hair"])                 # eyebrow
        if eye_open < 0.5:                                                  # eyelid over a closed eye
            ell(u, p["eye_y"], 0.056, 0.036 * (1 - eye_open), p["skin"] * 0.85)
    ell(0, 0.03, 0.018, 0.05, p["skin"] * 0.8)                             # nose
    ell(0, p["mouth_y"], p["mouth_w"], 0.012 + 0.05 * mouth_open, p["mouth"])
    ell(0, p["mouth_y"], p["mouth_w"] * 0.8, 0.004 + 0.035 * mouth_open, (40, 10, 20))  # inside of the mouth


def make_clip(seed: int, frames: int = 32, size: int = 64) -> np.ndarray:
    """A deterministic clip: uint8 [frames, size, size, 3] RGB."""
    rng = np.random.default_rng(seed)
    big = size * SUPERSAMPLE
    p = _face_params(rng)
    p["skin_tex"] = _texture(rng, big, p["skin"], 10, 16)
    background = _texture(rng, big, rng.uniform(30, 220, 3), 35, 40)
    # a few background blobs so the background is not just noise
    for _ in range(4):
        c = rng.uniform(0, big, 2).astype(int)
        cv2.circle(background, tuple(int(v) for v in c), int(rng.uniform(0.05, 0.2) * big),
                   tuple(float(v) for v in rng.uniform(0, 255, 3)), -1, cv2.LINE_AA)
    base_centre = rng.uniform(0.42, 0.58, 2)
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        dx, dy, angle, scale, eye, mouth = _motion(p, t)
        canvas = background.copy()
        centre = ((base_centre[0] + dx) * big, (base_centre[1] + dy) * big)
        _draw_face(canvas, p, centre, p["axes"] * scale, angle, eye, mouth, big * scale)
        small = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
        out[t] = np.clip(small + 0.5, 0, 255).astype(np.uint8)
    return out


def read_video_frames(path, size: int, max_frames: int = 300) -> np.ndarray:
    """The first `max_frames` frames of a video file as shown (rotation applied), scaled by ffmpeg to
    size x size: uint8 [T, size, size, 3] RGB. Raises FommError for a file ffmpeg cannot decode."""
    frames = iter_frames(path, size=(size, size))
    try:
        return np.stack(list(islice(frames, max_frames)))
    finally:
        frames.close()   # ends ffmpeg when the video is longer than max_frames


class PairSampler:
    """(source, driving) pairs of frames of the same clip, as float tensors [3, H, W] in 0..1.

    `clips` is a function index -> uint8 clip, `num_clips` how many there are. Index i picks clip i % num_clips
    and two frames from a Generator seeded by (seed, i), so a dataset is reproducible.
    """

    def __init__(self, clip_fn, num_clips: int, seed: int = 0, length: int = 10**6):
        self.clip_fn, self.num_clips, self.seed, self.length = clip_fn, num_clips, seed, length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        clip = self.clip_fn(index % self.num_clips)
        rng = np.random.default_rng((self.seed, index))
        from fomm_core.media.images import frames_to_tensor
        pair = frames_to_tensor(clip[rng.choice(len(clip), size=2, replace=False)])
        return pair[0], pair[1]


def synthetic_pairs(size: int = 64, num_clips: int = 256, frames: int = 32, seed: int = 0, first_clip_seed=1000):
    """Pairs from synthetic clips with seeds first_clip_seed .. first_clip_seed+num_clips-1 (cached)."""
    cache = {}

    def clip(i):
        if i not in cache:
            cache[i] = make_clip(first_clip_seed + i, frames, size)
        return cache[i]
    return PairSampler(clip, num_clips, seed)


def _readable_clip(path, size: int) -> np.ndarray | None:
    """The clip's frames, or None when ffmpeg cannot decode it (a damaged file among good ones is left out)."""
    try:
        return read_video_frames(path, size)
    except FommError:
        return None


def folder_pairs(folder, size: int = 64, seed: int = 0):
    """Pairs from every video file in a folder (the extensions in media.video.VIDEO_EXTENSIONS), frames scaled
    to size x size."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
    clips = [c for c in (_readable_clip(p, size) for p in paths) if c is not None and len(c) >= 2]
    if not clips:
        raise FommError(f"no readable video with at least 2 frames in {folder}; give a folder of mp4 clips.")
    return PairSampler(lambda i: clips[i], len(clips), seed)
