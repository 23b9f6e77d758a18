"""LivePortrait's keypoint and head-pose maths: from M's raw outputs to the keypoints W warps with.

M gives, for one image, canonical keypoints x_c [B, K, 3], an expression deformation delta [B, K, 3], a scale s,
a translation t and the head pose as three logits over 66 bins of 3 degrees. The image's keypoints are (eq. 2)

    x = s * (x_c R + delta) + t        keypoints are row vectors; t moves x and y only (its z is dropped)

with R the rotation of pitch, yaw and roll. To animate a source image by a driving video, `RelativeMotion` moves
the source's pose, expression, scale and translation by each driving frame's change since the first driving
frame, then (by default) applies the stitching network, as the original pipeline does.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

NUM_BINS = 66        # head-pose bins per angle
BIN_DEGREES = 3      # each bin's width
DEGREES_OFFSET = 97.5  # degree = expected bin * 3 - 97.5, so the 66 bins span -97.5 .. 97.5


def bins_to_degrees(logits):
    """Pose logits [B, 66] -> degrees [B]: the softmax expectation of the bin index, scaled to degrees."""
    index = torch.arange(NUM_BINS, dtype=logits.dtype, device=logits.device)
    return torch.sum(F.softmax(logits, dim=1) * index, dim=1) * BIN_DEGREES - DEGREES_OFFSET


def _matrix(rows):
    """3x3 nested lists of [B] tensors -> [B, 3, 3]."""
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def rotation_matrix(pitch, yaw, roll):
    """Angles in degrees ([B] or [B, 1]) -> R [B, 3, 3] such that keypoint rows rotate as x @ R.

    R is the transpose of Rz(roll) Ry(yaw) Rx(pitch) (pitch about x, yaw about y, roll about z).
    """
    x, y, z = (angle.reshape(-1) / 180 * math.pi for angle in (pitch, yaw, roll))
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rot_x = _matrix([[one, zero, zero], [zero, torch.cos(x), -torch.sin(x)], [zero, torch.sin(x), torch.cos(x)]])
    rot_y = _matrix([[torch.cos(y), zero, torch.sin(y)], [zero, one, zero], [-torch.sin(y), zero, torch.cos(y)]])
    rot_z = _matrix([[torch.cos(z), -torch.sin(z), zero], [torch.sin(z), torch.cos(z), zero], [zero, zero, one]])
    return (rot_z @ rot_y @ rot_x).transpose(1, 2)


def kp_info(raw: dict) -> dict:
    """M's raw outputs -> 'pitch', 'yaw', 'roll' in degrees [B, 1], 'kp' and 'exp' [B, K, 3], 't' [B, 3],
    'scale' [B, 1]."""
    b = raw["kp"].shape[0]
    info = {angle: bins_to_degrees(raw[angle])[:, None] for angle in ("pitch", "yaw", "roll")}
    info.update(kp=raw["kp"].reshape(b, -1, 3), exp=raw["exp"].reshape(b, -1, 3), t=raw["t"], scale=raw["scale"])
    return info


def info_rotation(info: dict):
    """R [B, 3, 3] of a kp_info dict."""
    return rotation_matrix(info["pitch"], info["yaw"], info["roll"])


def _xy(t):
    """t [B, 3] -> [B, 1, 3] with its z set to 0, to add to keypoints [B, K, 3]."""
    return F.pad(t[:, None, :2], (0, 1))


def transform_keypoint(info: dict, rotation=None):
    """Eq. 2: s * (x_c R + delta) + (tx, ty, 0) -> the image's keypoints [B, K, 3]."""
    rotation = info_rotation(info) if rotation is None else rotation
    x = info["kp"] @ rotation + info["exp"]
    return x * info["scale"][..., None] + _xy(info["t"])


def stitch(network, kp_source, kp_driving):
    """The stitching network's correction of kp_driving [B, K, 3] for the source's kp_source ([B or 1, K, 3]):
    63 offsets added to the keypoints, then (tx, ty) added to every keypoint's x and y."""
    b, k = kp_driving.shape[:2]
    kp_source = kp_source.expand_as(kp_driving)
    delta = network(torch.cat([kp_source.reshape(b, -1), kp_driving.reshape(b, -1)], dim=1))  # [B, 3K + 2]
    moved = kp_driving + delta[:, :3 * k].reshape(b, k, 3)
    return moved + F.pad(delta[:, 3 * k:3 * k + 2].reshape(b, 1, 2), (0, 1))


