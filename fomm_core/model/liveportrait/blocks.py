"""The 3-D building blocks of LivePortrait's F and W: residual and up/down conv blocks over feature volumes, the
3-D hourglass of the dense motion network, and the keypoint maths in 3-D.

A volume is [B, C, D, H, W]; the up/down blocks change H and W only (D, the 16 depth slices, is kept).
Coordinates are (x, y, z) in [-1, 1], x to the right, y down, z into the picture: the order grid_sample reads.
Parameter names follow the original code (conv/norm, conv1/conv2/norm1/norm2) so the published files load strictly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock3d(nn.Module):
    """Pre-activation residual block on a volume: x + conv2(relu(norm2(conv1(relu(norm1(x))))))."""

    def __init__(self, in_features, kernel_size=3, padding=1):
        super().__init__()
        self.conv1 = nn.Conv3d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.conv2 = nn.Conv3d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm3d(in_features, affine=True)
        self.norm2 = nn.BatchNorm3d(in_features, affine=True)

    def forward(self, x):
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class DownBlock3d(nn.Module):
    """conv -> batch norm -> ReLU -> average pool over 1x2x2 (halves H and W, keeps D)."""

    def __init__(self, in_features, out_features, kernel_size=3, padding=1):
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm3d(out_features, affine=True)
        self.pool = nn.AvgPool3d(kernel_size=(1, 2, 2))

    def forward(self, x):
        return self.pool(F.relu(self.norm(self.conv(x))))


class UpBlock3d(nn.Module):
    """nearest 1x2x2 upsample -> conv -> batch norm -> ReLU (doubles H and W, keeps D)."""

    def __init__(self, in_features, out_features, kernel_size=3, padding=1):
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm3d(out_features, affine=True)

    def forward(self, x):
        out = F.interpolate(x, scale_factor=(1, 2, 2))  # nearest
        return F.relu(self.norm(self.conv(out)))


def _width(block_expansion, max_features, level):
    return min(max_features, block_expansion * (2 ** level))


class Hourglass3d(nn.Module):
    """A 3-D U-Net: num_blocks DownBlock3d, then as many UpBlock3d, each output concatenated with the skip of its
    size, and a last conv -> norm -> ReLU. [B, in_features, D, H, W] -> [B, out_filters, D, H, W] with out_filters =
    block_expansion + in_features; H and W must divide by 2**num_blocks.

    The original splits this into `encoder.down_blocks` and `decoder.{up_blocks, conv, norm}`, the names the
    published files use, so the two halves are kept as submodules.
    """

    def __init__(self, block_expansion, in_features, num_blocks=3, max_features=256):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.down_blocks = nn.ModuleList(
            DownBlock3d(in_features if i == 0 else _width(block_expansion, max_features, i),
                        _width(block_expansion, max_features, i + 1))
            for i in range(num_blocks))
        self.decoder = nn.Module()
        # the deepest up block sees the bottom volume alone; the others their input concatenated with a skip
        self.decoder.up_blocks = nn.ModuleList(
            UpBlock3d((1 if i == num_blocks - 1 else 2) * _width(block_expansion, max_features, i + 1),
                      _width(block_expansion, max_features, i))
            for i in reversed(range(num_blocks)))
        self.out_filters = block_expansion + in_features
        self.decoder.conv = nn.Conv3d(self.out_filters, self.out_filters, kernel_size=3, padding=1)
        self.decoder.norm = nn.BatchNorm3d(self.out_filters, affine=True)

    def forward(self, x):
        skips = [x]
        for block in self.encoder.down_blocks:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.decoder.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return F.relu(self.decoder.norm(self.decoder.conv(out)))


def make_coordinate_grid_3d(spatial_size, dtype=torch.float32, device=None):
    """[D, H, W, 3] grid of (x, y, z), each running exactly from -1 to 1 over its axis."""
    d, h, w = spatial_size
    x = 2 * (torch.arange(w, dtype=dtype, device=device) / (w - 1)) - 1
    y = 2 * (torch.arange(h, dtype=dtype, device=device) / (h - 1)) - 1
    z = 2 * (torch.arange(d, dtype=dtype, device=device) / (d - 1)) - 1
    return torch.stack([x.view(1, 1, w).expand(d, h, w),
                        y.view(1, h, 1).expand(d, h, w),
                        z.view(d, 1, 1).expand(d, h, w)], dim=3)


def kp2gaussian_3d(kp, spatial_size, kp_variance):
    """Keypoints [B, K, 3] -> unnormalised Gaussian blobs [B, K, D, H, W] of variance kp_variance."""
    grid = make_coordinate_grid_3d(spatial_size, kp.dtype, kp.device)          # [D, H, W, 3]
    diff = grid[None, None] - kp[:, :, None, None, None, :]                     # [B, K, D, H, W, 3]
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / kp_variance)
