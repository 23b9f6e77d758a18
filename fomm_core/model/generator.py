"""Occlusion-aware generator: encode the source, warp its features by the dense motion, mask occlusions, decode.

`forward` keeps the original's signature and output dict. It is composed of three reusable parts so that an
engine animating many frames from one source can encode the source once:

    features = generator.encode_source(source)                 # per source
    motion = generator.motion(source, kp_driving, kp_source)   # per frame
    prediction = generator.decode(features, motion["deformation"], motion.get("occlusion_map"))
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fomm_core.model.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from fomm_core.model.dense_motion import DenseMotionNetwork


def warp(x, deformation, exact_resize=False):
    """Backward-warp x [B, C, H, W] by a flow [B, h, w, 2] of source (x, y) coordinates in [-1, 1].

    A flow of another size is first resized bilinearly. The original resizes with align_corners=False (its
    interpolate default on torch 1.0), which moves an identity flow by up to half a pixel; the published models
    never resize a flow on the way to their prediction (features and flow are both 64x64), so that only touches
    their `deformed` picture. exact_resize=True resizes with align_corners=True, which keeps an identity flow an
    identity (the flow's +-1 are the corner pixels' centres): our models whose features are larger than the flow
    need it. grid_sample uses align_corners=True, the behaviour the checkpoints were trained with.
    """
    h, w = x.shape[2:]
    if deformation.shape[1] != h or deformation.shape[2] != w:
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                    align_corners=exact_resize).permute(0, 2, 3, 1)
    return F.grid_sample(x, deformation, align_corners=True)


class OcclusionAwareGenerator(nn.Module):
    """source image + two keypoint sets -> the source re-posed as the driving frame (Johnson-style encoder-decoder)."""

    def __init__(self, num_channels, num_kp, block_expansion, max_features, num_down_blocks, num_bottleneck_blocks,
                 estimate_occlusion_map=False, dense_motion_params=None, estimate_jacobian=False,
                 exact_flow_resize=False):
        super().__init__()
        self.exact_flow_resize = exact_flow_resize  # see warp(); not in the published configs, so False there
        if dense_motion_params is not None:
            self.dense_motion_network = DenseMotionNetwork(num_kp=num_kp, num_channels=num_channels,
                                                           estimate_occlusion_map=estimate_occlusion_map,
                                                           **dense_motion_params)
        else:
            self.dense_motion_network = None

        def width(level):
            return min(max_features, block_expansion * (2 ** level))

        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))
        self.down_blocks = nn.ModuleList(
            DownBlock2d(width(i), width(i + 1), kernel_size=(3, 3), padding=(1, 1)) for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(width(num_down_blocks - i), width(num_down_blocks - i - 1), kernel_size=(3, 3), padding=(1, 1))
            for i in range(num_down_blocks))
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(width(num_down_blocks), kernel_size=(3, 3), padding=(1, 1)))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))

        self.estimate_occlusion_map = estimate_occlusion_map
        self.num_channels = num_channels

    # -- the parts ------------------------------------------------------------------------------------------------

    def encode_source(self, source_image):
        """[B, C, H, W] -> features [B, width(num_down_blocks), H / 2^n, W / 2^n]; depends on the source only."""
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        return out

    def motion(self, source_image, kp_driving, kp_source):
        """The dense motion dict: 'deformation' [B, h, w, 2], 'mask', 'sparse_deformed', maybe 'occlusion_map'."""
        if self.dense_motion_network is None:
            return {}
        return self.dense_motion_network(source_image=source_image, kp_driving=kp_driving, kp_source=kp_source)

    def warp_features(self, features, deformation, occlusion_map=None):
        """Warp encoded features by the flow and darken what the source cannot show (occlusion map in [0, 1])."""
        out = warp(features, deformation, self.exact_flow_resize)
        if occlusion_map is not None:
            if out.shape[2:] != occlusion_map.shape[2:]:
                occlusion_map = F.interpolate(occlusion_map, size=out.shape[2:], mode="bilinear", align_corners=False)
            out = out * occlusion_map
        return out

    def decode(self, features, deformation=None, occlusion_map=None):
        """Encoded source features (+ motion) -> prediction [B, C, H, W] in [0, 1]."""
        out = features
        if deformation is not None:
            out = self.warp_features(out, deformation, occlusion_map)
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        return torch.sigmoid(self.final(out))

    # -- the original's forward -----------------------------------------------------------------------------------

    def forward(self, source_image, kp_driving, kp_source):
        features = self.encode_source(source_image)
        out = {}
        deformation = occlusion_map = None
        if self.dense_motion_network is not None:
            motion = self.motion(source_image, kp_driving, kp_source)
            out["mask"] = motion["mask"]
            out["sparse_deformed"] = motion["sparse_deformed"]
            occlusion_map = motion.get("occlusion_map")
            if occlusion_map is not None:
                out["occlusion_map"] = occlusion_map
            deformation = motion["deformation"]
            out["deformation"] = deformation
            # the whole source warped at full resolution: for visualisation only, as the original
            out["deformed"] = warp(source_image, deformation, self.exact_flow_resize)
        out["prediction"] = self.decode(features, deformation, occlusion_map)
        return out
