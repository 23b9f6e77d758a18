"""Inference-only copies of the FOMM networks: batch-norm folded into the convolutions, channels-last memory.

The user's modules are never touched: `fused_copy` deep-copies, then for every conv -> BN pair replaces the conv
by one with folded weights and the BN by an identity, so each block's own forward still runs unchanged:
  SameBlock2d / DownBlock2d / UpBlock2d: relu(norm(conv(x)))   -> relu(conv'(x))
  ResBlock2d: conv1 -> norm2 is a pair too; norm1 acts on the residual stream after a sum and stays a BN.
Folding changes float32 results only by rounding (about 1e-6).
"""
from __future__ import annotations

import copy

import torch
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
        for conv_name, bn_name in (("conv", "norm"), ("conv1", "norm2")):
            if {conv_name, bn_name} <= names:
                conv, bn = getattr(child, conv_name), getattr(child, bn_name)
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    setattr(child, conv_name, fold_bn(conv, bn))
                    setattr(child, bn_name, nn.Identity())
                    folded += 1
    return folded


def fused_copy(module: nn.Module, channels_last: bool = True) -> nn.Module:
    """An eval-mode, grad-free copy of `module` with batch-norms folded (and channels-last weights if asked)."""
    out = copy.deepcopy(module).eval()
    _fold_blocks(out)
    for p in out.parameters():
        p.requires_grad_(False)
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    return out
