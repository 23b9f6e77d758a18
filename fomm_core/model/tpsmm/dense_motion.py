"""TPSMM dense motion: K thin-plate-spline warps and a background warp, blended by predicted contribution maps
into one flow, plus occlusion masks at four resolutions.

Shapes use B batch, K = num_tps transformations of 5 control points each, C image channels and (h, w) the
downsampled size (64x64 for a 256 input at scale_factor 0.25).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fomm_core.model.blocks import (Hourglass, UpBlock2d, add_downsampling, downsampled, instance_norm, kp2gaussian,
                                    make_coordinate_grid)

TPS_POINTS = 5        # control points per transformation
TPS_RIDGE = 0.01      # added to the spline system's diagonal, as the original (keeps it invertible)


def fit_tps(kp_from, kp_to):
    """Thin-plate splines mapping kp_from to kp_to, one per transformation: [B, K, n, 2] each (Eq. 2).

    -> (affine [B, K, 2, 3], radial weights [B, K, n, 2]); the radial basis is U(r) = r^2 log r^2. The system is
    solved by the original's operations in its order (an inverse, then a product), so the result is the same to
    the last bit: a 8x8 solve is no cheaper, and bit-equal keypoint motion keeps every later comparison tight.
    """
    b, k, n, _ = kp_from.shape
    dist2 = torch.norm(kp_from[:, :, :, None] - kp_from[:, :, None, :], dim=4, p=2) ** 2  # [B, K, n, n]
    radial = dist2 * torch.log(dist2 + 1e-9)
    p = torch.cat([kp_from, kp_from.new_ones(b, k, n, 1)], dim=3)                          # [B, K, n, 3]
    top = torch.cat([radial, p], dim=3)                                                    # [B, K, n, n+3]
    bottom = torch.cat([p.transpose(2, 3), kp_from.new_zeros(b, k, 3, 3)], dim=3)          # [B, K, 3, n+3]
    eye = torch.eye(n + 3, dtype=kp_from.dtype, device=kp_from.device)
    system = torch.cat([top, bottom], dim=2) + TPS_RIDGE * eye                             # [B, K, n+3, n+3]
    rhs = torch.cat([kp_to, kp_from.new_zeros(b, k, 3, 2)], dim=2)                         # [B, K, n+3, 2]
    params = torch.matmul(torch.inverse(system), rhs)
    return params[:, :, n:].transpose(2, 3), params[:, :, :n]


def tps_warp(affine, weights, kp_from, points):
    """points [P, 2] through every spline fitted by `fit_tps` -> [B, K, P, 2]."""
    b, k, n, _ = kp_from.shape
    out = torch.matmul(affine[..., :2], points.t()) + affine[..., 2:]                     # [B, K, 2, P]
    dist2 = ((points.view(1, 1, 1, -1, 2) - kp_from.view(b, k, n, 1, 2)) ** 2).sum(-1)    # [B, K, n, P]
    radial = torch.matmul((dist2 * torch.log(dist2 + 1e-9)).transpose(2, 3), weights)     # [B, K, P, 2]
    return out.transpose(2, 3) + radial


class DenseMotionNetwork(nn.Module):
    """Predicts the backward flow from driving-frame to source coordinates and the occlusion masks."""

    def __init__(self, block_expansion, num_blocks, max_features, num_tps, num_channels, scale_factor=0.25,
                 bg=False, multi_mask=True, kp_variance=0.01):
        super().__init__()
        add_downsampling(self, num_channels, scale_factor)
        self.multi_mask = multi_mask
        # input: a zero map and the K*5 heatmap differences, then the source deformed by each of the K+1 warps
        self.hourglass = Hourglass(block_expansion, in_features=num_channels * (num_tps + 1) + num_tps * 5 + 1,
                                   max_features=max_features, num_blocks=num_blocks, norm=instance_norm)
        levels = self.hourglass.level_channels                   # e.g. [2048, 1024, 512, 256, 148] for vox
        self.maps = nn.Conv2d(levels[-1], num_tps + 1, kernel_size=(7, 7), padding=(3, 3))
        if multi_mask:
            # masks at the hourglass's last levels, then at 2x and 4x its size (the input's size at scale 0.25)
            self.up_nums = int(math.log(1 / scale_factor, 2))
            self.occlusion_num = 4
            widths = [levels[-1] // (2 ** i) for i in range(self.up_nums)]
            self.up = nn.ModuleList(UpBlock2d(c, c // 2, kernel_size=3, padding=1, norm=instance_norm) for c in widths)
            widths = ([levels[-i - 1] for i in reversed(range(self.occlusion_num - self.up_nums))]
                      + [levels[-1] // (2 ** (i + 1)) for i in range(self.up_nums)])
        else:
            widths = [levels[-1]]
        self.occlusion = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=(7, 7), padding=(3, 3)) for c in widths)
        self.num_tps = num_tps
        self.bg = bg
        self.kp_variance = kp_variance

    # -- the steps, so that an engine can compute the source-only ones once per source ---------------------------

    def source_parts(self, source_image, kp_source) -> dict:
        """What depends on the source only: 'image' [B, C, h, w] (downsampled), 'heatmap' [B, K*5, h, w], 'kp'."""
        image = downsampled(self, source_image)
        heatmap = kp2gaussian({"value": kp_source["fg_kp"]}, image.shape[2:], self.kp_variance)
        return {"image": image, "heatmap": heatmap, "kp": kp_source["fg_kp"]}

    def heatmap_representation(self, source, kp_driving):
        """Driving minus source Gaussians of every control point, after a zero map -> [B, K*5+1, h, w]."""
        heatmap = kp2gaussian({"value": kp_driving["fg_kp"]}, source["image"].shape[2:], self.kp_variance)
        heatmap = heatmap - source["heatmap"]
        return torch.cat([torch.zeros_like(heatmap[:, :1]), heatmap], dim=1)

    @staticmethod
    def transformations(size, kp_driving, kp_source, bg_param=None):
        """The background warp (identity, or affine bg_param [B, 3, 3]) and K TPS warps -> [B, K+1, h, w, 2]."""
        return DenseMotionNetwork.fitted_warps(size, kp_driving, *DenseMotionNetwork.fit(kp_driving, kp_source),
                                               bg_param)

    @staticmethod
    def fit(kp_driving, kp_source):
        """The K splines from driving to source control points ([B, K*5, 2] each): affine [B, K, 2, 3], radial
        weights [B, K, 5, 2] (fit_tps)."""
        drv = kp_driving.view(kp_driving.shape[0], -1, TPS_POINTS, 2)                    # [B, K, 5, 2]
        src = kp_source.view(kp_source.shape[0], -1, TPS_POINTS, 2).expand_as(drv)
        return fit_tps(drv, src)

    @staticmethod
    def fitted_warps(size, kp_driving, affine, weights, bg_param=None):
        """`transformations` from splines already fitted (the fit's inverse is what a graph exporter cannot take)."""
        h, w = size
        drv = kp_driving.view(kp_driving.shape[0], -1, TPS_POINTS, 2)                    # [B, K, 5, 2]
        b, k = drv.shape[:2]
        grid = make_coordinate_grid((h, w), drv.dtype, drv.device)                         # [h, w, 2]
        tps = tps_warp(affine, weights, drv, grid.view(-1, 2)).view(b, k, h, w, 2)
        background = grid.view(1, 1, h, w, 2).expand(b, 1, h, w, 2)
        if bg_param is not None:
            homogeneous = torch.cat([background, torch.ones_like(background[..., :1])], dim=-1)
            moved = (bg_param.view(b, 1, 1, 1, 3, 3) @ homogeneous.unsqueeze(-1)).squeeze(-1)
            background = moved[..., :2] / moved[..., 2:3]
        return torch.cat([background, tps], dim=1)

    @staticmethod
    def deformed_source(image, transformations):
        """The downsampled source warped by each of the K+1 warps -> [B, K+1, C, h, w]."""
        b, n, h, w = transformations.shape[:4]
        c = image.shape[1]
        repeated = image.unsqueeze(1).expand(b, n, c, h, w).reshape(b * n, c, h, w)
        deformed = F.grid_sample(repeated, transformations.reshape(b * n, h, w, 2), align_corners=True)
        return deformed.view(b, n, c, h, w)

    @staticmethod
    def hourglass_input(heatmaps, deformed):
        """[B, K*5+1, h, w] and [B, K+1, C, h, w] -> [B, K*5+1 + (K+1)C, h, w]."""
        b, _, _, h, w = deformed.shape
        return torch.cat([heatmaps, deformed.reshape(b, -1, h, w)], dim=1)

    def heads(self, levels):
        """The hourglass's level outputs -> (contribution logits [B, K+1, h, w], occlusion logits, coarsest first)."""
        if not self.multi_mask:
            return self.maps(levels[-1]), [self.occlusion[0](levels[-1])]
        first = self.occlusion_num - self.up_nums
        logits = [self.occlusion[i](levels[i - first]) for i in range(first)]
        out = levels[-1]
        for i, up in enumerate(self.up):
            out = up(out)
            logits.append(self.occlusion[first + i](out))
        return self.maps(levels[-1]), logits

    @staticmethod
    def blend(transformations, contribution_logits, occlusion_logits) -> dict:
        """Eq. 6: the K+1 warps weighted by the softmax contribution maps -> 'deformation' [B, h, w, 2] and masks.

        The logits are taken to the warps' precision first (they may come from a half-precision network).
        """
        maps = F.softmax(contribution_logits.to(transformations.dtype), dim=1)                 # [B, K+1, h, w]
        deformation = (transformations.permute(0, 1, 4, 2, 3) * maps.unsqueeze(2)).sum(dim=1)  # [B, 2, h, w]
        occlusion = [torch.sigmoid(x.to(transformations.dtype)) for x in occlusion_logits]
        return {"contribution_maps": maps, "deformation": deformation.permute(0, 2, 3, 1),
                "occlusion_map": occlusion}

    def forward(self, source_image, kp_driving, kp_source, bg_param=None):
        source = self.source_parts(source_image, kp_source)
        heatmaps = self.heatmap_representation(source, kp_driving)
        warps = self.transformations(source["image"].shape[2:], kp_driving["fg_kp"], kp_source["fg_kp"], bg_param)
        deformed = self.deformed_source(source["image"], warps)
        levels = self.hourglass(self.hourglass_input(heatmaps, deformed), every_level=True)
        out = self.blend(warps, *self.heads(levels))
        out["deformed_source"] = deformed
        return out
