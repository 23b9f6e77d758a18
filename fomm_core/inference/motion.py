"""Motion transfer of the original demo: relative keypoints and Jacobians, movement scale, best start frame.

Keypoints are dicts {'value': [B, K, 2], 'jacobian': [B, K, 2, 2]} as the keypoint detector returns them.
torch is imported lazily so that `import fomm_core.inference.motion` costs nothing.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class BestFrame(NamedTuple):
    """The driving frame relative motion should start from, and how it was chosen."""
    index: int
    how: str            # the method, in words
    stand_in: bool      # the original's landmark matching could not run: worth telling the user


def inverse_2x2(m):
    """Closed-form inverse of a batch of 2x2 matrices [..., 2, 2] (no torch.inverse: no LAPACK call, no GPU sync,
    exportable). Same numbers as torch.inverse for the well-conditioned Jacobians FOMM predicts."""
    import torch
    a, b = m[..., 0, 0], m[..., 0, 1]
    c, d = m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    inv = torch.stack([torch.stack([d, -b], dim=-1), torch.stack([-c, a], dim=-1)], dim=-2)
    return inv / det[..., None, None]


def hull_area(points) -> float:
    """Area of the convex hull of 2-D points [N, 2] (Andrew's monotone chain + shoelace); 0 for < 3 points.

    What the original gets from scipy.spatial.ConvexHull(points).volume, without scipy.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = np.unique(pts, axis=0)  # sorted by x, then y
    if len(pts) < 3:
        return 0.0

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def half(points_in_order):
        chain = []
        for p in points_in_order:
            while len(chain) >= 2 and cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    hull = np.array(half(pts) + half(pts[::-1]))
    if len(hull) < 3:
        return 0.0
    x, y = hull[:, 0], hull[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def movement_scale(kp_source, kp_driving_initial) -> float:
    """sqrt(source hull area / initial driving hull area), from batch element 0 as the original; 1 if degenerate."""
    source = hull_area(kp_source["value"][0].detach().float().cpu().numpy())
    driving = hull_area(kp_driving_initial["value"][0].detach().float().cpu().numpy())
    if driving <= 0 or source <= 0:
        return 1.0
    return math.sqrt(source) / math.sqrt(driving)


def normalize_kp(kp_source, kp_driving, kp_driving_initial, adapt_movement_scale=False,
                 use_relative_movement=False, use_relative_jacobian=False, *, scale=None, inv_initial_jacobian=None):
    """The original demo's `normalize_kp`: the driving keypoints' motion since the initial frame, applied to the source.

    value    = (kp_driving - kp_driving_initial) * scale + kp_source
    jacobian = kp_driving.J @ inv(kp_driving_initial.J) @ kp_source.J
    `scale` and `inv_initial_jacobian` may be passed precomputed (they are constant for a video; the original
    recomputes them every frame). Without relative movement the driving keypoints are returned as they are.
    """
    if scale is None:
        scale = movement_scale(kp_source, kp_driving_initial) if adapt_movement_scale else 1.0
    kp_new = dict(kp_driving)
    if use_relative_movement:
        kp_new["value"] = (kp_driving["value"] - kp_driving_initial["value"]) * scale + kp_source["value"]
        if use_relative_jacobian and "jacobian" in kp_driving:
            if inv_initial_jacobian is None:
                inv_initial_jacobian = inverse_2x2(kp_driving_initial["jacobian"])
            kp_new["jacobian"] = kp_driving["jacobian"] @ inv_initial_jacobian @ kp_source["jacobian"]
    return kp_new


# ----------------------------------------------------------------------------------------------------------------
# Best start frame


def _normalised_shape(points):
    """Centre a point set and scale it to unit hull area (the original's landmark normalisation)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts - pts.mean(axis=0, keepdims=True)
    area = hull_area(pts)
    return pts / math.sqrt(area) if area > 0 else pts


def closest_shape(source_points, driving_points) -> int:
    """Index of the driving point set [N][P, 2] nearest (squared distance, after normalisation) to the source's."""
    src = _normalised_shape(source_points)
    dists = [float(((_normalised_shape(d) - src) ** 2).sum()) for d in driving_points]
    return int(np.argmin(dists)) if dists else 0


def find_best_frame(source, driving_frames, kp_detector=None) -> BestFrame:
    """The BestFrame (index, how, stand_in) of the driving frame whose pose best matches the source, where relative motion should start.

    source: [1, 3, H, W] tensor or HxWx3 array in 0..1; driving_frames: a sequence of the same (or [N, 3, H, W]).
    The original compares face_alignment's 68 landmarks. With that library installed we do the same; without it,
    and given a keypoint detector (images -> {'value': [B, K, 2]}, e.g. an animator's `keypoints`), we compare
    the model's own keypoints the same way (centred, unit hull area) --
    a landmark-free stand-in, not the original's method; with neither we say so and return frame 0.
    """
    frames = list(driving_frames)
    if not frames:
        return BestFrame(0, "no driving frames", False)
    try:
        import face_alignment  # noqa: F401  (optional, heavy: downloads its own weights)
    except ImportError:
        face_alignment = None
    if face_alignment is not None:
        try:
            return _best_by_landmarks(face_alignment, source, frames)
        except Exception as err:  # a landmark failure must not stop the animation
            reason = f"face_alignment failed ({type(err).__name__})"
    else:
        reason = "no landmark library (face_alignment) installed"
    if kp_detector is None:
        return BestFrame(0, f"{reason}; starting from the first frame", True)
    import torch
    with torch.inference_mode():
        src_kp = kp_detector(_as_tensor(source))["value"][0].float().cpu().numpy()
        drv_kp = [kp_detector(_as_tensor(f))["value"][0].float().cpu().numpy() for f in frames]
    return BestFrame(closest_shape(src_kp, drv_kp), f"{reason}; matched the model's keypoints instead", True)


def _as_tensor(image):
    import torch
    t = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.asarray(image, dtype=np.float32))
    if t.dim() == 3 and t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3, 4):  # HWC array
        t = t.permute(2, 0, 1)
    if t.dim() == 3:
        t = t.unsqueeze(0)
    return t.float()


def _to_uint8_hwc(image):
    from fomm_core.media.images import tensor_to_frames
    return tensor_to_frames(_as_tensor(image)[:1, :3])[0]


def _best_by_landmarks(face_alignment, source, frames):
    enum = getattr(face_alignment.LandmarksType, "_2D", None) or getattr(face_alignment.LandmarksType, "TWO_D")
    aligner = face_alignment.FaceAlignment(enum, flip_input=True, device="cpu")
    found = aligner.get_landmarks(_to_uint8_hwc(source))
    if not found:
        raise ValueError("no face in the source")
    src = found[0]
    best, best_dist = 0, float("inf")
    src_n = _normalised_shape(src)
    for i, frame in enumerate(frames):
        marks = aligner.get_landmarks(_to_uint8_hwc(frame))
        if not marks:
            continue
        dist = float(((_normalised_shape(marks[0]) - src_n) ** 2).sum())
        if dist < best_dist:
            best, best_dist = i, dist
    return BestFrame(best, "face_alignment landmarks (as the original)", False)
