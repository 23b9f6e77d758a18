"""Dense motion network: from two keypoint sets to a dense backward flow, K+1 softmax masks and an occlusion map.

Shapes below use B batch, K keypoints, C image channels and (h, w) the downsampled size (64x64 for 256 input).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fomm_core.model.blocks import AntiAliasInterpolation2d, Hourglass, kp2gaussian, make_coordinate_grid


class DenseMotionNetwork(nn.Module):
    """Predicts the flow that maps driving-frame coordinates to source-image coordinates."""

    def __init__(self, block_expansion, num_blocks, max_features, num_kp, num_channels,
                 estimate_occlusion_map=False, scale_factor=1, kp_variance=0.01):
        super().__init__()
        # input per "copy" k = 0..K: one heatmap channel + the source deformed by motion k
        self.hourglass = Hourglass(block_expansion=block_expansion, in_features=(num_kp + 1) * (num_channels + 1),
                                   max_features=max_features, num_blocks=num_blocks)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=(7, 7), padding=(3, 3))
        if estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=(7, 7), padding=(3, 3))
        else:
            self.occlusion = None

        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def create_heatmap_representations(self, source_image, kp_driving, kp_source):
        """Eq. 6: driving minus source Gaussians, with a zero map for the background -> [B, K+1, 1, h, w]."""
        h, w = source_image.shape[2:]
        heatmap = (kp2gaussian(kp_driving, (h, w), self.kp_variance)
                   - kp2gaussian(kp_source, (h, w), self.kp_variance))
        zeros = torch.zeros_like(heatmap[:, :1])
        return torch.cat([zeros, heatmap], dim=1).unsqueeze(2)

    def create_sparse_motions(self, source_image, kp_driving, kp_source):
        """Eq. 4: per keypoint, z -> kp_src + J_src J_drv^-1 (z - kp_drv); background = identity -> [B, K+1, h, w, 2]."""
        b, _, h, w = source_image.shape
        identity = make_coordinate_grid((h, w), kp_source["value"].dtype, kp_source["value"].device)
        identity = identity.view(1, 1, h, w, 2)
        coords = identity - kp_driving["value"].view(b, self.num_kp, 1, 1, 2)         # [B, K, h, w, 2]
        if "jacobian" in kp_driving:
            jacobian = torch.matmul(kp_source["jacobian"], torch.inverse(kp_driving["jacobian"]))  # [B, K, 2, 2]
            coords = torch.matmul(jacobian.view(b, self.num_kp, 1, 1, 2, 2), coords.unsqueeze(-1)).squeeze(-1)
        driving_to_source = coords + kp_source["value"].view(b, self.num_kp, 1, 1, 2)
        return torch.cat([identity.expand(b, 1, h, w, 2), driving_to_source], dim=1)

    def create_deformed_source_image(self, source_image, sparse_motions):
        """Eq. 7: the source warped by each of the K+1 motions -> [B, K+1, C, h, w]."""
        b, c, h, w = source_image.shape
        n = self.num_kp + 1
        source_repeat = source_image.unsqueeze(1).expand(b, n, c, h, w).reshape(b * n, c, h, w)
        grid = sparse_motions.reshape(b * n, h, w, 2)
        # align_corners=True: the checkpoints were trained on torch 1.0, whose grid_sample behaved this way
        deformed = F.grid_sample(source_repeat, grid, align_corners=True)
        return deformed.view(b, n, c, h, w)

    def forward(self, source_image, kp_driving, kp_source):
        if self.scale_factor != 1:
            source_image = self.down(source_image)
        b, _, h, w = source_image.shape

        heatmaps = self.create_heatmap_representations(source_image, kp_driving, kp_source)
        sparse_motion = self.create_sparse_motions(source_image, kp_driving, kp_source)
        deformed_source = self.create_deformed_source_image(source_image, sparse_motion)
        out = {"sparse_deformed": deformed_source}

        x = torch.cat([heatmaps, deformed_source], dim=2).view(b, -1, h, w)  # [B, (K+1)(C+1), h, w]
        features = self.hourglass(x)

        mask = F.softmax(self.mask(features), dim=1)                          # [B, K+1, h, w]
        out["mask"] = mask
        # dense flow = mask-weighted blend of the K+1 sparse motions
        deformation = (sparse_motion.permute(0, 1, 4, 2, 3) * mask.unsqueeze(2)).sum(dim=1)  # [B, 2, h, w]
        out["deformation"] = deformation.permute(0, 2, 3, 1)                  # [B, h, w, 2]

        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(features))    # [B, 1, h, w]
        return out
