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

LivePortrait (the second part; fomm_core.inference.liveportrait applies it):
  FusedSpadeDecoder  G re-associated around what its SPADE norms share: 376 GMAC a frame against 446 at 256 px
                     (SpadeActivations, FusedSpadeResnetBlock), float32 within ~2e-5 of G
  fused_warping      W's batch norms folded, its up blocks sub-pixel in 3-D (SubpixelUpBlock3d), its pooling kept
                     in half precision (PlanePool), for the half-precision paths only: W's rounding is amplified
                     by the warp, so the exact path runs it as published
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def fold_bn(conv: nn.Module, bn: nn.Module) -> nn.Module:
    """A new conv (2-D or 3-D) equal to bn(conv(x)) with bn in eval mode: w' = w * g / s,
    b' = (b - mean) * g / s + beta."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var.detach() + bn.eps)
    fused = copy.deepcopy(conv)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.view(-1, *[1] * (conv.weight.dim() - 1)))
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
                if isinstance(conv, (nn.Conv2d, nn.Conv3d)) and isinstance(bn, (nn.BatchNorm2d, nn.BatchNorm3d)):
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


# ----------------------------------------------------------------------------------------------------------------
# LivePortrait: W's batch norms folded and up blocks sub-pixel; G's SPADE blocks rewritten around what they share


class SubpixelUpBlock3d(nn.Module):
    """LivePortrait's UpBlock3d (nearest 1x2x2 upsample -> 3x3x3 conv -> ReLU, its BN folded) as SubpixelUpBlock
    does it in 2-D: the three depth taps stay, each 3x3 plane becomes a 2x2 window per output phase, so one
    3x2x2 conv with 4x the output channels on the small volume gives all four phases: 12/27 of the multiply-adds
    (on (H+1) x (W+1) positions: worth it from 8 wide). NCDHW or channels-last-3d, kept.
    """

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        w = conv.weight.detach()                                   # [Cout, Cin, 3, 3, 3]
        merge = _nearest_phases(2, w.dtype, w.device)[0]           # [phase, tap2, tap3]
        w4 = torch.einsum("apr,bqs,oidrs->aboidpq", merge, merge, w)  # [2, 2, Cout, Cin, 3, 2, 2]
        self.cout = w.shape[0]
        self.weight = nn.Parameter(w4.reshape(4 * self.cout, w.shape[1], 3, 2, 2).contiguous(), requires_grad=False)
        self.bias = nn.Parameter(conv.bias.detach().repeat(4), requires_grad=False)

    def forward(self, x):                                           # [B, Cin, D, H, W]
        b, _, d, h, w = x.shape
        y = F.conv3d(x, self.weight, self.bias, padding=1)          # [B, 4 Cout, D, H+1, W+1], phase-major
        if x.is_contiguous(memory_format=torch.channels_last_3d):
            y = y.permute(0, 2, 3, 4, 1).view(b, d, h + 1, w + 1, 2, 2, self.cout)
            out = y.new_empty(b, d, h, 2, w, 2, self.cout)
            for a in (0, 1):
                for c in (0, 1):  # phase (a, c) lives at rows a..a+H, cols c..c+W
                    out[:, :, :, a, :, c] = y[:, :, a:a + h, c:c + w, a, c]
            out = out.view(b, d, 2 * h, 2 * w, self.cout).permute(0, 4, 1, 2, 3)
        else:
            y = y.view(b, 2, 2, self.cout, d, h + 1, w + 1)
            out = y.new_empty(b, self.cout, d, h, 2, w, 2)
            for a in (0, 1):
                for c in (0, 1):
                    out[:, :, :, :, a, :, c] = y[:, a, c, :, :, a:a + h, c:c + w]
            out = out.view(b, self.cout, d, 2 * h, 2 * w)
        return F.relu_(out)                                         # [B, Cout, D, 2H, 2W]


def fused_warping(warping: nn.Module, dtype=None, volume_side: int = 64) -> nn.Module:
    """An inference copy of LivePortrait's W, for the half-precision paths: every conv -> batch norm pair folded (the
    hourglass, the compression of the volume, `third`), the hourglass's up blocks sub-pixel (SubpixelUpBlock3d)
    where their input is at least 8 wide (`volume_side` is the feature volume's: 64 for the 256-px crop), its
    pooling a 2-D pooling that autocast keeps in half precision. With a `dtype`, the conv weights are cast to it
    once rather than by autocast on every call, and the hourglass and mask run on its input cast to it, in
    channels-last-3d memory (oneDNN's faster layout for these half-precision 3-D convs).

    Its rounding moves the frames by ~1e-4 even in float32 (the warp amplifies it), so the exact path runs W as
    published."""
    from fomm_core.model.liveportrait.blocks import UpBlock3d
    out = copy.deepcopy(warping).eval()
    _fold_blocks(out)
    dense = out.dense_motion_network
    dense.compress, dense.norm = fold_bn(dense.compress, dense.norm), nn.Identity()
    hourglass = dense.hourglass
    for block in hourglass.encoder.down_blocks:
        block.pool = PlanePool()
    ups = hourglass.decoder.up_blocks
    for i, block in enumerate(ups):
        side = volume_side >> (len(ups) - i)                         # the deepest up block sees the smallest
        if isinstance(block, UpBlock3d) and isinstance(block.norm, nn.Identity) and side >= 8:
            ups[i] = SubpixelUpBlock3d(block.conv)
    if dtype is not None:
        for module in out.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d, SubpixelUpBlock3d)):
                module.to(dtype)
        dense.hourglass = CastInput(hourglass, dtype, torch.channels_last_3d)
    for p in out.parameters():
        p.requires_grad_(False)
    return out


class PlanePool(nn.Module):
    """AvgPool3d over 1x2x2 as a 2-D pooling of the volume's D planes: the same sums, and autocast keeps it in half
    precision (it runs avg_pool3d in float32, copying the volume there and back). NCDHW or channels-last-3d."""

    def forward(self, x):                                           # [B, C, D, H, W]
        b, c, d, h, w = x.shape
        if x.is_contiguous(memory_format=torch.channels_last_3d):
            planes = x.transpose(1, 2).reshape(b * d, c, h, w)      # a view: [B*D, C, H, W] channels-last
            return F.avg_pool2d(planes, 2).view(b, d, c, h // 2, w // 2).transpose(1, 2)
        return F.avg_pool2d(x.reshape(b, c * d, h, w), 2).view(b, c, d, h // 2, w // 2)


class CastInput(nn.Module):
    """`inner` on its input cast to `dtype` and `memory` format (the hourglass's: its skips are concatenated with
    its up blocks' outputs, so they must match)."""

    def __init__(self, inner: nn.Module, dtype, memory=torch.contiguous_format):
        super().__init__()
        self.inner, self.dtype, self.memory = inner, dtype, memory

    def forward(self, x):
        return self.inner(x.to(self.dtype).contiguous(memory_format=self.memory))


def _nearest_phases(scale: int, dtype=torch.float32, device=None):
    """How a 3x3 conv (padding 1) of an image upsampled `scale`x (nearest) reads the small image, per axis.

    Output row scale*i + a (phase a) takes tap t (rows -1, 0, +1) from small row i + floor((a + t - 1) / scale):
    two small rows at most, in a 2-row window that starts at row i + offset(a) - 1, offset 1 for the last phase
    (it reaches the row below) and 0 for the others. Phases that read alike (the middle ones when scale > 2) are
    one class. -> (merge [classes, 2, 3]: tap t lands on window row r where merge[k, r, t] = 1, offset
    [classes], class_of [scale])."""
    rows, offsets, class_of = [], [], []
    for a in range(scale):
        offset = 1 if a == scale - 1 else 0
        merge = torch.zeros(2, 3, dtype=dtype, device=device)
        for t in range(3):
            merge[1 - offset + (a + t - 1) // scale, t] = 1
        found = [k for k, m in enumerate(rows) if offsets[k] == offset and torch.equal(m, merge)]
        if not found:
            rows.append(merge)
            offsets.append(offset)
        class_of.append(found[0] if found else len(rows) - 1)
    return torch.stack(rows), offsets, class_of


class SpadeActivations(nn.Module):
    """relu(mlp_shared(layout resized)) of several SPADE norms at one resolution, from the one layout they all read
    (G's input features): [1, 256, H, W] -> [n, 128, scale*H, scale*W], norm k's in row k, in the layout's memory
    format (NCHW or channels-last).

    The layout at scale 2 or 4 is a nearest upsample, so its 3x3 convs are computed on the small layout as
    SubpixelUpBlock does: every output phase sees a 2x2 window with some taps summed, so one 2x2 conv gives all
    phase classes (_nearest_phases: 4 at scale 2, 9 at scale 4, where the middle rows read alike): 4/9 and 1/4
    of the multiply-adds. The norms' convs run as one conv with their output channels side by side.
    """

    def __init__(self, convs, scale: int):
        super().__init__()
        w = torch.cat([c.weight.detach() for c in convs])          # [n*128, 256, 3, 3]
        bias = torch.cat([c.bias.detach() for c in convs])
        self.scale, self.parts, self.channels = scale, len(convs), convs[0].out_channels
        if scale > 1:
            merge, self.offsets, self.class_of = _nearest_phases(scale, w.dtype, w.device)
            w = torch.einsum("apr,bqs,oirs->aboipq", merge, merge, w)  # [classes, classes, n*128, 256, 2, 2]
            w = w.reshape(-1, *w.shape[3:])
            bias = bias.repeat(len(merge) ** 2)
        self.weight = nn.Parameter(w.contiguous(), requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, layout):                                      # [1, 256, H, W]
        _, _, h, w = layout.shape
        s, n, c = self.scale, self.parts, self.channels
        y = F.conv2d(layout, self.weight, self.bias, padding=1)     # [1, classes**2 * n*c, H(+1), W(+1)]
        if layout.is_contiguous(memory_format=torch.channels_last):
            return self._phases_channels_last(y, h, w)
        if s == 1:
            return F.relu_(y.view(n, c, h, w))
        k = len(self.offsets)
        y = y.view(k, k, n, c, h + 1, w + 1)
        out = y.new_empty(n, c, h, s, w, s)
        for a in range(s):
            for b in range(s):  # phase (a, b): its class's output at window offset (offset(a), offset(b))
                ka, kb = self.class_of[a], self.class_of[b]
                ra, rb = self.offsets[ka], self.offsets[kb]
                out[:, :, :, a, :, b] = y[ka, kb, :, :, ra:ra + h, rb:rb + w]
        return F.relu_(out.view(n, c, s * h, s * w))

    def _phases_channels_last(self, y, h, w):
        """forward's gather for a channels-last layout: [n, c, sH, sW] in channels-last memory."""
        s, n, c = self.scale, self.parts, self.channels
        y = y.permute(0, 2, 3, 1)                                   # free on channels-last
        if s == 1:
            out = y.reshape(h, w, n, c).permute(2, 0, 1, 3).contiguous()     # [n, H, W, c]
        else:
            k = len(self.offsets)
            y = y.reshape(h + 1, w + 1, k, k, n, c)
            out = y.new_empty(n, h, s, w, s, c)
            for a in range(s):
                for b in range(s):
                    ka, kb = self.class_of[a], self.class_of[b]
                    ra, rb = self.offsets[ka], self.offsets[kb]
                    out[:, :, a, :, b] = y[ra:ra + h, rb:rb + w, ka, kb].permute(2, 0, 1, 3)
        return F.relu_(out.view(n, s * h, s * w, c)).permute(0, 3, 1, 2)


def instance_normalized(x, eps: float = 1e-5):
    """InstanceNorm2d without affine (SPADE's param_free_norm): (x - mean) / sqrt(var + eps) per image and channel.
    Two passes (mean, then the centred squares): torch.var_mean reduces a channels-last tensor 5x slower."""
    centred = x - x.mean(dim=(2, 3), keepdim=True)
    var = (centred * centred).mean(dim=(2, 3), keepdim=True)
    return centred.mul_(torch.rsqrt(var + eps))


def _conv_copy(conv: nn.Conv2d, bias_offset: float = 0.0) -> nn.Conv2d:
    """A copy of `conv` with `bias_offset` added to its bias (1.0 turns gamma into SPADE's 1 + gamma)."""
    out = copy.deepcopy(conv)
    with torch.no_grad():
        out.bias.add_(bias_offset)
    return out


def _composed(outer: nn.Conv2d, inner: nn.Conv2d) -> nn.Conv2d:
    """One conv equal to outer(inner(x)) for a bias-free 1x1 `outer`: its matrix times inner's weight and bias."""
    matrix = outer.weight.detach()[:, :, 0, 0].double()               # [Cout, Cmid]
    w = inner.weight.detach().double()                                # [Cmid, Cin, k, k]
    out = nn.Conv2d(inner.in_channels, outer.out_channels, inner.kernel_size, padding=inner.padding)
    with torch.no_grad():
        out.weight.copy_((matrix @ w.flatten(1)).view(-1, *w.shape[1:]))
        out.bias.copy_(matrix @ inner.bias.detach().double())
    return out.to(inner.weight.dtype)


class FusedSpadeResnetBlock(nn.Module):
    """SPADEResnetBlock given its input's instance norm and its norms' layout activations (SpadeActivations):
    each SPADE is then normalized * gamma'(actv) + beta(actv), one multiply-add, with the 1 of (1 + gamma) in
    gamma's bias; the learned shortcut conv_s(n * (1 + gamma_s) + beta_s) is conv_s(n * gamma_s') + beta_s'
    with the 1x1 conv_s composed into beta_s (a 3x3 conv to fout channels instead of fin)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.learned_shortcut = block.learned_shortcut
        self.gamma_0, self.beta_0 = _conv_copy(block.norm_0.mlp_gamma, 1.0), _conv_copy(block.norm_0.mlp_beta)
        self.gamma_1, self.beta_1 = _conv_copy(block.norm_1.mlp_gamma, 1.0), _conv_copy(block.norm_1.mlp_beta)
        self.conv_0, self.conv_1 = _conv_copy(block.conv_0), _conv_copy(block.conv_1)
        if self.learned_shortcut:
            self.gamma_s = _conv_copy(block.norm_s.mlp_gamma, 1.0)
            self.conv_s = copy.deepcopy(block.conv_s)
            self.beta_s = _composed(block.conv_s, block.norm_s.mlp_beta)

    @staticmethod
    def layout_convs(block: nn.Module) -> list:
        """The block's SPADE layout convs in the order forward reads their activations: norm_0, norm_1, norm_s."""
        norms = [block.norm_0, block.norm_1] + ([block.norm_s] if block.learned_shortcut else [])
        return [norm.mlp_shared[0] for norm in norms]

    def forward(self, x, normalized, actv):                          # actv [2 or 3, 128, H, W]
        a_0, a_1 = actv[0:1], actv[1:2]
        if self.learned_shortcut:
            a_s = actv[2:3]
            shortcut = self.conv_s(normalized * self.gamma_s(a_s)).add_(self.beta_s(a_s))
        else:
            shortcut = x
        dx = torch.addcmul(self.beta_0(a_0), normalized, self.gamma_0(a_0))
        dx = self.conv_0(F.leaky_relu_(dx, 0.2))
        dx = torch.addcmul(self.beta_1(a_1), instance_normalized(dx), self.gamma_1(a_1))
        dx = self.conv_1(F.leaky_relu_(dx, 0.2))
        return dx.add_(shortcut)


class FusedSpadeDecoder(nn.Module):
    """An inference copy of LivePortrait's G (SPADEDecoder), the same function re-associated around what its 18
    SPADE norms share: they all read one layout (G's input), so their first convs run per resolution up front
    (SpadeActivations: sub-pixel at 128 and 256 px, where the layout is a nearest upsample), and the up blocks'
    input is a nearest upsample too, so its instance norm is taken before upsampling. 376 GMAC (billion
    multiply-adds) a frame against G's 446 (256-px crop).

    channels_last: the resolutions (0: 64, 1: 128, 2: 256 px for the 256-px crop) run in channels-last memory.
    On oneDNN's CPU kernels that is faster and rounds worse in float32 (about 1e-5 per conv against 1.5e-6); at
    64 px the rounding runs through eight blocks, at 128 and 256 it does not and the speed is there, so the
    default (1, 2) keeps G within ~2e-5 of the original (all three levels: 6e-5)."""

    def __init__(self, generator: nn.Module, channels_last=(1, 2)):
        super().__init__()
        middle = [getattr(generator, f"G_middle_{i}") for i in range(6)]
        self.fc, self.conv_img = copy.deepcopy(generator.fc), copy.deepcopy(generator.conv_img)
        self.middle = nn.ModuleList(FusedSpadeResnetBlock(block) for block in middle)
        self.up_0, self.up_1 = FusedSpadeResnetBlock(generator.up_0), FusedSpadeResnetBlock(generator.up_1)
        convs = FusedSpadeResnetBlock.layout_convs
        self.activations = nn.ModuleList([
            SpadeActivations([c for block in middle for c in convs(block)], 1),
            SpadeActivations(convs(generator.up_0), 2), SpadeActivations(convs(generator.up_1), 4)])
        self.memory = [torch.channels_last if level in channels_last else torch.contiguous_format
                       for level in range(3)]
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, feature):                                     # [B, 256, H, W]
        if feature.shape[0] > 1:
            return torch.cat([self(one[None]) for one in feature])
        memory = self.memory
        act_middle, act_0, act_1 = (acts(feature.contiguous(memory_format=m))  # [12|3|3, 128, (1|2|4)H, ...]
                                    for acts, m in zip(self.activations, memory))
        x = self.fc(feature.contiguous(memory_format=memory[0]))   # [1, 512, H, W]
        for i, block in enumerate(self.middle):
            x = block(x, instance_normalized(x), act_middle[2 * i:2 * i + 2])
        x = self.up_0(None, _upsampled(instance_normalized(x), memory[1]), act_0)    # [1, 256, 2H, 2W]
        x = self.up_1(None, _upsampled(instance_normalized(x), memory[2]), act_1)    # [1, 64, 4H, 4W]
        return torch.sigmoid(self.conv_img(F.leaky_relu_(x, 0.2)))                  # [1, 3, 8H, 8W]


def _upsampled(x, memory):
    """Nearest 2x upsample, in `memory` format (converted before, where it is a quarter of the size)."""
    return F.interpolate(x.contiguous(memory_format=memory), scale_factor=2, mode="nearest")