# ----------------------------------------------------------------------------------------------------------------
# Relative motion


def hull_volume(points) -> float:
    """Volume of the convex hull of 3-D points [N, 3] (what scipy.spatial.ConvexHull(points).volume gives).

    Every triangle of points with all other points on one side of its plane is a face of the hull; the hull is
    the union of the tetrahedra from those faces to an inner point (the centroid). Checking all N^3/6 triangles
    is quick for LivePortrait's 21 keypoints. Points in general position are assumed: four or more points on one
    face would count that face more than once, which keypoints predicted in floating point do not produce.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(pts) < 4:
        return 0.0
    i, j, k = np.array(list(itertools.combinations(range(len(pts)), 3))).T
    normals = np.cross(pts[j] - pts[i], pts[k] - pts[i])                         # [T, 3]
    side = np.einsum("tc,tnc->tn", normals, pts[None] - pts[i][:, None])          # [T, N]
    tol = 1e-12 * max(np.abs(pts).max(), 1.0) ** 3
    face = (side <= tol).all(axis=1) | (side >= -tol).all(axis=1)
    inner = pts.mean(axis=0)
    return float(np.abs(np.einsum("tc,tc->t", normals[face], inner - pts[i[face]])).sum() / 6)


def motion_multiplier(kp_source, kp_first_driving) -> float:
    """How much the expression-friendly mode scales driving motion: sqrt(hull volume) of the source's keypoints
    over that of the first frame's animated keypoints (first batch element of each)."""
    source = kp_source[0].detach().cpu().numpy()
    first = kp_first_driving[0].detach().cpu().numpy()
    return float(np.sqrt(hull_volume(source)) / np.sqrt(hull_volume(first)))


class RelativeMotion:
    """The keypoints W warps with for each driving frame of a video, from one source image.

    The original's defaults for a source image and a driving video: relative motion over every region (pose,
    expression, scale, translation), 'expression-friendly' (motion scaled by `motion_multiplier`, measured at the
    first frame), stitching on, a driving multiplier of 1. Lip normalisation and eye/lip retargeting need face
    landmarks and are not applied (as in the original with them off). Call it with each frame's kp_info in order:
    the first call fixes the reference frame. A call may carry several frames [N, ...] for one source [1, ...].
    """

    def __init__(self, source_info: dict, stitching=None, expression_friendly=True, multiplier=1.0):
        self.source = source_info
        self.rotation = info_rotation(source_info)
        self.x_s = transform_keypoint(source_info, self.rotation)   # [1, K, 3]
        self.stitching = stitching
        self.expression_friendly = expression_friendly
        self.multiplier = multiplier
        self.first = None          # the first driving frame's kp_info and rotation
        self.first_animated = None
        self.gain = 1.0

    def animated(self, info: dict, rotation):
        """Eq. 2 with the source's x_c and each factor moved by the driving frame's change since the first."""
        first, first_rotation = self.first
        source = self.source
        rotation = (rotation @ first_rotation.transpose(1, 2)) @ self.rotation
        exp = source["exp"] + (info["exp"] - first["exp"])
        scale = source["scale"] * (info["scale"] / first["scale"])
        t = source["t"] + (info["t"] - first["t"])
        return scale[..., None] * (source["kp"] @ rotation + exp) + _xy(t)

    def __call__(self, driving_info: dict):
        """kp_info of driving frames [N, ...] -> kp_driving [N, K, 3] for W (with x_s as kp_source)."""
        rotation = info_rotation(driving_info)
        if self.first is None:
            self.first = ({key: value[:1] for key, value in driving_info.items()}, rotation[:1])
        x_d = self.animated(driving_info, rotation)
        if self.expression_friendly:
            if self.first_animated is None:
                self.first_animated = x_d[:1]
                self.gain = motion_multiplier(self.x_s, self.first_animated)
            x_d = (x_d - self.first_animated) * self.gain + self.x_s
        if self.stitching is not None:
            x_d = stitch(self.stitching, self.x_s, x_d)
        return self.x_s + (x_d - self.x_s) * self.multiplier
