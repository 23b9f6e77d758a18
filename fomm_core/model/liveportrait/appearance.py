"""Appearance feature extractor (F in the paper): the source image -> a 3-D feature volume that W warps.

A 2-D encoder (a 3x3 conv block, two downsampling blocks, a 1x1 conv to 512 channels) whose channels are then read
as 32 channels x 16 depth slices, refined by six 3-D residual blocks. It runs once per source image.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from fomm_core.model.blocks import DownBlock2d, SameBlock2d
from fomm_core.model.liveportrait.blocks import ResBlock3d


class AppearanceFeatureExtractor(nn.Module):
    """image [B, 3, H, W] in [0, 1] -> f_s [B, 32, 16, H/4, W/4] (32x16x64x64 for the 256-px crop)."""

    def __init__(self, image_channel, block_expansion, num_down_blocks, max_features, reshape_channel,
                 reshape_depth, num_resblocks):
        super().__init__()
        self.reshape_channel = reshape_channel
        self.reshape_depth = reshape_depth

        def width(level):
            return min(max_features, block_expansion * (2 ** level))

        self.first = SameBlock2d(image_channel, block_expansion, kernel_size=(3, 3), padding=(1, 1))
        self.down_blocks = nn.ModuleList(
            DownBlock2d(width(i), width(i + 1), kernel_size=(3, 3), padding=(1, 1)) for i in range(num_down_blocks))
        self.second = nn.Conv2d(width(num_down_blocks), max_features, kernel_size=1, stride=1)
        # named 3dr0, 3dr1, ... as in the published file
        self.resblocks_3d = nn.Sequential(OrderedDict(
            (f"3dr{i}", ResBlock3d(reshape_channel, kernel_size=3, padding=1)) for i in range(num_resblocks)))

    def forward(self, source_image):
        out = self.first(source_image)                 # [B, 64, H, W]
        for block in self.down_blocks:
            out = block(out)                           # [B, 128, H/2, W/2], then [B, 256, H/4, W/4]
        out = self.second(out)                         # [B, 512, H/4, W/4]
        b, _, h, w = out.shape
        volume = out.view(b, self.reshape_channel, self.reshape_depth, h, w)  # [B, 32, 16, H/4, W/4]
        return self.resblocks_3d(volume)
