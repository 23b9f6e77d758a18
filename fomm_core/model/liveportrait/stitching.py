"""Stitching and retargeting (S and R in the paper): small MLPs on flattened keypoints.

    stitching  [x_s, x_d] (2 x 21 x 3 = 126) -> 63 keypoint offsets + (tx, ty): keeps the crop's edges (the
               shoulders) where the source has them, so the animated crop pastes back without a seam
    lip        [x_s, lip-open ratios] (65) -> 63 offsets that open or close the mouth
    eye        [x_s, eye-open ratios] (66) -> 63 offsets that open or close the eyes

The published file holds the three as retarget_shoulder, retarget_mouth and retarget_eye. The ratios come from
face landmarks; motion.stitch applies the stitching network as the original pipeline does.
"""
from __future__ import annotations

from torch import nn


class StitchingRetargetingNetwork(nn.Module):
    """Linear -> ReLU -> ... -> Linear; `mlp.0`, `mlp.2`, ... are the published names (ReLUs hold the odd slots)."""

    def __init__(self, input_size, hidden_sizes, output_size):
        super().__init__()
        sizes = [input_size, *hidden_sizes]
        layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], output_size))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x):
        return self.mlp(x)


class StitchingRetargeting(nn.Module):
    """The three MLPs of the published stitching_retargeting_module.pth, as `stitching`, `lip` and `eye`."""

    def __init__(self, stitching, lip, eye):
        super().__init__()
        self.stitching = StitchingRetargetingNetwork(**stitching)
        self.lip = StitchingRetargetingNetwork(**lip)
        self.eye = StitchingRetargetingNetwork(**eye)
