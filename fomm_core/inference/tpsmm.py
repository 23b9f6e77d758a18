"""The TPSMM engine: one source image animated by batches of driving frames with a Thin-Plate Spline Motion Model.

    animator = TpsAnimator(model.networks, device="cpu", mode="relative")   # or "absolute" (the demo's
    animator.set_source(source)                                             # 'standard'), or "avd"
    out = animator.animate(frames)                                           # [B, 3, H, W] float32 0..1

The same maths as the original demo's make_animation (fomm_core.model.tpsmm's step methods), and the FOMM
engine's economies (fomm_core.inference.fomm):
- the source's keypoints, its downsampled copy and Gaussians, and all four encoder levels are computed once;
- on the CPU the frames of a batch are rendered one at a time (see `_render`: faster there than batched);
- the original's second, detached warp of every level (a training-only output) is not computed;
- batch norms folded (the ResNet-18), sub-pixel up blocks, channels-last memory (fomm_core.inference.fusion);
- bf16 (CPU) / fp16 (CUDA) autocast for the convolutions, with keypoints, TPS warps, flow and every grid_sample
  in float32;
- int8 (CPU): keypoints, dense motion and a quantised decoder run by OpenVINO, the thin-plate-spline fit in torch
  (fomm_core.inference.int8.tpsmm); make_animator measures `fast` between fp32, bf16 and int8.
Relative motion scales the keypoint motion by sqrt(source hull area / reference hull area), as the original demo
always does (adapt_movement_scale=False turns it off).
"""
from __future__ import annotations

from fomm_core.errors import FommError
from fomm_core.inference.engine import Engine
from fomm_core.inference.motion import hull_area


