"""SPADE generator (G in the paper, Park et al. 2019's decoder): the warped features -> the animated frame.

The warped features [B, 256, 64, 64] are both the input (a 3x3 conv to 512 channels) and the layout every SPADE
norm reads: each block normalises its input per channel (instance norm, no affine), then scales and shifts it by
maps a small conv net predicts from the features resized to its size. Six residual blocks at 64x64, two
upsampling ones (128x128 at 256 channels, 256x256 at 64) and a 3x3 conv to 12 channels with a pixel shuffle give
a 512x512 RGB frame in [0, 1].

The original wraps its residual convs in spectral norm; spectral norm in evaluation is a fixed rescaling of the
weight, so these are plain convs here and loading folds the published weight_orig/u/v into their `weight`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SPADE_HIDDEN = 128  # channels of the conv net that reads the layout


class SPADE(nn.Module):
    """Spatially-adaptive denormalisation: instance_norm(x) * (1 + gamma(layout)) + beta(layout)."""

    def __init__(self, norm_nc, label_nc):
        super().__init__()
        self.param_free_norm = nn.InstanceNorm2d(norm_nc, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, SPADE_HIDDEN, kernel_size=3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(SPADE_HIDDEN, norm_nc, kernel_size=3, padding=1)
        self.mlp_beta = nn.Conv2d(SPADE_HIDDEN, norm_nc, kernel_size=3, padding=1)

    def forward(self, x, layout):
        normalized = self.param_free_norm(x)
        layout = F.interpolate(layout, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(layout)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """x_s + conv_1(lrelu(SPADE_1(conv_0(lrelu(SPADE_0(x)))))), with x_s = conv_s(SPADE_s(x)) where the width
    changes (fin != fout), else x."""

    def __init__(self, fin, fout, label_nc):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = nn.Conv2d(fin, fmiddle, kernel_size=3, padding=1)
        self.conv_1 = nn.Conv2d(fmiddle, fout, kernel_size=3, padding=1)
        self.norm_0 = SPADE(fin, label_nc)
        self.norm_1 = SPADE(fmiddle, label_nc)
        if self.learned_shortcut:
            self.conv_s = nn.Conv2d(fin, fout, kernel_size=1, bias=False)
            self.norm_s = SPADE(fin, label_nc)

    def forward(self, x, layout):
        shortcut = self.conv_s(self.norm_s(x, layout)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, layout), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, layout), 0.2))
        return shortcut + dx


class SPADEDecoder(nn.Module):
    """warped features [B, 256, H, W] -> frame [B, 3, 8H, 8W] in [0, 1] (512x512 from 64x64 with upscale 2)."""

    def __init__(self, upscale=1, max_features=256, block_expansion=64, out_channels=64, num_down_blocks=2):
        super().__init__()
        channels = min(max_features, block_expansion * (2 ** num_down_blocks))  # 256, W's output width
        self.fc = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        for i in range(6):
            setattr(self, f"G_middle_{i}", SPADEResnetBlock(2 * channels, 2 * channels, channels))
        self.up_0 = SPADEResnetBlock(2 * channels, channels, channels)
        self.up_1 = SPADEResnetBlock(channels, out_channels, channels)
        self.up = nn.Upsample(scale_factor=2)  # nearest
        if upscale is None or upscale <= 1:
            self.conv_img = nn.Conv2d(out_channels, 3, 3, padding=1)
        else:
            self.conv_img = nn.Sequential(nn.Conv2d(out_channels, 3 * 2 * 2, kernel_size=3, padding=1),
                                          nn.PixelShuffle(upscale_factor=2))

    def forward(self, feature):
        layout = feature                                        # [B, 256, H, W]
        x = self.fc(feature)                                    # [B, 512, H, W]
        for i in range(6):
            x = getattr(self, f"G_middle_{i}")(x, layout)
        x = self.up_0(self.up(x), layout)                       # [B, 256, 2H, 2W]
        x = self.up_1(self.up(x), layout)                       # [B, 64, 4H, 4W]
        x = self.conv_img(F.leaky_relu(x, 2e-1))                # [B, 3, 8H, 8W]
        return torch.sigmoid(x)
