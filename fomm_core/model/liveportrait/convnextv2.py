"""Motion extractor (M in the paper): a ConvNeXtV2-tiny (Woo et al. 2023) whose classifier is replaced by seven
linear heads reading one image's canonical keypoints, head pose, translation, expression and scale.

    stem      4x4 conv, stride 4, then a channel LayerNorm                  [B, 96, H/4, W/4]
    stages    3, 3, 9, 3 ConvNeXtV2 blocks at 96, 192, 384, 768 channels, a 2x2 stride-2 conv between stages
    pool      global average, LayerNorm                                    [B, 768]
    heads     kp [B, 63], exp [B, 63], t [B, 3], scale [B, 1], pitch/yaw/roll [B, 66] bin logits

The raw head outputs are what `forward` returns; motion.kp_info turns them into degrees and [B, 21, 3] keypoints.
The backbone is the `detector` submodule, so parameter names carry the `detector.` prefix of the published file.
Any input size of at least 32x32 runs (the pool is global); the published model sees 256x256 crops.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channels of [B, C, H, W] (each pixel normalised on its own), learned weight and bias."""

    def __init__(self, channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRN(nn.Module):
    """Global Response Normalization on [B, H, W, C]: each channel scaled by its spatial L2 norm relative to the
    mean over channels, with a learned gain and bias around the identity."""

    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x):
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)          # [B, 1, 1, C]
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class Block(nn.Module):
    """x + pwconv2(GRN(GELU(pwconv1(LayerNorm(dwconv7x7(x)))))); the 1x1 convs are Linear layers over channels."""

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        out = self.dwconv(x).permute(0, 2, 3, 1)                 # [B, H, W, C]
        out = self.grn(F.gelu(self.pwconv1(self.norm(out))))     # [B, H, W, 4C]
        out = self.pwconv2(out).permute(0, 3, 1, 2)              # [B, C, H, W]
        return x + out


class ConvNeXtV2(nn.Module):
    """image [B, 3, H, W] in [0, 1] -> dict of raw head outputs (see the module docstring)."""

    def __init__(self, num_kp=21, num_bins=66, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), in_chans=3):
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4),
                             ChannelsFirstLayerNorm(dims[0], eps=1e-6))
        between = [nn.Sequential(ChannelsFirstLayerNorm(dims[i], eps=1e-6),
                                 nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)) for i in range(3)]
        self.downsample_layers = nn.ModuleList([stem] + between)
        self.stages = nn.ModuleList(nn.Sequential(*[Block(dims[i]) for _ in range(depths[i])]) for i in range(4))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)

        features = dims[-1]
        self.fc_kp = nn.Linear(features, 3 * num_kp)     # canonical keypoints x_c
        self.fc_scale = nn.Linear(features, 1)           # s
        self.fc_pitch = nn.Linear(features, num_bins)    # head pose, as logits over 3-degree bins
        self.fc_yaw = nn.Linear(features, num_bins)
        self.fc_roll = nn.Linear(features, num_bins)
        self.fc_t = nn.Linear(features, 3)               # t
        self.fc_exp = nn.Linear(features, 3 * num_kp)    # expression deformation delta

    def features(self, x):
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.norm(x.mean([-2, -1]))               # [B, 768]

    def forward(self, x):
        x = self.features(x)
        return {"pitch": self.fc_pitch(x), "yaw": self.fc_yaw(x), "roll": self.fc_roll(x), "t": self.fc_t(x),
                "exp": self.fc_exp(x), "scale": self.fc_scale(x), "kp": self.fc_kp(x)}


class MotionExtractor(nn.Module):
    """M: the ConvNeXtV2 above, held as `detector` (the published file's key prefix)."""

    def __init__(self, **params):
        super().__init__()
        self.detector = ConvNeXtV2(**params)

    def forward(self, x):
        return self.detector(x)
