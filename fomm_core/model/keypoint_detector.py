"""Keypoint detector: an hourglass over a downsampled image, soft-argmax heatmaps, optional local Jacobians."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fomm_core.model.blocks import Hourglass, add_downsampling, downsampled, gaussian2kp


class KPDetector(nn.Module):
    """image [B, C, H, W] in [0, 1] -> {'value': [B, K, 2] in [-1, 1], 'jacobian': [B, K, 2, 2]}.

    With scale_factor 0.25 a 256x256 image is seen at 64x64; the 7x7 heads have no padding, so the
    heatmaps are 58x58 (padding is `pad`, 0 in every published config).
    """

    def __init__(self, block_expansion, num_kp, num_channels, max_features, num_blocks, temperature,
                 estimate_jacobian=False, scale_factor=1, single_jacobian_map=False, pad=0):
        super().__init__()
        self.predictor = Hourglass(block_expansion, in_features=num_channels,
                                   max_features=max_features, num_blocks=num_blocks)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=(7, 7), padding=pad)

        if estimate_jacobian:
            # one 2x2 map per keypoint, or one shared by all (mgif); starts as the identity everywhere
            self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * self.num_jacobian_maps,
                                      kernel_size=(7, 7), padding=pad)
            with torch.no_grad():
                self.jacobian.weight.zero_()
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0] * self.num_jacobian_maps))
        else:
            self.jacobian = None

        self.num_kp = num_kp
        self.temperature = temperature
        add_downsampling(self, num_channels, scale_factor)

    def heatmaps(self, features):
        """Hourglass features -> per-keypoint probability maps [B, K, h, w] (softmax at `temperature`)."""
        logits = self.kp(features)                                # [B, K, h, w]
        b, k, h, w = logits.shape
        return F.softmax(logits.view(b, k, -1) / self.temperature, dim=2).view(b, k, h, w)

    def local_jacobians(self, features, heatmap):
        """Each keypoint's Jacobian [B, K, 2, 2]: its heatmap-weighted average of the per-pixel 2x2 predictions."""
        b, k, h, w = heatmap.shape
        jac_map = self.jacobian(features).reshape(b, self.num_jacobian_maps, 4, h, w)
        jacobian = (heatmap.unsqueeze(2) * jac_map).view(b, k, 4, -1).sum(dim=-1)
        return jacobian.view(b, k, 2, 2)

    def forward(self, x):
        features = self.predictor(downsampled(self, x))
        heatmap = self.heatmaps(features)
        out = gaussian2kp(heatmap)
        if self.jacobian is not None:
            out["jacobian"] = self.local_jacobians(features, heatmap)
        return out
