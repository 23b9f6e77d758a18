"""Paste-back: results at model size put back into the full-resolution photo they were cropped from.

The model sees a square of the photo (its face crop, or its centre square) at 256x256; the rest of the photo
is never animated. Each result frame is resized to the square's size in the photo and blended in through a soft
mask, so the output has the photo's size and no seam. The mask is the family's (`Feather`): for FOMM and TPSMM,
whose squares are tight around the face, a disc inscribed in the square, 0 on a thin outer margin (where the
model's warps meet its padding) and rising smoothly across a band, so no straight edge of the square shows and
its corners stay the photo's; for LivePortrait the original's feathered square. A side of the square that lies on
the photo's own edge has nothing to blend with, so the mask reaches that edge at full strength.

The photo's colours are kept: the model's reconstruction can be a few levels lighter or darker than the photo,
which a soft seam would still show as a halo. The mean difference across the blending band is measured on every
frame and followed smoothly (an exponential average over about four frames: no flicker, and a change of light
in the animation is matched within a few frames); it is added to the frame inside the mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fomm_core.errors import FommError
from fomm_core.media.face import Box

MAX_COLOUR_SHIFT = 24.0   # levels: a larger mean difference is the animation's content, not a colour cast
SHIFT_FOLLOW = 0.25       # of each frame's measured shift taken in: about four frames' memory, no flicker
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


@dataclass(frozen=True)
class Feather:
    """A paste-back mask, in fractions of the square's side: 0 over an outer `margin`, rising to 1 across a band
    of `width` (smoothstep, or a straight line), its outline a square with corners rounded by `corner` (0.5: a
    disc). The rise follows the distance to that outline, so a rounded corner rises as evenly as a side.

    The default suits FOMM and TPSMM, whose crops are tight around the face (1.2 face boxes): their warps pull
    the padding in at the border, so a margin is left out, the band is wide, and a disc leaves no straight edge
    nor corner of the square to see. LivePortrait's crop is 2.3 faces wide and its stitching network keeps the
    crop's edges where the photo has them, so its own mask (mask_template.png) is a square, 1 but for a straight
    rise across the outer 16 of 512 pixels, its corners rounded by as much."""
    margin: float = 0.02
    width: float = 0.12
    smooth: bool = True
    corner: float = 0.5

    def rise(self, t: np.ndarray) -> np.ndarray:
        """0..1 across the band -> the mask's value."""
        t = np.clip(t, 0.0, 1.0)
        return t * t * (3 - 2 * t) if self.smooth else t   # smoothstep: no kink where the band starts or ends


def _reach(side: int, fade_start: bool, fade_end: bool, inner: float) -> np.ndarray:
    """[side] float32 along one axis: how far past the outline's straight part each pixel lies (<= 0 within
    it). A side not faded (it lies on the photo's edge) is reached at full strength: its half counts as centre."""
    offset = np.arange(side, dtype=np.float32) + 0.5 - side / 2
    if not fade_start:
        offset = np.maximum(offset, 0.0)
    if not fade_end:
        offset = np.minimum(offset, 0.0)
    return np.abs(offset) - inner


def make_mask(side: int, fades: tuple, feather: Feather) -> np.ndarray:
    """[side, side] float32 0..1: the mask over the whole square. fades: (left, top, right, bottom), whether
    each side lies inside the photo (and so is faded)."""
    left, top, right, bottom = fades
    margin, band = feather.margin * side, max(feather.width * side, 1.0)
    corner = min(feather.corner * side, side / 2 - margin)
    inner = side / 2 - margin - corner               # half the straight part of each side of the outline
    qx = _reach(side, left, right, inner)[None, :]
    qy = _reach(side, top, bottom, inner)[:, None]
    # signed distance to the rounded square (negative inside), as for any rounded box
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - corner
    return feather.rise(-outside / band).astype(np.float32)


@dataclass
class PasteBack:
    """Puts model-size frames back into `photo`. Call it with each RGB result frame; returns a new photo-size
    frame. `box` is the square the model saw, in `photo`'s pixels (whole numbers); it may reach past the photo's
    edges (a LivePortrait crop), and only the part inside is pasted."""
    photo: np.ndarray            # H x W x 3 uint8 RGB, even sides: the output frames' background
    box: Box
    mask: np.ndarray             # [bh, bw, 1] float32 0..1 over the part of `box` inside `photo`
    under: np.ndarray            # [bh, bw, 3] float32: the photo under the mask, converted once
    shift: np.ndarray | None = None   # [3] levels added to the animation; measured every frame, followed smoothly

    @property
    def size(self) -> tuple[int, int]:
        """(w, h) of the output frames."""
        return self.photo.shape[1], self.photo.shape[0]

    def _region(self) -> tuple[int, int, int, int]:
        """top, bottom, left, right of the part of the box inside the photo, in the photo's pixels."""
        x, y, _, _ = self.box.ints()
        top, left = max(y, 0), max(x, 0)
        return top, top + self.mask.shape[0], left, left + self.mask.shape[1]

    def _resized(self, frame: np.ndarray) -> np.ndarray:
        import cv2
        x, y, w, h = self.box.ints()
        interp = cv2.INTER_AREA if w < frame.shape[1] else cv2.INTER_CUBIC
        big = cv2.resize(frame, (w, h), interpolation=interp)
        top, left = max(-y, 0), max(-x, 0)
        return big[top:top + self.mask.shape[0], left:left + self.mask.shape[1]].astype(np.float32)

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
        measured = self._measure_shift(animated, under)
        self.shift = measured if self.shift is None else self.shift + SHIFT_FOLLOW * (measured - self.shift)
        blended = under + self.mask * (animated + self.shift - under)
        out = self.photo.copy()
        out[top:bottom, left:right] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return out


def paste_back(photo: np.ndarray, box: Box, feather: Feather | None = None) -> PasteBack:
    """The PasteBack for a photo (uint8 RGB, full size) and the square of it the model saw (`feather`: how the
    family's mask rises at the square's edges).

    A photo over MAX_PIXELS is scaled down first, the box with it; an odd last row or column is dropped.
    """
    import cv2
    feather = feather or Feather()
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
    side = max(side, 1)
    left, top, right, bottom = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
    if right <= left or bottom <= top:
        raise FommError("the square the model saw lies outside the photo, so there is nothing to paste back into.")
    box = Box(float(x), float(y), float(side), float(side))
    mask = make_mask(side, (x > 0, y > 0, x + side < w, y + side < h), feather)
    mask = mask[top - y:bottom - y, left - x:right - x, None]
    return PasteBack(photo, box, mask, photo[top:bottom, left:right].astype(np.float32))
