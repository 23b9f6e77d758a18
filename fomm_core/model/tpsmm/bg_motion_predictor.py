"""TPSMM background motion: an affine 3x3 matrix from (source, driving). Trained with the model, unused to animate
(the original demo passes no background motion); built so the published checkpoints load strictly."""
from __future__ import annotations

import torch
from torch import nn

from fomm_core.model.tpsmm.resnet import ResNet18


class BGMotionPredictor(nn.Module):
    """(source, driving) [B, 3, H, W] each -> [B, 3, 3] affine matrix, bottom row [0, 0, 1]; identity at start."""

    def __init__(self):
        super().__init__()
        self.bg_encoder = ResNet18(num_outputs=6, in_channels=6)
        with torch.no_grad():
            self.bg_encoder.fc.weight.zero_()
            self.bg_encoder.fc.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]))

    def forward(self, source_image, driving_image):
        b = source_image.shape[0]
        out = torch.eye(3, dtype=source_image.dtype, device=source_image.device).repeat(b, 1, 1)
        out[:, :2, :] = self.bg_encoder(torch.cat([source_image, driving_image], dim=1)).view(b, 2, 3)
        return out
