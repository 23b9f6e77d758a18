"""The FOMM engine: one source image animated by batches of driving frames, as fast as the device allows.

    animator = Animator(generator, kp_detector, device="cpu", precision="fp32")   # or bf16, fp16 (CUDA)
    animator.set_source(source)                                   # [1, 3, H, W] float in 0..1
    for batch in frames:                                          # [B, 3, H, W]
        out = animator.animate(batch)                             # [B, 3, H, W] float32 0..1 on the CPU

What it does differently from the original demo (same maths, run by the model's own step methods:
DenseMotionNetwork.source_parts / create_* / heads / dense_flow, OcclusionAwareGenerator.encode_source /
warp_features / decode, fomm_core.inference.motion.normalize_kp):
- the source's keypoints, encoder features, anti-aliased copy and heatmaps are computed once (`set_source`);
- the reference frame's inverse Jacobians and the movement scale once per video (`set_reference`);
- closed-form 2x2 inverses; no visualisation-only full-resolution 'deformed' warp; inference_mode;
- batch-norm folded into the convolutions of a private copy of the networks, channels-last memory, and
  nearest-upsample + 3x3 conv computed as a sub-pixel 2x2 conv (16/36 of the work; fomm_core.inference.fusion);
- bf16 (CPU) / fp16 (CUDA) autocast for the convolutions, with the keypoints, the flow field and every
  grid_sample kept in float32; int8 runs the per-frame work in OpenVINO (fomm_core.inference.int8).
The `fast` and `auto` choices are settled before the engine is built: fomm_core.inference.factory.make_animator.
"""
from __future__ import annotations

from fomm_core.errors import FommError
from fomm_core.inference.engine import Engine
from fomm_core.inference.motion import inverse_2x2, movement_scale, normalize_kp


class Animator(Engine):
    """Animates one source image by driving frames with a FOMM model (relative or absolute motion, as the
    original demo)."""

    FAMILY = "FOMM"
    PRECISIONS = ("fp32", "bf16", "fp16", "int8")

    def __init__(self, generator, kp_detector, *, device="cpu", precision="fp32", mode="relative",
                 adapt_movement_scale=False, use_relative_jacobian=True, fuse=True, channels_last=None,
                 compile=False, int8_runner=None):
        """precision: fp32 (exact), bf16, fp16, or int8 with its `int8_runner` (fomm_core.inference.int8)."""
        super().__init__({"generator": generator, "kp_detector": kp_detector}, device=device, precision=precision,
                         mode=mode, adapt_movement_scale=adapt_movement_scale, int8_runner=int8_runner)
        self.use_relative_jacobian = use_relative_jacobian
        self._build_torch(generator, kp_detector, fuse, channels_last, compile)
        self.reset_reference()

    @classmethod
    def check_mode(cls, mode, networks=None) -> str:
        if mode == "avd":
            raise FommError("mode avd (animation via disentanglement) belongs to TPSMM models; this is a FOMM "
                            "checkpoint: use relative or absolute.")
        return super().check_mode(mode, networks)

    def _build_torch(self, generator, kp_detector, fuse, channels_last, compile):
        if channels_last is None:
            channels_last = fuse
        if fuse:
            from fomm_core.inference.fusion import fused_copy
            self.generator = fused_copy(generator, channels_last).to(self.device)
            self.kp_detector = fused_copy(kp_detector, channels_last).to(self.device)
        else:
            self.generator = generator.eval().to(self.device)
            self.kp_detector = kp_detector.eval().to(self.device)
        self.channels_last = channels_last
        self.fused = fuse
        wrap = self._wrap(compile)
        self._run_kp = wrap(self.kp_detector)
        self._run_decode = wrap(self.generator.decode)
        dm = self.generator.dense_motion_network
        self._run_hourglass = wrap(dm.hourglass) if dm is not None else None

    # -- description --------------------------------------------------------------------------------------------

    def _torch_keypoints(self, images):
        # float32 always: cheap, and the Jacobians' inverses are precision-sensitive
        kp = self._run_kp(images)
        return {k: v.float() for k, v in kp.items()}

    def keypoints(self, images) -> dict:
        """Keypoints of images ([3, H, W] or [B, 3, H, W], 0..1): {'value': [B, K, 2], 'jacobian': [B, K, 2, 2]}."""
        with self._running():
            return self._keypoints(self._prepare(images))

    # -- state ----------------------------------------------------------------------------------------------------

    def _source_parts(self, src, kp) -> dict:
        """Everything that depends on the source only: keypoints, encoder features, the dense motion's parts."""
        with self._autocast():
            features = self.generator.encode_source(src)
        dm = self.generator.dense_motion_network
        motion = dm.source_parts(src, kp) if dm is not None else None
        return {"kp": kp, "features": features, "motion": motion}

    def _set_reference_kp(self, kp):
        self._reference = kp
        self._inv_reference_jacobian = inverse_2x2(kp["jacobian"]) if "jacobian" in kp else None
        self._scale = (movement_scale(self._source["kp"], kp)
                       if self.adapt_movement_scale and self._source is not None else 1.0)

    # -- per frame ------------------------------------------------------------------------------------------------

    def transfer(self, kp_driving):
        """Driving keypoints -> the keypoints to animate the source with (relative or absolute motion)."""
        return normalize_kp(self._source["kp"], kp_driving, self._reference,
                            use_relative_movement=self.mode == "relative",
                            use_relative_jacobian=self.use_relative_jacobian,
                            scale=self._scale, inv_initial_jacobian=self._inv_reference_jacobian)

    def _dense_motion(self, kp_driving):
        """The dense motion network's steps on the cached source: flow [B, h, w, 2], occlusion [B, 1, h, w] or None."""
        import torch
        dm, source = self.generator.dense_motion_network, self._source["motion"]
        heatmaps = dm.create_heatmap_representations(source, kp_driving)
        sparse = dm.create_sparse_motions(source["image"].shape[2:], kp_driving, self._source["kp"], inverse_2x2)
        x = dm.hourglass_input(heatmaps, dm.create_deformed_source_image(source["image"], sparse))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            logits = dm.heads(self._run_hourglass(x))
        motion = dm.dense_flow(sparse, *logits)  # float32: the flow's coordinates must not be rounded
        return motion["deformation"], motion.get("occlusion_map")

    def _warped_features(self, kp_driving, batch):
        """The cached source features warped by the driving motion (float32 warp), for `batch` frames."""
        import torch
        features = self._source["features"]
        if self.generator.dense_motion_network is not None:
            flow, occlusion = self._dense_motion(kp_driving)
            # the warp in float32 (features may be half): sampling coordinates must not be rounded
            features = self.generator.warp_features(features.float().expand(batch, -1, -1, -1), flow, occlusion)
        else:
            features = features.expand(batch, -1, -1, -1)
        if self.channels_last:
            features = features.contiguous(memory_format=torch.channels_last)
        return features

    def _render(self, kp, batch):
        """Decoded frames for driving keypoints, by the torch networks (float32 warp, autocast decoder)."""
        features = self._warped_features(self.transfer(kp), batch)
        with self._autocast():
            out = self._run_decode(features)
        return out.float().clamp_(0, 1).contiguous().cpu()


def exact_engine(generator, kp_detector) -> Animator:
    """The float32 engine on the unfused networks, as the int8 graphs are exported: what int8 is checked against."""
    return Animator(generator, kp_detector, device="cpu", precision="fp32", fuse=False)
