"""Source images and frames in the shapes the model wants.

    img = load_image("photo.png")                 # uint8 RGB HxWx3 from JPEG/PNG/RGBA/grayscale/16-bit, any path
    sq = square_resize(img, 256)                  # centre-cropped to a square, then resized: uint8 256x256x3
    x = frames_to_tensor([sq])                    # float32 [1, 3, 256, 256] in 0..1
    frames = tensor_to_frames(x)                  # list of uint8 RGB HxWx3
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import FommError


def decode_image(data: bytes, where="image") -> np.ndarray:
    """Encoded image bytes -> uint8 RGB HxWx3 (alpha composited on white, gray -> RGB, 16-bit -> 8-bit)."""
    import cv2
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if arr is None or arr.size == 0:
        raise FommError(f"{where} is not an image OpenCV can read (use JPEG or PNG).")
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr.astype(np.float32) * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    channels = arr.shape[2]
    if channels == 1:
        return np.repeat(arr, 3, axis=2)
    if channels == 2:  # gray + alpha
        gray, alpha = arr[:, :, :1].astype(np.float32), arr[:, :, 1:].astype(np.float32) / 255.0
        return np.repeat((gray * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8), 3, axis=2)
    if channels == 4:  # BGRA: composite on white (transparent cut-outs should not turn black)
        bgr, alpha = arr[:, :, :3].astype(np.float32), arr[:, :, 3:].astype(np.float32) / 255.0
        arr = (bgr * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(arr[:, :, 2::-1])  # BGR -> RGB


def load_image(path) -> np.ndarray:
    """Read an image file as uint8 RGB HxWx3. Reads the bytes ourselves, so non-ASCII paths work on Windows."""
    path = Path(path)
    if not path.exists():
        raise FommError(f"source image {path} does not exist.")
    if not path.is_file():
        raise FommError(f"{path} is not a file; give an image such as photo.jpg.")
    return decode_image(path.read_bytes(), where=str(path))


def center_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of an HxWxC image (a view, no copy)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top:top + side, left:left + side]


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Square image -> size x size: area averaging when shrinking (no aliasing), cubic when enlarging."""
    import cv2
    if image.shape[0] == size and image.shape[1] == size:
        return image
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interp)


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square, then resize to size x size (what every input goes through)."""
    return np.ascontiguousarray(resize(center_square(image), size))


def frames_to_tensor(frames):
    """List of uint8 RGB HxWx3 (or one [N, H, W, 3] array) -> float32 tensor [N, 3, H, W] in 0..1."""
    import torch
    batch = np.stack(list(frames)) if not isinstance(frames, np.ndarray) else frames
    if batch.ndim == 3:
        batch = batch[None]
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)


frame_to_tensor = frames_to_tensor  # the name used in some notes


def tensor_to_frames(tensor) -> list:
    """Float tensor [N, 3, H, W] in 0..1 -> list of uint8 RGB HxWx3 arrays."""
    arr = tensor.detach().float().clamp(0, 1).mul(255.0).add_(0.5).to("cpu").permute(0, 2, 3, 1)
    arr = arr.numpy().astype(np.uint8)
    return [np.ascontiguousarray(a) for a in arr]
