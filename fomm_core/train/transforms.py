"""Random thin-plate-spline warps for FOMM's equivariance losses (affine part + TPS on a grid of control points)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fomm_core.model.blocks import make_coordinate_grid


class RandomTPS:
    """One random warp per batch element: x -> A x + t + sum_k w_k * r_k^2 log r_k, r_k = |x - c_k|_1.

    sigma_affine perturbs the 2x3 affine matrix around the identity, sigma_tps the weights of the
    points_tps x points_tps control points; coordinates are (x, y) in [-1, 1].
    """

    def __init__(self, batch, sigma_affine=0.05, sigma_tps=0.005, points_tps=5, generator=None, device=None):
        kw = {"generator": generator, "device": device}
        eye = torch.eye(2, 3, device=device)
        self.theta = eye + sigma_affine * torch.randn(batch, 2, 3, **kw)                 # [B, 2, 3]
        self.control = make_coordinate_grid((points_tps, points_tps), device=device).view(-1, 2)  # [P, 2]
        self.weights = sigma_tps * torch.randn(batch, 1, points_tps ** 2, **kw)        # [B, 1, P]

    def warp_coordinates(self, coords):
        """coords [B, N, 2] -> warped [B, N, 2]."""
        theta = self.theta.to(coords.dtype)
        out = coords @ theta[:, :, :2].transpose(1, 2) + theta[:, :, 2].unsqueeze(1)
        dist = (coords.unsqueeze(2) - self.control.view(1, 1, -1, 2)).abs().sum(-1)  # [B, N, P]
        radial = dist ** 2 * torch.log(dist + 1e-6)
        return out + (radial * self.weights).sum(dim=2, keepdim=True)

    def jacobian(self, coords):
        """d warp / d coords at coords [B, N, 2] -> [B, N, 2, 2] (rows: output x, y), differentiable."""
        coords = coords if coords.requires_grad else coords.detach().requires_grad_(True)
        warped = self.warp_coordinates(coords)
        gx = torch.autograd.grad(warped[..., 0].sum(), coords, create_graph=True)[0]
        gy = torch.autograd.grad(warped[..., 1].sum(), coords, create_graph=True)[0]
        return torch.stack([gx, gy], dim=-2)

    def warp_image(self, image):
        """image [B, C, H, W] -> image sampled at the warped grid (so keypoints move by the inverse warp)."""
        b, _, h, w = image.shape
        grid = make_coordinate_grid((h, w), image.dtype, image.device).view(1, -1, 2).expand(b, -1, -1)
        grid = self.warp_coordinates(grid).view(b, h, w, 2)
        return F.grid_sample(image, grid, padding_mode="reflection", align_corners=True)
