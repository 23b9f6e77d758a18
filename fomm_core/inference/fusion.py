"""Inference-only copies of the FOMM and TPSMM networks: batch-norm folded into the convolutions, channels-last
memory, sub-pixel up blocks.

The user's modules are never touched: `fused_copy` deep-copies, then for every conv -> BN pair replaces the conv
by one with folded weights and the BN by an identity, so each block's own forward still runs unchanged:
  SameBlock2d / DownBlock2d / UpBlock2d: relu(norm(conv(x)))   -> relu(conv'(x))
  ResBlock2d: conv1 -> norm2 is a pair too; norm1 acts on the residual stream after a sum and stays a BN.
  ResNet-18 (TPSMM's keypoint detector): conv1 -> bn1, conv2 -> bn2 and the shortcut's downsample.0 -> .1.
Instance norms (TPSMM's blocks) depend on each image's statistics and cannot be folded; they stay.
Folding changes float32 results only by rounding (about 1e-6). Up blocks (nearest 2x upsample + 3x3 conv)
become sub-pixel convolutions, 16/36 of the work, equally exact.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv equal to bn(conv(x)) with bn in eval mode: w' = w * g / s, b' = (b - mean) * g / s + beta."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var.detach() + bn.eps)
    fused = copy.deepcopy(conv)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * scale + bn.bias.detach()
        if fused.bias is None:
            fused.bias = nn.Parameter(new_bias)
        else:
            fused.bias.copy_(new_bias)
    return fused


def _fold_blocks(module: nn.Module) -> int:
    """Fold in place every (conv, norm) and (conv1, norm2) pair below `module`; returns how many were folded."""
    folded = 0
    for child in module.modules():
        names = {n for n, _ in child.named_children()}
        for conv_name, bn_name in (("conv", "norm"), ("conv1", "norm2"), ("conv1", "bn1"), ("conv2", "bn2"),
                                   ("0", "1")):
            if {conv_name, bn_name} <= names:
                conv, bn = getattr(child, conv_name), getattr(child, bn_name)
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    setattr(child, conv_name, fold_bn(conv, bn))
                    setattr(child, bn_name, nn.Identity())
                    folded += 1
    return folded


def fused_copy(module: nn.Module, channels_last: bool = True, subpixel: bool = True) -> nn.Module:
    """An eval-mode, grad-free copy of `module` with batch-norms folded, up blocks as sub-pixel convolutions
    (see SubpixelUpBlock) and channels-last weights, each where asked."""
    out = copy.deepcopy(module).eval()
    _fold_blocks(out)
    if subpixel:
        holder = nn.ModuleDict({"root": out})  # so that the root itself can be replaced too
        subpixel_up_blocks(holder)
        out = holder["root"]
    for p in out.parameters():
        p.requires_grad_(False)
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    return out


class SubpixelUpBlock(nn.Module):
    """UpBlock2d (nearest 2x upsample -> 3x3 conv -> [instance norm] -> ReLU, a BN already folded) at a quarter of
    the cost... nearly.

    A 3x3 convolution of a nearest-upsampled image sees, at each of the four output phases (row parity a,
    column parity b), only a 2x2 neighbourhood of the small image, with some of the 3x3 taps summed together:
    rows for a = 0 take taps {-1} and {0, +1} on small rows {i-1, i}; for a = 1 taps {-1, 0} and {+1} on rows
    {i, i+1}. So one 2x2 convolution with 4x the output channels, padding 1, on the small image gives all four
    phases ((H+1) x (W+1) positions, phase (a, b) at offset (a, b)); pixel_shuffle interleaves them. 16/36 of
    the multiply-adds, the same sums up to float rounding.
    """

    def __init__(self, conv: nn.Conv2d, norm=None):
        super().__init__()
        self.norm = norm if norm is not None else nn.Identity()
        w = conv.weight.detach()                                   # [Cout, Cin, 3, 3]
        cout = w.shape[0]
        # taps of a 3x3 kernel row/col merged per phase: phase 0 -> [k0, k1 + k2], phase 1 -> [k0 + k1, k2]
        merge = torch.tensor([[[1.0, 0, 0], [0, 1, 1]],
                              [[1, 1, 0], [0, 0, 1]]], dtype=w.dtype, device=w.device)  # [phase, tap2, tap3]
        # w4[o, a, b, i, p, q] = sum_{r,s} merge[a, p, r] * merge[b, q, s] * w[o, i, r, s]
        w4 = torch.einsum("apr,bqs,oirs->oabipq", merge, merge, w)  # [Cout, 2, 2, Cin, 2, 2]
        self.weight = nn.Parameter(w4.reshape(cout * 4, w.shape[1], 2, 2).contiguous(), requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(cout, dtype=w.dtype, device=w.device)
        self.bias = nn.Parameter(bias.repeat_interleave(4), requires_grad=False)
        self.cout = cout

    def forward(self, x):
        b, _, h, w = x.shape
        y = F.conv2d(x, self.weight, self.bias, padding=1)          # [B, 4 Cout, H+1, W+1]
        # work channels-last (free when y already is): [B, H+1, W+1, Cout, 2, 2]
        y = y.permute(0, 2, 3, 1).reshape(b, h + 1, w + 1, self.cout, 2, 2)
        out = y.new_empty(b, h, 2, w, 2, self.cout)
        for a in (0, 1):
            for c in (0, 1):  # phase (a, c) lives at rows a..a+H, cols c..c+W
                out[:, :, a, :, c, :] = y[:, a:a + h, c:c + w, :, a, c]
        out = out.view(b, 2 * h, 2 * w, self.cout).permute(0, 3, 1, 2)  # NCHW view, channels-last memory
        return F.relu(self.norm(out))


def subpixel_up_blocks(module: nn.Module) -> int:
    """Replace (in place) every folded UpBlock2d below `module` by a SubpixelUpBlock; returns how many."""
    from fomm_core.model.blocks import UpBlock2d
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if (isinstance(child, UpBlock2d) and isinstance(child.norm, (nn.Identity, nn.InstanceNorm2d))
                    and child.conv.kernel_size == (3, 3) and child.conv.padding == (1, 1)
                    and child.conv.groups == 1):
                norm = child.norm if isinstance(child.norm, nn.InstanceNorm2d) else None
                setattr(parent, name, SubpixelUpBlock(child.conv, norm))
                count += 1
    return count
