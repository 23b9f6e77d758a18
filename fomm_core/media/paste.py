"""Paste-back: results at model size put back into the full-resolution photo they were cropped from.

The model sees a square of the photo (its face crop, or its centre square) at 256x256; the rest of the photo
is never animated. Each result frame is resized to the square's size in the photo and blended in through a
feathered mask, so the output has the photo's size and no seam: the mask is 0 on a thin outer margin of the
square (where the model's warps meet its padding), rises smoothly across a band, and is 1 inside. A side of
the square that lies on the photo's own edge has nothing to blend with, so the mask stays 1 up to it.

The photo's colours are kept: the model's reconstruction can be a few levels lighter or darker than the photo,
which a soft seam would still show as a halo. The mean difference across the blending band, measured once on
the first frame (so it never flickers), is added to every frame inside the mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fomm_core.errors import FommError
from fomm_core.media.face import Box

MARGIN = 0.02         # of the square's side: outer ring where the mask is 0 (the warps' border)
FEATHER = 0.12        # of the square's side: the band over which the mask rises from 0 to 1
MAX_COLOUR_SHIFT = 24.0   # levels: a larger mean difference is the animation's content, not a colour cast
# H.264 level 5.1 (what browsers and phones decode in hardware) holds at most 4096x2304 = 9.4 Mpixel a frame;
# a larger photo is scaled down to 4K UHD's pixel count, keeping its aspect.
MAX_PIXELS = 3840 * 2160


def output_size(width: int, height: int) -> tuple[int, int]:
    """(w, h) of the pasted output: the photo's size, within MAX_PIXELS, both even (yuv420p needs even sides)."""
    w, h = _within_limit(width, height)
    return w - w % 2, h - h % 2


def _within_limit(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, (MAX_PIXELS / float(width * height)) ** 0.5)
    return (width, height) if scale >= 1.0 else (int(width * scale), int(height * scale))


def _ramp(length: int, fade_start: bool, fade_end: bool, side: float) -> np.ndarray:
    """[length] float32: the mask along one axis of the square, faded at the ends that lie inside the photo."""
    pos = np.arange(length, dtype=np.float32) + 0.5
    margin, feather = MARGIN * side, max(FEATHER * side, 1.0)

    def rise(dist):
        t = np.clip((dist - margin) / feather, 0.0, 1.0)
        return t * t * (3 - 2 * t)               # smoothstep: no kink where the band starts or ends

    ramp = np.ones(length, np.float32)
    if fade_start:
        ramp *= rise(pos)
    if fade_end:
        ramp *= rise(length - pos)
    return ramp


@dataclass
class PasteBack:
    """Puts model-size frames back into `photo`. Call it with each RGB result frame; returns a new photo-size
    frame. `box` is the square the model saw, in `photo`'s pixels (whole numbers, inside the photo)."""
    photo: np.ndarray            # H x W x 3 uint8 RGB, even sides: the output frames' background
    box: Box
    mask: np.ndarray             # [bh, bw, 1] float32 0..1 over the part of `box` inside `photo`
    under: np.ndarray            # [bh, bw, 3] float32: the photo under the mask, converted once
    shift: np.ndarray | None = None   # [3] levels added to the animation; measured on the first frame

    @property
    def size(self) -> tuple[int, int]:
        """(w, h) of the output frames."""
        return self.photo.shape[1], self.photo.shape[0]

    def _region(self) -> tuple[int, int, int, int]:
        x, y, w, h = self.box.ints()
        return y, y + self.mask.shape[0], x, x + self.mask.shape[1]

    def _resized(self, frame: np.ndarray) -> np.ndarray:
        import cv2
        x, y, w, h = self.box.ints()
        interp = cv2.INTER_AREA if w < frame.shape[1] else cv2.INTER_CUBIC
        big = cv2.resize(frame, (w, h), interpolation=interp)
        return big[:self.mask.shape[0], :self.mask.shape[1]].astype(np.float32)

    def _measure_shift(self, animated: np.ndarray, under: np.ndarray) -> np.ndarray:
        band = self.mask * (1.0 - self.mask)     # weight: only where photo and animation are blended
        total = float(band.sum())
        if total <= 0:                           # the square fills the photo: no band, nothing to match
            return np.zeros(3, np.float32)
        diff = ((under - animated) * band).sum(axis=(0, 1)) / total
        return np.clip(diff, -MAX_COLOUR_SHIFT, MAX_COLOUR_SHIFT).astype(np.float32)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        top, bottom, left, right = self._region()
        under = self.under
        animated = self._resized(frame)
        if self.shift is None:
            self.shift = self._measure_shift(animated, under)
        blended = under + self.mask * (animated + self.shift - under)
        out = self.photo.copy()
        out[top:bottom, left:right] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return out


def paste_back(photo: np.ndarray, box: Box) -> PasteBack:
    """The PasteBack for a photo (uint8 RGB, full size) and the square of it the model saw.

    A photo over MAX_PIXELS is scaled down first, the box with it; an odd last row or column is dropped.
    """
    import cv2
    height, width = photo.shape[:2]
    if min(width, height) < 2:
        raise FommError(f"a {width}x{height} photo is too small to paste an animation back into.")
    fitted = _within_limit(width, height)
    if fitted != (width, height):
        photo = cv2.resize(photo, fitted, interpolation=cv2.INTER_AREA)
        box = box.scaled(fitted[0] / float(width))
    w, h = output_size(width, height)
    photo = np.ascontiguousarray(photo[:h, :w])
    x, y, side, _ = box.ints()
    x, y = min(max(x, 0), w - 1), min(max(y, 0), h - 1)
    bw, bh = min(side, w - x), min(side, h - y)
    box = Box(float(x), float(y), float(side), float(side))
    ramp_x = _ramp(bw, fade_start=x > 0, fade_end=x + side < w, side=side)
    ramp_y = _ramp(bh, fade_start=y > 0, fade_end=y + side < h, side=side)
    mask = (ramp_y[:, None] * ramp_x[None, :])[..., None]
    return PasteBack(photo, box, mask, photo[y:y + bh, x:x + bw].astype(np.float32))
