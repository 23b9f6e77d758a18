"""Animation via disentanglement (TPSMM's `avd` mode): the source's identity combined with the driving pose."""
from __future__ import annotations

import torch
from torch import nn


def _mlp(sizes, inplace=True):
    """Linear -> BN -> ReLU for each step but the last, which is a plain Linear."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=inplace)]
    return nn.Sequential(*layers)


class AVDNetwork(nn.Module):
    """(source keypoints, driving keypoints) {'fg_kp': [B, K*5, 2]} -> keypoints of the source posed as the driving."""

    def __init__(self, num_tps, id_bottle_size=64, pose_bottle_size=64):
        super().__init__()
        input_size = 5 * 2 * num_tps
        self.num_tps = num_tps
        self.id_encoder = _mlp([input_size, 256, 512, 1024, id_bottle_size])
        self.pose_encoder = _mlp([input_size, 256, 512, 1024, pose_bottle_size])
        self.decoder = _mlp([pose_bottle_size + id_bottle_size, 1024, 512, 256, input_size], inplace=False)

    def forward(self, kp_source, kp_random):
        b = kp_source["fg_kp"].shape[0]
        pose = self.pose_encoder(kp_random["fg_kp"].reshape(kp_random["fg_kp"].shape[0], -1))   # [B', pose]
        identity = self.id_encoder(kp_source["fg_kp"].reshape(b, -1)).expand(pose.shape[0], -1)  # [B', id]
        rec = self.decoder(torch.cat([pose, identity], dim=1))
        return {"fg_kp": rec.view(rec.shape[0], self.num_tps * 5, -1)}
