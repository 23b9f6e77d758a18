"""FOMM training losses: image-pyramid L1 reconstruction (in place of the VGG perceptual loss) and equivariance."""
from __future__ import annotations

import torch
from torch import nn

from fomm_core.model.blocks import AntiAliasInterpolation2d


class ImagePyramid(nn.Module):
    """image -> {scale: image downsampled by scale} with the anti-aliased downsampler (scale 1 is the input)."""

    def __init__(self, scales, channels=3):
        super().__init__()
        self.scales = list(scales)
        self.down = nn.ModuleList(AntiAliasInterpolation2d(channels, s) for s in self.scales)

    def forward(self, x):
        return [d(x) for d in self.down]


def pyramid_l1(pyramid: ImagePyramid, prediction, target):
    """Sum over the pyramid's scales of the mean absolute difference."""
    return sum((p - t).abs().mean() for p, t in zip(pyramid(prediction), pyramid(target)))


def inverse_2x2(m):
    """Closed-form inverse of [..., 2, 2] matrices."""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    return torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / det[..., None, None]


def equivariance_losses(kp_detector, image, kp, warp):
    """(value loss, jacobian loss): keypoints of the warped image, mapped back by the warp, match `kp`.

    The warped image is image sampled at T(x), so a keypoint at y in it sits at T(y) in the original.
    """
    warped = warp.warp_image(image)
    kp_w = kp_detector(warped)
    value = (kp["value"] - warp.warp_coordinates(kp_w["value"])).abs().mean()
    if "jacobian" not in kp:
        return value, torch.zeros((), device=image.device)
    # J(original) should equal dT(y) @ J(warped); compare inv(J_orig) @ dT @ J_warped with the identity
    jac = warp.jacobian(kp_w["value"]) @ kp_w["jacobian"]
    eye = torch.eye(2, device=image.device, dtype=jac.dtype)
    jacobian = (eye - inverse_2x2(kp["jacobian"]) @ jac).abs().mean()
    return value, jacobian
