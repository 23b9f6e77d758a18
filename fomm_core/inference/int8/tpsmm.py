"""TPSMM's int8 design: four graphs, split where OpenVINO's support ends and where int8 stops being accurate.

    source:    the source image [1, 3, S, S] -> the encoder's levels, finest first (once per source)           int8
    keypoints: frames [B, 3, S, S] -> fg_kp [B, K*5, 2]                                   OpenVINO float32
    (torch)    the thin-plate-spline fit of every driving keypoint set: an inverse, which does not export
               -> affine [B, K, 2, 3], radial weights [B, K, 5, 2]
    motion:    fg_kp, the fit + the source's downsampled image and Gaussians -> flow [B, h, w, 2] and the occlusion
               masks, coarsest first (the K+1 warps, heatmaps, deformed source, hourglass, heads, softmax blend;
               OpenVINO runs the warps' small products in a fraction of torch's time)
                                             float32, but for the occlusion masks' heads (`up`, `occlusion`): int8
    render:    flow, masks + the source's encoder levels and image -> frames [B, 3, S, S] in 0..1 (warp, mask,
               decoder: about 100 GMAC of a 256-px frame's work)                                   int8

Measured on vox-256 stress weights, 2 threads, an AMD EPYC with AVX512-BF16, PSNR against exact float32 on
held-out faces (the build's verdict), and per frame at 256 px:
- the keypoint detector in int8 costs the picture (21.8 dB: its keypoints place every TPS control point);
- the whole motion graph in int8: 35.6 dB alone, 34.2 with the decoder; its hourglass in int8 with the heads kept
  float: 30.2 dB (the flow comes out of the hourglass). Its occlusion heads alone in int8 keep the verdict at 38.0 dB
  and take the graph from 67 ms to 38 (they ran at 64 and 128 px: 30 of its 59 ms in float32);
- the decoder in int8 keeps 39.3 dB and does most of the work (155 ms);
- the source's encoder in int8: 100 -> 47 ms once per source, the verdict 38.1 -> 38.0 dB.
"""
from __future__ import annotations

from torch import nn

from fomm_core.inference.int8 import Design, Int8Runner, np_array
from fomm_core.model.tpsmm.dense_motion import DenseMotionNetwork
from fomm_core.model.tpsmm.inpainting_network import warp


class SourceGraph(nn.Module):
    """The source image [1, 3, S, S] -> the inpainting encoder's levels, finest first (in int8 47 ms against torch's
    168 at 256 px here)."""

    def __init__(self, inpainting):
        super().__init__()
        self.inpainting = inpainting

    def forward(self, image):
        return tuple(self.inpainting.encode_source(image))


class KeypointGraph(nn.Module):
    """frames [B, 3, S, S] -> fg_kp [B, K*5, 2]."""

    def __init__(self, kp_detector):
        super().__init__()
        self.kp_detector = kp_detector

    def forward(self, frames):
        return self.kp_detector(frames)["fg_kp"]


class MotionGraph(nn.Module):
    """fg_kp [B, K*5, 2], the splines fitted to them (affine [B, K, 2, 3], weights [B, K, 5, 2]), the source's
    image [1, 3, h, w] and Gaussians [1, K*5, h, w] -> (flow [B, h, w, 2], occlusion masks, coarsest first)."""

    def __init__(self, dense_motion):
        super().__init__()
        self.dense_motion = dense_motion

    def forward(self, kp, affine, weights, source_image, source_heatmap):
        dm = self.dense_motion
        warps = dm.fitted_warps(source_image.shape[2:], kp, affine, weights)  # [B, K+1, h, w, 2]
        heatmaps = dm.heatmap_representation({"image": source_image, "heatmap": source_heatmap}, {"fg_kp": kp})
        x = dm.hourglass_input(heatmaps, dm.deformed_source(source_image, warps))
        motion = dm.blend(warps, *dm.heads(dm.hourglass(x, every_level=True)))
        return (motion["deformation"],) + tuple(motion["occlusion_map"])


