"""Source images and frames in the shapes the model wants.

    img = load_image("photo.png")                 # uint8 RGB HxWx3 from JPEG/PNG/RGBA/grayscale/16-bit, any path
    sq = square_resize(img, 256)                  # centre-cropped to a square, then resized: uint8 256x256x3
    x = frames_to_tensor([sq])                    # float32 [1, 3, 256, 256] in 0..1
    frames = tensor_to_frames(x)                  # list of uint8 RGB HxWx3
"""
from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from fomm_core.errors import FommError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # what a folder of photos holds

# A few kilobytes of PNG or JPEG can declare 60000x60000 pixels (10 GB decoded): the size is read from the
# header and refused before decoding. 64 megapixels is far beyond any photo the model (256 px) needs.
MAX_PIXELS = 64_000_000

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_NO_LENGTH = {0x01, 0xD8, *range(0xD0, 0xD8)}


def _png_size(data: bytes):
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return None


def _gif_size(data: bytes):
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    return None


def _bmp_size(data: bytes):
    if data[:2] != b"BM" or len(data) < 26:
        return None
    if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", data[18:22])
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)  # a negative height means top-down rows


def _webp_size(data: bytes):
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or len(data) < 30:
        return None
    kind = data[12:16]
    if kind == b"VP8X":  # canvas size minus one, 24 bits each
        return (int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
    if kind == b"VP8L" and data[20] == 0x2F:  # 14 bits each, minus one
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _jpeg_size(data: bytes):
    """Walk the markers to the first start-of-frame (EXIF and other segments come first)."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            i += 2
            continue
        if marker == 0xDA:  # the image data starts and no frame header came before it
            return None
        if marker in _JPEG_SOF and i + 9 <= len(data):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return (w, h) if h else None  # height 0: given later in a DNL segment
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")   # classic and BigTIFF, both byte orders
_TIFF_VALUES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}         # SHORT, LONG, LONG8
_TIFF_DIMENSIONS = {256: 0, 257: 1, 322: 2, 323: 3}             # ImageWidth, ImageLength, TileWidth, TileLength
_TIFF_MAX_PAGES = 1024


def _tiff_page(data: bytes, at: int, order: str, big: bool):
    """(width, height, tile width, tile height, the next page's offset) of the page whose IFD is at `at`."""
    count_fmt, entry, value_at = ("Q", 20, 12) if big else ("H", 12, 8)
    head = struct.calcsize(count_fmt)
    (n,) = struct.unpack_from(order + count_fmt, data, at)
    dims = [0, 0, 0, 0]
    for i in range(n):
        e = at + head + i * entry
        tag, kind = struct.unpack_from(order + "HH", data, e)
        if tag in _TIFF_DIMENSIONS and kind in _TIFF_VALUES:
            # a single SHORT, LONG or LONG8 sits in the entry itself, at its start
            dims[_TIFF_DIMENSIONS[tag]] = struct.unpack_from(order + _TIFF_VALUES[kind][0], data, e + value_at)[0]
    (following,) = struct.unpack_from(order + ("Q" if big else "I"), data, at + head + n * entry)
    return (*dims, following)


def _tiff_size(data: bytes):
    """The largest (width, height) any page or tile of a TIFF declares: what libtiff allocates by. Every page is
    looked at (a small first page can hide a huge second one) and a tile counts as a page. None when the data
    is not a TIFF or its pages cannot be read."""
    if data[:4] not in _TIFF_MAGICS:
        return None
    order, big = ("<" if data[:2] == b"II" else ">"), data[2:4] in (b"+\x00", b"\x00+")
    try:
        at = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)[0]
        largest, seen = None, set()
        while at and at not in seen and len(seen) < _TIFF_MAX_PAGES:
            seen.add(at)
            w, h, tw, th, at = _tiff_page(data, at, order, big)
            if not (w and h):
                return None
            for size in ((w, h), (tw, th)):
                if largest is None or size[0] * size[1] > largest[0] * largest[1]:
                    largest = size
        return largest
    except (struct.error, OverflowError):  # an offset or a count past the end of the data
        return None


def image_size(data: bytes):
    """(width, height) from a PNG, JPEG, GIF, BMP, WebP or TIFF header without decoding; None for other formats.

    For a TIFF: the largest page or tile (see _tiff_size)."""
    for reader in (_png_size, _jpeg_size, _gif_size, _bmp_size, _webp_size, _tiff_size):
        size = reader(data)
        if size:
            return int(size[0]), int(size[1])
    return None


def check_pixels(width: int, height: int, where) -> None:
    """A FommError when a picture (an image, a video's frame) has more than MAX_PIXELS pixels."""
    if width * height > MAX_PIXELS:
        raise FommError(f"{where} is {width}x{height} pixels ({width * height / 1e6:,.0f} megapixels), more than "
                        f"the {MAX_PIXELS / 1e6:g} megapixels allowed; shrink it first (the model uses 256x256).")


def decode_image(data: bytes, where="image") -> np.ndarray:
    """Encoded image bytes -> uint8 RGB HxWx3 (alpha composited on white, gray -> RGB, 16-bit -> 8-bit).

    An image over MAX_PIXELS is refused from its header, before any pixel is decoded (other formats: after);
    so is a TIFF whose header cannot be read (libtiff would size its buffers by what it reads there).
    """
    import cv2
    size = image_size(data) if data else None
    if size:
        check_pixels(*size, where)
    elif data[:4] in _TIFF_MAGICS:
        raise FommError(f"{where} is a TIFF whose size cannot be read from its header (damaged?); "
                        "save it as PNG or JPEG.")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if arr is None or arr.size == 0:
        raise FommError(f"{where} is not an image OpenCV can read (use JPEG or PNG).")
    check_pixels(arr.shape[1], arr.shape[0], where)
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
    """uint8 RGB frames -> float32 tensor [N, 3, H, W] in 0..1 (value / 255).

    `frames`: a list of HxWx3 arrays, one [N, H, W, 3] array, or one HxWx3 frame (-> N = 1).
    The one frame -> tensor conversion; tensor_to_frames is its inverse.
    """
    import torch
    batch = np.stack(list(frames)) if not isinstance(frames, np.ndarray) else frames
    if batch.ndim == 3:
        batch = batch[None]
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)


def tensor_to_frames(tensor) -> list:
    """Float tensor [N, 3, H, W] -> list of uint8 RGB HxWx3 arrays: clipped to 0..1, x255, rounded half up.

    The one tensor -> frame conversion: frames_to_tensor followed by tensor_to_frames gives the frames back exactly.
    """
    arr = tensor.detach().float().clamp(0, 1).mul(255.0).add_(0.5).to("cpu").permute(0, 2, 3, 1)
    arr = arr.numpy().astype(np.uint8)
    return [np.ascontiguousarray(a) for a in arr]


def psnr(a, b, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of two same-shape images or batches (torch or numpy, values 0..peak)."""
    mse = float(((a - b) ** 2).mean()) if not hasattr(a, "float") else float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(peak * peak / mse)
