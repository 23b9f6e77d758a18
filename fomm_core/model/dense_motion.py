"""Dense motion network: from two keypoint sets to a dense backward flow, K+1 softmax masks and an occlusion map.

Shapes below use B batch, K keypoints, C image channels and (h, w) the downsampled size (64x64 for 256 input).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fomm_core.model.blocks import Hourglass, add_downsampling, downsampled, kp2gaussian, make_coordinate_grid


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
        self.kp_variance = kp_variance
        add_downsampling(self, num_channels, scale_factor)

    # -- the steps, so that an engine can compute the source-only ones once per source ---------------------------

    def source_parts(self, source_image, kp_source) -> dict:
        """What depends on the source only: its downsampled copy 'image' [B, C, h, w] and its Gaussians 'heatmap'."""
        source_image = downsampled(self, source_image)
        heatmap = kp2gaussian(kp_source, source_image.shape[2:], self.kp_variance)
        return {"image": source_image, "heatmap": heatmap}

    def create_heatmap_representations(self, source, kp_driving):
        """Eq. 6: driving minus source Gaussians, with a zero map for the background -> [B, K+1, 1, h, w]."""
        heatmap = kp2gaussian(kp_driving, source["image"].shape[2:], self.kp_variance) - source["heatmap"]
        zeros = torch.zeros_like(heatmap[:, :1])
        return torch.cat([zeros, heatmap], dim=1).unsqueeze(2)

    def create_sparse_motions(self, size, kp_driving, kp_source, inverse=torch.inverse):
        """Eq. 4: per keypoint, z -> kp_src + J_src J_drv^-1 (z - kp_drv); background = identity -> [B, K+1, h, w, 2].

        size: (h, w); the batch is the driving keypoints' (source keypoints of batch 1 are broadcast).
        inverse: of a batch of 2x2 matrices (torch.inverse, as the original; an engine may pass a closed form).
        """
        h, w = size
        b = kp_driving["value"].shape[0]
        identity = make_coordinate_grid((h, w), kp_source["value"].dtype, kp_source["value"].device)
        identity = identity.view(1, 1, h, w, 2)
        coords = identity - kp_driving["value"].view(b, self.num_kp, 1, 1, 2)         # [B, K, h, w, 2]
        if "jacobian" in kp_driving:
            jacobian = torch.matmul(kp_source["jacobian"], inverse(kp_driving["jacobian"]))  # [B, K, 2, 2]
            coords = torch.matmul(jacobian.view(b, self.num_kp, 1, 1, 2, 2), coords.unsqueeze(-1)).squeeze(-1)
        driving_to_source = coords + kp_source["value"].view(-1, self.num_kp, 1, 1, 2)
        return torch.cat([identity.expand(b, 1, h, w, 2), driving_to_source], dim=1)

    def create_deformed_source_image(self, source_image, sparse_motions):
        """Eq. 7: the source warped by each of the K+1 motions -> [B, K+1, C, h, w] (a source of batch 1 is shared)."""
        b, n, h, w = sparse_motions.shape[:4]
        c = source_image.shape[1]
        # a view when the source has batch 1: no copy per motion
        source_repeat = source_image.unsqueeze(1).expand(b, n, c, h, w).reshape(b * n, c, h, w)
        grid = sparse_motions.reshape(b * n, h, w, 2)
        # align_corners=True: the checkpoints were trained on torch 1.0, whose grid_sample behaved this way
        deformed = F.grid_sample(source_repeat, grid, align_corners=True)
        return deformed.view(b, n, c, h, w)

    @staticmethod
    def hourglass_input(heatmaps, deformed_source):
        """Each copy's heatmap channel beside its deformed source -> [B, (K+1)(C+1), h, w]."""
        b, _, _, h, w = deformed_source.shape
        return torch.cat([heatmaps, deformed_source], dim=2).view(b, -1, h, w)

    def heads(self, features):
        """Hourglass features -> (mask logits [B, K+1, h, w], occlusion logits [B, 1, h, w] or None)."""
        occlusion = self.occlusion(features) if self.occlusion is not None else None
        return self.mask(features), occlusion

    @staticmethod
    def dense_flow(sparse_motion, mask_logits, occlusion_logits) -> dict:
        """The K+1 sparse motions blended by the softmax masks -> 'mask', 'deformation' [B, h, w, 2], 'occlusion_map'.

        The logits are taken to the motion's precision first (they may come from a half-precision network).
        """
        mask = F.softmax(mask_logits.to(sparse_motion.dtype), dim=1)                    # [B, K+1, h, w]
        deformation = (sparse_motion.permute(0, 1, 4, 2, 3) * mask.unsqueeze(2)).sum(dim=1)  # [B, 2, h, w]
        out = {"mask": mask, "deformation": deformation.permute(0, 2, 3, 1)}
        if occlusion_logits is not None:
            out["occlusion_map"] = torch.sigmoid(occlusion_logits.to(sparse_motion.dtype))  # [B, 1, h, w]
        return out

    def forward(self, source_image, kp_driving, kp_source):
        source = self.source_parts(source_image, kp_source)
        heatmaps = self.create_heatmap_representations(source, kp_driving)
        sparse_motion = self.create_sparse_motions(source["image"].shape[2:], kp_driving, kp_source)
        deformed_source = self.create_deformed_source_image(source["image"], sparse_motion)
        features = self.hourglass(self.hourglass_input(heatmaps, deformed_source))
        out = self.dense_flow(sparse_motion, *self.heads(features))
        out["sparse_deformed"] = deformed_source
        return out
