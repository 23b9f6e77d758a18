"""TPSMM inpainting network: encode the source, warp every encoder level by the flow, mask what the source cannot
show at that level's resolution, decode with the warped levels as skips, and blend with the warped source."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fomm_core.model.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, instance_norm


def warp(x, deformation):
    """Backward-warp x [B, C, H, W] by a flow [B, h, w, 2] in [-1, 1], resized (bilinear, corners aligned) to H, W."""
    h, w = x.shape[2:]
    if deformation.shape[1:3] != (h, w):
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                    align_corners=True).permute(0, 2, 3, 1)
    return F.grid_sample(x, deformation, align_corners=True)


class InpaintingNetwork(nn.Module):
    """source image + dense motion -> the driving frame: {'prediction': [B, C, H, W] in [0, 1], ...}."""

    def __init__(self, num_channels, block_expansion, max_features, num_down_blocks, multi_mask=True, **kwargs):
        super().__init__()

        def width(level):
            return min(max_features, block_expansion * (2 ** level))

        def decoder_width(level):  # the deepest level has no skip concatenated
            return width(level + 1) * (1 if level == num_down_blocks - 1 else 2)

        self.num_down_blocks = num_down_blocks
        self.multi_mask = multi_mask
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3), norm=instance_norm)
        self.down_blocks = nn.ModuleList(
            DownBlock2d(width(i), width(i + 1), kernel_size=(3, 3), padding=(1, 1), norm=instance_norm)
            for i in range(num_down_blocks))
        deepest_first = list(reversed(range(num_down_blocks)))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(decoder_width(i), width(i), kernel_size=(3, 3), padding=(1, 1), norm=instance_norm)
            for i in deepest_first)
        self.resblock = nn.ModuleList(
            ResBlock2d(decoder_width(i), kernel_size=(3, 3), padding=(1, 1), norm=instance_norm)
            for i in deepest_first for _ in range(2))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.num_channels = num_channels

    def encode_source(self, source_image):
        """[B, C, H, W] -> the encoder's levels, finest first: [B, 64, H, W], [B, 128, H/2, W/2], ..."""
        levels = [self.first(source_image)]
        for block in self.down_blocks:
            levels.append(block(levels[-1]))
        return levels

    def occlusion_at(self, occlusion_map, level, size):
        """The mask for decoder level `level` (0 = deepest) at `size`: one per level, or one resized."""
        if self.multi_mask:
            return occlusion_map[level]
        mask = occlusion_map[0]
        if mask.shape[2:] != size:
            mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=True)
        return mask

    def warped_levels(self, levels, deformation, occlusion_map):
        """Every encoder level warped by the flow and masked, deepest first."""
        return [warp(x, deformation) * self.occlusion_at(occlusion_map, i, x.shape[2:])
                for i, x in enumerate(reversed(levels))]

    def decode(self, warped, warped_source, occlusion_last):
        """Warped levels (deepest first), the warped source [B, C, H, W], the finest mask -> prediction in [0, 1]."""
        out = warped[0]
        for i in range(self.num_down_blocks):
            out = self.resblock[2 * i + 1](self.resblock[2 * i](out))
            out = self.up_blocks[i](out)
            if i < self.num_down_blocks - 1:
                out = torch.cat([out, warped[i + 1]], dim=1)
        out = out * (1 - occlusion_last) + warped[-1]
        out = torch.sigmoid(self.final(out))
        return out * (1 - occlusion_last) + warped_source * occlusion_last

    def forward(self, source_image, dense_motion):
        deformation, occlusion_map = dense_motion["deformation"], dense_motion["occlusion_map"]
        warped = self.warped_levels(self.encode_source(source_image), deformation, occlusion_map)
        deformed = warp(source_image, deformation)
        occlusion_last = self.occlusion_at(occlusion_map, -1, source_image.shape[2:])
        return {"prediction": self.decode(warped, deformed, occlusion_last), "deformed": deformed,
                "occlusion_map": occlusion_map, "contribution_maps": dense_motion["contribution_maps"],
                "deformed_source": dense_motion["deformed_source"]}
