"""TPSMM keypoint detector: a ResNet-18 regresses K TPS transformations x 5 control points per image."""
from __future__ import annotations

import torch
from torch import nn

from fomm_core.model.tpsmm.resnet import ResNet18


class KPDetector(nn.Module):
    """image [B, 3, H, W] in [0, 1] -> {'fg_kp': [B, K*5, 2]} in (-1, 1) (x, y), K = num_tps."""

    def __init__(self, num_tps, **kwargs):
        super().__init__()
        self.num_tps = num_tps
        self.fg_encoder = ResNet18(num_outputs=num_tps * 5 * 2)

    def forward(self, image):
        fg_kp = torch.sigmoid(self.fg_encoder(image)) * 2 - 1        # [B, K*5*2]
        return {"fg_kp": fg_kp.view(fg_kp.shape[0], self.num_tps * 5, -1)}