class TpsAnimator(Engine):
    """Animates one source image by driving frames with a TPSMM model."""

    MODES = ("relative", "absolute", "avd")
    FAMILY = "TPSMM"
    FUSED = "ResNet BN folded, sub-pixel up blocks"  # instance norms cannot be folded
    PRECISIONS = ("fp32", "bf16", "fp16", "int8")

    def __init__(self, networks: dict, *, device="cpu", precision="fp32", mode="relative",
                 adapt_movement_scale=True, fuse=True, channels_last=None, compile=False, int8_runner=None):
        """networks: {'kp_detector', 'dense_motion_network', 'inpainting_network', 'avd_network' (for avd)}, as
        fomm_core.model.checkpoint.load_model gives them. precision: fp32 (exact), bf16, fp16, or int8 with its
        `int8_runner` (fomm_core.inference.int8)."""
        super().__init__(networks, device=device, precision=precision, mode=mode,
                         adapt_movement_scale=adapt_movement_scale, int8_runner=int8_runner)
        self._build_torch(networks, fuse, channels_last, compile)
        self.reset_reference()

    @classmethod
    def check_mode(cls, mode, networks=None) -> str:
        mode = super().check_mode(mode, networks)
        if mode == "avd" and networks is not None and networks.get("avd_network") is None:
            raise FommError("this TPSMM checkpoint holds no avd_network, so mode avd cannot run; "
                            "use relative or absolute.")
        return mode

    def _build_torch(self, networks, fuse, channels_last, compile):
        from fomm_core.inference.fusion import fused_copy
        channels_last = fuse if channels_last is None else channels_last
        copy = (lambda m: fused_copy(m, channels_last)) if fuse else (lambda m: m.eval())
        self.kp_detector = copy(networks["kp_detector"]).to(self.device)
        self.dense_motion = copy(networks["dense_motion_network"]).to(self.device)
        self.inpainting = copy(networks["inpainting_network"]).to(self.device)
        avd = networks.get("avd_network")
        self.avd = avd.eval().to(self.device) if avd is not None else None
        self.channels_last, self.fused = channels_last, fuse
        wrap = self._wrap(compile)
        self._run_kp = wrap(self.kp_detector)
        self._run_hourglass = wrap(self.dense_motion.hourglass)
        self._run_decode = wrap(self.inpainting.decode)

    # -- keypoints and the source ---------------------------------------------------------------------------------

    def _torch_keypoints(self, images):
        # float32 always: the keypoints place the TPS control points
        return {"fg_kp": self._run_kp(images)["fg_kp"].float()}

    def keypoints(self, images) -> dict:
        """Keypoints of images ([3, H, W] or [B, 3, H, W], 0..1): {'value': [B, K*5, 2]} (TPS control points)."""
        with self._running():
            return {"value": self._keypoints(self._prepare(images))["fg_kp"]}

    def _source_parts(self, src, kp) -> dict:
        """What depends on the source only: keypoints, the dense motion's parts, the encoder's levels."""
        if self._int8 is not None:  # int8 through OpenVINO (fomm_core.inference.int8.tpsmm)
            levels = self._int8.encode_source(src)
        else:
            with self._autocast():
                levels = self.inpainting.encode_source(src)
        return {"image": src, "kp": kp, "levels": [x.float() for x in levels],
                "motion": self.dense_motion.source_parts(src, kp)}

    def _set_reference_kp(self, kp):
        self._reference = kp
        self._scale = 1.0
        if self.adapt_movement_scale and self._source is not None:
            source = hull_area(self._source["kp"]["fg_kp"][0].cpu().numpy())
            driving = hull_area(kp["fg_kp"][0].cpu().numpy())
            if source > 0 and driving > 0:
                self._scale = (source / driving) ** 0.5

    # -- per frame ------------------------------------------------------------------------------------------------

    def transfer(self, kp_driving):
        """Driving keypoints -> the keypoints to animate the source with (the demo's three modes)."""
        if self.mode == "absolute":
            return kp_driving
        if self.mode == "avd":
            return self.avd(self._source["kp"], kp_driving)
        moved = (kp_driving["fg_kp"] - self._reference["fg_kp"]) * self._scale
        return {"fg_kp": moved + self._source["kp"]["fg_kp"]}

    def _dense_motion(self, kp):
        """Dense motion on the cached source: flow [B, h, w, 2] and occlusion masks (float32), coarsest first."""
        import torch
        dm, source = self.dense_motion, self._source["motion"]
        heatmaps = dm.heatmap_representation(source, kp)
        warps = dm.transformations(source["image"].shape[2:], kp["fg_kp"], source["kp"])
        x = dm.hourglass_input(heatmaps, dm.deformed_source(source["image"], warps))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            logits = dm.heads(self._run_hourglass(x, every_level=True))
        return dm.blend(warps, *logits)  # float32: the flow's coordinates must not be rounded

    def _render(self, kp, batch):
        """Decoded frames for driving keypoints: float32 warps of the cached levels, autocast decoder.

        On the CPU one frame at a time: the decoder's convolutions cost the same per frame at any batch, while its
        instance norms, warps and copies run faster on one frame's maps, which stay in the cache (measured on 2
        cores, vox 256 px: 1.09 frames/s one at a time against 0.76 four at a time).
        """
        import torch
        from fomm_core.model.tpsmm.inpainting_network import warp
        if self.device.type == "cpu" and batch > 1:
            return torch.cat([self._render({k: v[i:i + 1] for k, v in kp.items()}, 1) for i in range(batch)])
        motion = self._dense_motion(self.transfer(kp))
        flow, occlusion = motion["deformation"], motion["occlusion_map"]
        levels = [x.expand(batch, -1, -1, -1) for x in self._source["levels"]]
        warped = self.inpainting.warped_levels(levels, flow, occlusion)
        image = self._source["image"].expand(batch, -1, -1, -1)
        warped_source = warp(image, flow)
        occlusion_last = self.inpainting.occlusion_at(occlusion, -1, image.shape[2:])
        if self.channels_last:
            warped = [x.contiguous(memory_format=torch.channels_last) for x in warped]
        with self._autocast():
            out = self._run_decode(warped, warped_source, occlusion_last)
        return out.float().clamp_(0, 1).contiguous().cpu()