class RenderGraph(nn.Module):
    """flow [B, h, w, 2], the masks, the source [1, 3, H, W] and its encoder levels (finest first) -> frames."""

    def __init__(self, inpainting, masks: int):
        super().__init__()
        self.inpainting, self.masks = inpainting, masks

    def forward(self, flow, *rest):
        masks, image, levels = list(rest[:self.masks]), rest[self.masks], rest[self.masks + 1:]
        net, batch = self.inpainting, flow.shape[0]
        levels = [x.expand(batch, -1, -1, -1) for x in levels]
        image = image.expand(batch, -1, -1, -1)
        warped = net.warped_levels(levels, flow, masks)
        return net.decode(warped, warp(image, flow), net.occlusion_at(masks, -1, image.shape[2:]))


def _motion_inputs(kp, motion) -> list:
    """The motion graph's inputs for driving keypoints kp [B, K*5, 2] and the engine's cached motion parts."""
    affine, weights = DenseMotionNetwork.fit(kp, motion["kp"])  # float32, in torch: an inverse does not export
    return [np_array(kp), np_array(affine), np_array(weights), np_array(motion["image"]), np_array(motion["heatmap"])]


def _source_arrays(source) -> list:
    return [np_array(source["image"])] + [np_array(x) for x in source["levels"]]


class TpsRunner(Int8Runner):
    """TPSMM's keypoints and render on the compiled graphs, one frame at a time (as the engine on the CPU)."""

    _source, _source_arrays = None, []

    def keypoints(self, frames) -> dict:
        import torch
        return {"fg_kp": torch.from_numpy(self.run("keypoints", np_array(frames))[0])}

    def encode_source(self, image) -> list:
        """The encoder's levels of the source image [1, 3, S, S], finest first."""
        import torch
        return [torch.from_numpy(a) for a in self.run("source", np_array(image))]

    def render(self, kp, source):
        import torch
        if self._source is not source:  # the encoder levels once per source (MBs), not per frame
            self._source, self._source_arrays = source, _source_arrays(source)
        frames = []
        for i in range(kp["fg_kp"].shape[0]):
            motion = self.run("motion", _motion_inputs(kp["fg_kp"][i:i + 1], source["motion"]))
            frames.append(torch.from_numpy(self.run("render", motion + self._source_arrays)[0]))
        return torch.cat(frames)


def _graphs(networks) -> dict:
    inpainting = networks["inpainting_network"].eval()
    masks = inpainting.num_down_blocks + 1 if inpainting.multi_mask else 1
    return {"source": SourceGraph(inpainting), "keypoints": KeypointGraph(networks["kp_detector"].eval()),
            "motion": MotionGraph(networks["dense_motion_network"].eval()),
            "render": RenderGraph(inpainting, masks)}


def _samples(exact, pairs) -> list:
    """Per driving frame: the frame, and the motion and render graphs' inputs as the exact engine computes them."""
    import torch
    samples = []
    for source, driving in pairs:
        exact.set_source(source)
        with exact._running():
            kp = exact._keypoints(exact._prepare(driving))
        exact._set_reference_kp({k: v[:1] for k, v in kp.items()})
        moved = exact.transfer(kp)["fg_kp"]
        src = _source_arrays(exact._source)
        for i in range(driving.shape[0]):
            motion = _motion_inputs(moved[i:i + 1], exact._source["motion"])
            with torch.inference_mode():
                out = MotionGraph(exact.dense_motion)(*(torch.from_numpy(a) for a in motion))
            samples.append({"source": [np_array(source)], "keypoints": [np_array(driving[i:i + 1])], "motion": motion,
                            "render": [np_array(t) for t in out] + src})
    return samples


# every motion node but the occlusion heads' stays float32 (the flow comes out of the hourglass)
_FLOAT_BUT_THE_OCCLUSION_HEADS = r"^(?!__module\.dense_motion\.(up|occlusion)\.).*"

TPSMM_INT8 = Design(family="tpsmm", names=("source", "keypoints", "motion", "render"),
                    quantised=("source", "motion", "render"), keep_float={"motion": (_FLOAT_BUT_THE_OCCLUSION_HEADS,)},
                    free_batch={"source": 0, "keypoints": 1, "motion": 0, "render": 0}, graphs=_graphs, samples=_samples,
                    runner=TpsRunner, graph_version=2)
