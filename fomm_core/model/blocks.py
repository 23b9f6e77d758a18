"""Building blocks shared by the FOMM and TPSMM networks: conv blocks, the hourglass, anti-aliased downsampling,
keypoint maths.

Parameter and buffer names follow the original code so that the published checkpoints load strictly.
FOMM's norm is a plain `nn.BatchNorm2d` (the default `norm`): its state dict (weight, bias, running_mean,
running_var, num_batches_tracked) is the same as the original's SynchronizedBatchNorm2d, and so is its maths on
one device. TPSMM builds the same blocks with `norm=instance_norm` (affine, no running statistics: weight, bias).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------------------------------------------
# Convolution blocks


def instance_norm(features):
    """TPSMM's norm: per-image statistics, learned scale and shift (state dict: weight, bias)."""
    return nn.InstanceNorm2d(features, affine=True)


class _ConvNorm(nn.Module):
    """conv -> norm -> ReLU, the core of the same/down/up blocks (`conv` and `norm` are the checkpoints' names)."""

    def __init__(self, in_features, out_features, kernel_size=3, padding=1, groups=1, norm=nn.BatchNorm2d):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups)
        self.norm = norm(out_features)

    def conv_norm_relu(self, x):
        return F.relu(self.norm(self.conv(x)))


class SameBlock2d(_ConvNorm):
    """conv -> norm -> ReLU, same spatial size."""

    def __init__(self, in_features, out_features, groups=1, kernel_size=3, padding=1, norm=nn.BatchNorm2d):
        super().__init__(in_features, out_features, kernel_size, padding, groups, norm)

    def forward(self, x):
        return self.conv_norm_relu(x)


class DownBlock2d(_ConvNorm):
    """conv -> norm -> ReLU -> 2x2 average pool (halves H and W)."""

    def __init__(self, in_features, out_features, kernel_size=3, padding=1, groups=1, norm=nn.BatchNorm2d):
        super().__init__(in_features, out_features, kernel_size, padding, groups, norm)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x):
        return self.pool(self.conv_norm_relu(x))


class UpBlock2d(_ConvNorm):
    """nearest 2x upsample -> conv -> norm -> ReLU (doubles H and W)."""

    def forward(self, x):
        return self.conv_norm_relu(F.interpolate(x, scale_factor=2))  # nearest, as the original


class ResBlock2d(nn.Module):
    """Pre-activation residual block: x + conv2(relu(norm2(conv1(relu(norm1(x))))))."""

    def __init__(self, in_features, kernel_size, padding, norm=nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.norm1 = norm(in_features)
        self.norm2 = norm(in_features)

    def forward(self, x):
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


# ----------------------------------------------------------------------------------------------------------------
# Hourglass (a U-Net): used by the keypoint detector and the dense motion network


def _hourglass_width(block_expansion, max_features, level):
    return min(max_features, block_expansion * (2 ** level))


class Encoder(nn.Module):
    """num_blocks DownBlocks; returns the input and every block's output (the skips for the decoder)."""

    def __init__(self, block_expansion, in_features, num_blocks=3, max_features=256, norm=nn.BatchNorm2d):
        super().__init__()
        blocks = []
        for i in range(num_blocks):
            cin = in_features if i == 0 else _hourglass_width(block_expansion, max_features, i)
            cout = _hourglass_width(block_expansion, max_features, i + 1)
            blocks.append(DownBlock2d(cin, cout, kernel_size=3, padding=1, norm=norm))
        self.down_blocks = nn.ModuleList(blocks)

    def forward(self, x):
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """num_blocks UpBlocks, each followed by concatenation with the matching encoder output.

    level_channels: the channels of each level's output, coarsest first; the last is `out_filters`.
    """

    def __init__(self, block_expansion, in_features, num_blocks=3, max_features=256, norm=nn.BatchNorm2d):
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            # the deepest block sees only the bottom feature map; the others also the concatenated skip
            cin = (1 if i == num_blocks - 1 else 2) * _hourglass_width(block_expansion, max_features, i + 1)
            cout = _hourglass_width(block_expansion, max_features, i)
            blocks.append(UpBlock2d(cin, cout, kernel_size=3, padding=1, norm=norm))
        self.up_blocks = nn.ModuleList(blocks)
        # level i concatenates block i's output with the encoder's output one level up (the input at the end)
        self.level_channels = [2 * _hourglass_width(block_expansion, max_features, i) for i in
                               reversed(range(1, num_blocks))] + [block_expansion + in_features]
        self.out_filters = self.level_channels[-1]

    def forward(self, skips, every_level=False):
        """The finest level's output, or with every_level the list of all levels' outputs, coarsest first."""
        skips = list(skips)  # do not consume the caller's list
        out = skips.pop()
        levels = []
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
            levels.append(out)
        return levels if every_level else out


class Hourglass(nn.Module):
    """Encoder + decoder; output has `out_filters` = block_expansion + in_features channels at input size
    (with every_level, each decoder level's output: `level_channels`)."""

    def __init__(self, block_expansion, in_features, num_blocks=3, max_features=256, norm=nn.BatchNorm2d):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features, norm)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features, norm)
        self.out_filters = self.decoder.out_filters
        self.level_channels = self.decoder.level_channels

    def forward(self, x, every_level=False):
        return self.decoder(self.encoder(x), every_level)


