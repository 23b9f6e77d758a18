"""Face clips for int8 calibration and its quality check: real portraits moved by random similarity transforms,
plus synthetic faces. Never the user's clip: a model calibrated on one video is tuned to that video.

    for source, driving in face_pairs(256, seed=0):   # [1, 3, S, S] and [N, 3, S, S] float32 in 0..1
        ...
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FACES = ("astronaut_face.jpg", "grace_hopper_face.jpg")
_HERE = Path(__file__).resolve().parent


def real_faces(size: int) -> list:
    """The shipped portraits, RGB uint8 [size, size, 3]."""
    import cv2
    faces = []
    for name in FACES:
        bgr = cv2.imread(str(_HERE / name))
        faces.append(cv2.resize(bgr[:, :, ::-1], (size, size), interpolation=cv2.INTER_AREA))
    return faces


def moving_clip(face: np.ndarray, frames: int, rng) -> np.ndarray:
    """The face moved smoothly: rotation within 8 degrees, scale within 8 %, shift within 6 % of the side,
    brightness within 10 % -> uint8 [frames, S, S, 3] (the first frame is the face as it is)."""
    import cv2
    size = face.shape[0]
    end = rng.uniform(-1, 1, 5) * (8.0, 0.08, 0.06 * size, 0.06 * size, 0.10)
    out = np.empty((frames,) + face.shape, np.uint8)
    for t in range(frames):
        angle, scale, dx, dy, light = end * (t / max(frames - 1, 1))
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1 + scale)
        matrix[:, 2] += (dx, dy)
        moved = cv2.warpAffine(face, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        out[t] = np.clip(moved * (1 + light), 0, 255).astype(np.uint8)
    return out


def _tensor(frames: np.ndarray):
    import torch
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)


def face_pairs(size: int, seed: int = 0, frames: int = 4, synthetic: int = 2) -> list:
    """(source [1, 3, S, S], driving [frames, 3, S, S]) pairs: every face drives every other one.

    Faces: the shipped portraits and `synthetic` synthetic ones (seeded by `seed`, so the held-out set can use
    other identities and other motions than the calibration set).
    """
    from fomm_core.train.synthetic import make_clip
    rng = np.random.default_rng(seed)
    faces = real_faces(size) + [make_clip(10_000 + 97 * seed + i, 1, size)[0] for i in range(synthetic)]
    pairs = []
    for i, source in enumerate(faces):
        for j, driver in enumerate(faces):
            if i != j:
                pairs.append((_tensor(source[None]), _tensor(moving_clip(driver, frames, rng))))
    return pairs
