"""Warping module (W in the paper): the source's feature volume moved to the driving keypoints.

The dense motion network makes a 3-D flow from the two keypoint sets: each keypoint k proposes the translation
that takes the driving keypoint to the source one, the background proposes no motion, and a 3-D hourglass picks,
voxel by voxel, a soft mix of these 22 proposals (and a 2-D occlusion map). The feature volume is sampled along
that flow, flattened to 2-D (32 channels x 16 slices = 512) and passed through two convs for the generator.

Shapes for the 256-px crop: B batch, K = 21 keypoints, volume [B, 32, 16, 64, 64], compressed to 4 channels for
the motion estimate, flow [B, 16, 64, 64, 3] of source (x, y, z) in [-1, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fomm_core.model.liveportrait.blocks import Hourglass3d, kp2gaussian_3d, make_coordinate_grid_3d

KP_VARIANCE = 0.01  # of the Gaussian blobs drawn around each keypoint


class DenseMotionNetwork(nn.Module):
    """(feature volume, kp_driving, kp_source) -> 'mask' [B, K+1, D, H, W] (softmax over the proposals),
    'deformation' [B, D, H, W, 3] and, with estimate_occlusion_map, 'occlusion_map' [B, 1, H, W]."""

    def __init__(self, block_expansion, num_blocks, max_features, num_kp, feature_channel, reshape_depth, compress,
                 estimate_occlusion_map=True):
        super().__init__()
        # input: for the background and each keypoint, a heatmap difference and the compressed volume moved by it
        self.hourglass = Hourglass3d(block_expansion, in_features=(num_kp + 1) * (compress + 1),
                                     max_features=max_features, num_blocks=num_blocks)
        self.mask = nn.Conv3d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.compress = nn.Conv3d(feature_channel, compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(compress, affine=True)
        self.num_kp = num_kp
        # the occlusion map looks at all depth slices of the hourglass output at once, as channels of a 2-D conv
        self.occlusion = (nn.Conv2d(self.hourglass.out_filters * reshape_depth, 1, kernel_size=7, padding=3)
                          if estimate_occlusion_map else None)

    def compressed(self, feature):
        """The feature volume squeezed to `compress` channels [B, 4, D, H, W]; it depends on the source only."""
        return F.relu(self.norm(self.compress(feature)))

    def sparse_motions(self, size, kp_driving, kp_source):
        """The K+1 proposals: identity, then grid - kp_driving[k] + kp_source[k] -> [B, K+1, D, H, W, 3]."""
        b = kp_source.shape[0]
        grid = make_coordinate_grid_3d(size, kp_source.dtype, kp_source.device)[None, None]   # [1, 1, D, H, W, 3]
        to_source = (grid - kp_driving[:, :, None, None, None, :]) + kp_source[:, :, None, None, None, :]
        return torch.cat([grid.expand(b, 1, *grid.shape[2:]), to_source], dim=1)

    @staticmethod
    def deformed_volumes(volume, motions):
        """The compressed volume [B, C, D, H, W] sampled along each proposal -> [B, K+1, C, D, H, W]."""
        b, n, d, h, w, _ = motions.shape
        c = volume.shape[1]
        repeated = volume.unsqueeze(1).expand(b, n, c, d, h, w).reshape(b * n, c, d, h, w)
        sampled = F.grid_sample(repeated, motions.reshape(b * n, d, h, w, 3), align_corners=False)
        return sampled.view(b, n, c, d, h, w)

    @staticmethod
    def heatmaps(size, kp_driving, kp_source):
        """Driving minus source Gaussians, after a zero map for the background -> [B, K+1, 1, D, H, W]."""
        heatmap = kp2gaussian_3d(kp_driving, size, KP_VARIANCE) - kp2gaussian_3d(kp_source, size, KP_VARIANCE)
        zeros = torch.zeros_like(heatmap[:, :1])
        return torch.cat([zeros, heatmap], dim=1).unsqueeze(2)

    def forward(self, feature, kp_driving, kp_source):
        volume = self.compressed(feature)                                   # [B, 4, D, H, W]
        b, _, d, h, w = volume.shape
        motions = self.sparse_motions((d, h, w), kp_driving, kp_source)   # [B, K+1, D, H, W, 3]
        deformed = self.deformed_volumes(volume, motions)                   # [B, K+1, 4, D, H, W]
        heatmaps = self.heatmaps((d, h, w), kp_driving, kp_source)          # [B, K+1, 1, D, H, W]
        hourglass_in = torch.cat([heatmaps, deformed], dim=2).view(b, -1, d, h, w)  # [B, (K+1)*5, D, H, W]
        prediction = self.hourglass(hourglass_in)                           # [B, 142, D, H, W]

        mask = F.softmax(self.mask(prediction), dim=1)                      # [B, K+1, D, H, W]
        deformation = (motions.permute(0, 1, 5, 2, 3, 4) * mask.unsqueeze(2)).sum(dim=1)  # [B, 3, D, H, W]
        out = {"mask": mask, "deformation": deformation.permute(0, 2, 3, 4, 1)}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction.reshape(b, -1, h, w)))  # [B, 1, H, W]
        return out


class SameBlockLeaky2d(nn.Module):
    """conv -> batch norm -> LeakyReLU(0.01), same spatial size."""

    def __init__(self, in_features, out_features, kernel_size=3, padding=1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x):
        return F.leaky_relu(self.norm(self.conv(x)))


class WarpingNetwork(nn.Module):
    """(f_s [B, 32, 16, H, W], kp_driving, kp_source [B, K, 3]) -> 'out' [B, 256, H, W] for the generator,
    'deformation' [B, 16, H, W, 3] and 'occlusion_map' [B, 1, H, W] (None without one). H and W must divide by
    2**num_blocks of the dense motion (32): 64x64 for the 256-px crop."""

    def __init__(self, num_kp, block_expansion, max_features, num_down_blocks, reshape_channel,
                 estimate_occlusion_map=False, dense_motion_params=None):
        super().__init__()
        self.dense_motion_network = DenseMotionNetwork(num_kp=num_kp, feature_channel=reshape_channel,
                                                       estimate_occlusion_map=estimate_occlusion_map,
                                                       **dense_motion_params)
        width = block_expansion * (2 ** num_down_blocks)
        self.third = SameBlockLeaky2d(max_features, width, kernel_size=(3, 3), padding=(1, 1))
        self.fourth = nn.Conv2d(width, width, kernel_size=1, stride=1)

    def forward(self, feature_3d, kp_driving, kp_source):
        motion = self.dense_motion_network(feature_3d, kp_driving, kp_source)
        deformation = motion["deformation"]                                      # [B, D, H, W, 3]
        warped = F.grid_sample(feature_3d, deformation, align_corners=False)     # [B, 32, 16, H, W]
        b, c, d, h, w = warped.shape
        out = self.fourth(self.third(warped.view(b, c * d, h, w)))               # [B, 256, H, W]
        occlusion = motion.get("occlusion_map")
        if occlusion is not None:
            out = out * occlusion
        return {"occlusion_map": occlusion, "deformation": deformation, "out": out}