# ----------------------------------------------------------------------------------------------------------------
# Anti-aliased downsampling


def gaussian_kernel(channels, scale):
    """Depthwise Gaussian blur kernel [channels, 1, k, k] for downsampling by `scale`, normalised to sum 1."""
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    coords = torch.arange(size, dtype=torch.float32)
    mean = (size - 1) / 2
    g = torch.exp(-(coords - mean) ** 2 / (2 * sigma ** 2))
    kernel = g.view(-1, 1) * g.view(1, -1)  # separable: product of the 1-D Gaussians
    kernel = kernel / kernel.sum()
    return kernel.view(1, 1, size, size).repeat(channels, 1, 1, 1)


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then nearest downsampling by `scale` (e.g. 0.25: 256x256 -> 64x64).

    The kernel is a persistent buffer named `weight` (it is in the published checkpoints). Its size depends on
    the scale, which is why a checkpoint only loads into a config with the same scale_factor.
    When 1/scale is an integer, nearest downsampling keeps every step-th pixel, so the blur is evaluated only
    there (a strided convolution: the same numbers for a fraction of the work); otherwise the full blur is
    followed by F.interpolate exactly as the original.
    """

    def __init__(self, channels, scale):
        super().__init__()
        self.register_buffer("weight", gaussian_kernel(channels, scale))
        size = self.weight.shape[-1]
        self.ka = size // 2
        self.kb = self.ka - 1 if size % 2 == 0 else self.ka
        self.groups = channels
        self.scale = scale
        inv = 1 / scale
        self.step = int(round(inv)) if abs(inv - round(inv)) < 1e-9 else None
        self.strided = True  # False: blur every pixel, then slice (the original's order of work)

    def forward(self, x):
        if self.scale == 1.0:
            return x
        h, w = x.shape[-2:]
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        if self.step is None:
            out = F.conv2d(out, self.weight, groups=self.groups)
            return F.interpolate(out, scale_factor=(self.scale, self.scale))
        # nearest with an integer factor picks rows/cols 0, step, 2*step, ...; output size floor(h*scale)
        out_h, out_w = math.floor(h * self.scale), math.floor(w * self.scale)
        if self.strided:
            out = F.conv2d(out, self.weight, groups=self.groups, stride=self.step)
        else:
            out = F.conv2d(out, self.weight, groups=self.groups)[:, :, ::self.step, ::self.step]
        return out[:, :, :out_h, :out_w]


def add_downsampling(module: nn.Module, channels, scale_factor) -> None:
    """Give `module` its input scale: `scale_factor` and, unless it is 1, `down` (whose kernel the checkpoints hold)."""
    module.scale_factor = scale_factor
    if scale_factor != 1:
        module.down = AntiAliasInterpolation2d(channels, scale_factor)


def downsampled(module: nn.Module, x):
    """x at `module`'s input scale (see add_downsampling)."""
    return module.down(x) if module.scale_factor != 1 else x


# ----------------------------------------------------------------------------------------------------------------
# Keypoint maths. Coordinates are (x, y) in [-1, 1], the convention of grid_sample with align_corners=True.


def make_coordinate_grid(spatial_size, dtype=torch.float32, device=None):
    """[H, W, 2] grid of (x, y) running exactly from -1 to 1 (pixel centres of the corner pixels)."""
    h, w = spatial_size
    x = torch.arange(w, dtype=dtype, device=device)
    y = torch.arange(h, dtype=dtype, device=device)
    x = 2 * (x / (w - 1)) - 1
    y = 2 * (y / (h - 1)) - 1
    xx = x.view(1, w).expand(h, w)
    yy = y.view(h, 1).expand(h, w)
    return torch.stack([xx, yy], dim=2)


def kp2gaussian(kp, spatial_size, kp_variance):
    """Keypoints {'value': [..., 2]} -> unnormalised Gaussian heatmaps [..., H, W] of variance kp_variance."""
    mean = kp["value"]
    grid = make_coordinate_grid(spatial_size, mean.dtype, mean.device)  # [H, W, 2]
    lead = mean.shape[:-1]
    diff = grid.view((1,) * len(lead) + grid.shape) - mean.view(*lead, 1, 1, 2)
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / kp_variance)


def gaussian2kp(heatmap):
    """Soft-argmax: heatmaps [B, K, H, W] (each summing to 1) -> {'value': expected (x, y) [B, K, 2]}."""
    grid = make_coordinate_grid(heatmap.shape[2:], heatmap.dtype, heatmap.device)  # [H, W, 2]
    value = (heatmap.unsqueeze(-1) * grid.view(1, 1, *grid.shape)).sum(dim=(2, 3))
    return {"value": value}
