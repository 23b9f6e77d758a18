"""FOMM's int8 design: two graphs, both quantised.

    keypoints: frames [B, 3, S, S] -> value [B, K, 2], jacobian [B, K, 2, 2]
    render:    driving keypoints (normalised) + the engine's cached source -> frames [B, 3, S, S] in 0..1
               (dense motion with closed-form 2x2 inverses, feature warp, decoder)
"""
from __future__ import annotations

from torch import nn

from fomm_core.inference.int8 import Design, Int8Runner, np_array
from fomm_core.inference.motion import inverse_2x2


class KeypointGraph(nn.Module):
    """frames [B, 3, S, S] -> (value [B, K, 2], jacobian [B, K, 2, 2])."""

    def __init__(self, kp_detector):
        super().__init__()
        self.kp_detector = kp_detector

    def forward(self, frames):
        kp = self.kp_detector(frames)
        return kp["value"], kp["jacobian"]


class RenderGraph(nn.Module):
    """Normalised driving keypoints + the cached source -> the animated frames [B, 3, S, S] in 0..1.

    Inputs: value [B, K, 2], jacobian [B, K, 2, 2]; the source's value [1, K, 2], jacobian [1, K, 2, 2],
    downsampled image [1, 3, h, w], Gaussian heatmaps [1, K, h, w] and encoder features [1, F, h', w'].
    """

    def __init__(self, generator):
        super().__init__()
        self.generator = generator

    def forward(self, value, jacobian, source_value, source_jacobian, source_image, source_heatmap, features):
        dm = self.generator.dense_motion_network
        kp_driving = {"value": value, "jacobian": jacobian}
        kp_source = {"value": source_value, "jacobian": source_jacobian}
        source = {"image": source_image, "heatmap": source_heatmap}
        heatmaps = dm.create_heatmap_representations(source, kp_driving)                # [B, K+1, 1, h, w]
        sparse = dm.create_sparse_motions(source_image.shape[2:], kp_driving, kp_source, inverse_2x2)
        x = dm.hourglass_input(heatmaps, dm.create_deformed_source_image(source_image, sparse))
        motion = dm.dense_flow(sparse, *dm.heads(dm.hourglass(x)))
        batch = value.shape[0]
        warped = self.generator.warp_features(features.expand(batch, -1, -1, -1), motion["deformation"],
                                              motion.get("occlusion_map"))
        return self.generator.decode(warped)


def source_inputs(source) -> tuple:
    """The engine's cached source (keys 'kp', 'motion', 'features') as the render graph's source inputs."""
    kp, motion = source["kp"], source["motion"]
    return (kp["value"], kp["jacobian"], motion["image"], motion["heatmap"], source["features"])


class FommRunner(Int8Runner):
    """FOMM's keypoints and render on the compiled graphs."""

    _source, _source_arrays = None, []

    def keypoints(self, frames) -> dict:
        import torch
        value, jacobian = self.run("keypoints", np_array(frames))
        return {"value": torch.from_numpy(value), "jacobian": torch.from_numpy(jacobian)}

    def render(self, kp_driving, source):
        import torch
        if self._source is not source:  # the source's arrays once per source, not per batch (features: MBs)
            self._source, self._source_arrays = source, [np_array(t) for t in source_inputs(source)]
        inputs = [np_array(kp_driving["value"]), np_array(kp_driving["jacobian"])] + self._source_arrays
        return torch.from_numpy(self.run("render", inputs)[0])


def _graphs(networks) -> dict:
    return {"keypoints": KeypointGraph(networks["kp_detector"].eval()),
            "render": RenderGraph(networks["generator"].eval())}


def _samples(exact, pairs) -> list:
    """Per driving frame: the frame, and the render graph's inputs as the exact engine computes them."""
    samples = []
    for source, driving in pairs:
        exact.set_source(source)
        kp = exact.keypoints(driving)
        exact._set_reference_kp({k: v[:1] for k, v in kp.items()})
        moved = exact.transfer(kp)
        src = [np_array(t) for t in source_inputs(exact._source)]
        for i in range(driving.shape[0]):
            samples.append({"keypoints": [np_array(driving[i:i + 1])],
                            "render": [np_array(moved["value"][i:i + 1]),
                                       np_array(moved["jacobian"][i:i + 1])] + src})
    return samples


def _supported(networks) -> str:
    if networks["generator"].dense_motion_network is None:
        return "the int8 path needs a model with a dense motion network"
    if getattr(networks["kp_detector"], "jacobian", None) is None:
        return "the int8 path needs a model whose keypoints have Jacobians"
    return ""


FOMM_INT8 = Design(family="", names=("keypoints", "render"), quantised=("keypoints", "render"),
                   free_batch={"keypoints": 1, "render": 2}, graphs=_graphs, samples=_samples, runner=FommRunner,
                   supported=_supported)
