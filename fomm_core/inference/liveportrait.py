"""The LivePortrait engine: one source image animated by batches of driving frames, 256 px in, 512 px out.

    animator = LivePortraitAnimator(model.networks, device="cpu")   # relative motion, stitching on
    animator.set_source(source)                                     # [1, 3, 256, 256] float 0..1
    out = animator.animate(frames)                                  # [B, 3, 512, 512] float32 0..1

The original pipeline's steps for a source image and a driving video, with its command-line defaults
(fomm_core.model.liveportrait.motion.RelativeMotion): relative motion of pose, expression, scale and translation
since the reference frame, expression-friendly (the motion scaled by the keypoint hulls' ratio, measured at the
reference frame; adapt_movement_scale=False turns it off, the original's pose-friendly), stitching on, multiplier
1. Lip normalisation and eye/lip retargeting need face landmarks and are off, as in the original without them.
Absolute motion has no meaning here (the driving face's own keypoints on the source's appearance), so relative is
the only mode.

What depends on the source only is computed once: F's feature volume and the source's keypoint info (x_s). The
dense motion's source-only part (a 1x1 conv of the volume) costs a few milliseconds and is not kept apart.
Every step runs one frame at a time, as the original does: batched, M's convolutions and the stitching MLP round
differently by ~1e-7, which the warp amplifies about 1000 times (3e-4 in the frame on random weights).

Speed (fuse=True, the default; fomm_core.inference.fusion):
- G runs as FusedSpadeDecoder: the same function re-associated around what its SPADE norms share (their layout
  convs up front, sub-pixel where the layout is upsampled; instance norms before upsampling; the 1 of (1 + gamma)
  in gamma's bias; conv_s composed into beta_s), channels-last at 128 and 256 px. G follows the warp, so its
  rounding is not amplified: frames stay within ~3e-5 of the original's.
- M and, on the exact path, W run as published, bit for bit: rounding anywhere before the warp is amplified
  (folding W's batch norms alone moves frames by 1e-4 on random weights).
- bf16 (CPU) and fp16 (CUDA) autocast W and G, with W's batch norms folded and its up blocks sub-pixel
  (fused_warping) and G all channels-last, both with their weights cast once; M and F stay float32 (bf16
  keypoints cost ~15 dB of PSNR), and so do the flow and every grid_sample.
Measured on a 2-core AMD EPYC with AVX512-BF16, 256-px frames, against the original code's steps: fp32 1.3-1.4x
its frames/s, bf16 2.6-2.9x at 41 dB PSNR (seeded random weights, which amplify rounding more than trained ones).
"""
from __future__ import annotations

from fomm_core.errors import FommError
from fomm_core.inference.engine import Engine
from fomm_core.media.face import Framing, Framings
from fomm_core.media.paste import Feather


class LivePortraitAnimator(Engine):
    """Animates one source image by driving frames with the five LivePortrait networks."""

    MODES = ("relative",)
    FAMILY = "LivePortrait"
    FUSED = ""
    OUTPUT_SCALE = 2   # G upsamples the 256-px crop's features to a 512-px frame
    # The original's crop config: a photo's square 2.3 faces wide, its centre 1/8 of its side above the face's
    # (scale 2.3, vy_ratio -0.125); a driving video's 2.2 wide and 1/10 up. Its side comes from landmarks; our
    # face box, which spans about what the landmarks span (brows to chin, cheek to cheek), stands in for them.
    # Such a square often reaches past the photo: it keeps its scale (the face's share is what the networks
    # were trained on), and the border is repeated where the original fills black.
    FRAMING = Framings(source=Framing(scale=2.3, lift=0.125, inside=False),
                       driving=Framing(scale=2.2, lift=0.1, inside=False),
                       live=Framing(scale=2.2, lift=0.1, inside=False))
    FEATHER = Feather(margin=0.0, width=16 / 512, smooth=False, corner=16 / 512)   # as mask_template.png: see Feather
    LEFT_OUT = ("lip normalisation and eye and lip retargeting need the original's face landmarks, which are not "
                "used here: they are off, as when the original runs without them")

    def __init__(self, networks: dict, *, device="cpu", precision="fp32", mode="relative",
                 adapt_movement_scale=True, fuse=True, compile=False):
        """networks: the five by their published names, as fomm_core.model.checkpoint.load_model gives them.
        precision: fp32 (exact), bf16 or fp16. fuse: G as FusedSpadeDecoder, and W fused where half precision
        runs (see the module's docstring); False runs the five as published."""
        super().__init__(networks, device=device, precision=precision, mode=mode,
                         adapt_movement_scale=adapt_movement_scale)
        self.features = networks["appearance_feature_extractor"].eval().to(self.device)
        self.motion = networks["motion_extractor"].eval().to(self.device)
        self.stitching = networks["stitching_retargeting_module"].eval().to(self.device).stitching
        self._published = (networks["warping_module"], networks["spade_generator"])
        # the input frames stay as they are (M and F read them as published): channels-last is G's own affair
        self.fused, self.channels_last, self._compile = bool(fuse), False, compile
        self._build_warp_decode()
        self.reset_reference()

    def _build_warp_decode(self):
        """W and G as they run at the engine's precision: private fused copies (fomm_core.inference.fusion) or the
        published modules. Built again when a GPU's half precision fails and the engine falls back to fp32."""
        import torch
        from fomm_core.inference.fusion import FusedSpadeDecoder, fused_warping
        warping, generator = self._published
        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        if self.fused:
            # half precision: all of G channels-last (its rounding is bf16's anyway), its weights cast once here
            # rather than by autocast on every call
            levels = (0, 1, 2) if half else (1, 2)
            self.generator = FusedSpadeDecoder(generator, channels_last=levels).to(self.device, half)
            self.FUSED = "SPADE blocks fused" + ("; W's BN folded, sub-pixel up blocks" if half
                                                 else "; M and W as published")
        else:
            self.generator = generator.eval().to(self.device)
        self.warping = (fused_warping(warping, half) if self.fused and half else warping.eval()).to(self.device)
        wrap = self._wrap(self._compile)
        self._run_warp, self._run_generator = wrap(self.warping), wrap(self.generator)
        self._built_for = self.precision

    @classmethod
    def check_mode(cls, mode, networks=None) -> str:
        if mode in ("absolute", "standard", "avd"):
            raise FommError(f"a LivePortrait model animates by relative motion only (its '{mode}' mode would put the "
                            "driving face's own keypoints on the source); use relative.")
        return super().check_mode(mode, networks)

    @property
    def path(self) -> str:
        return super().path.replace("source cached", "source volume and keypoints cached")

    # -- keypoints and the source ---------------------------------------------------------------------------------

    def _torch_keypoints(self, images) -> dict:
        """M's kp_info of each image, read one image at a time as the original does, in float32 on every path:
        the keypoints place the warp, which amplifies their rounding."""
        import torch
        from fomm_core.model.liveportrait.motion import kp_info
        infos = [kp_info(self.motion(images[i:i + 1])) for i in range(images.shape[0])]
        return {key: torch.cat([info[key] for info in infos]) for key in infos[0]}

    def keypoints(self, images) -> dict:
        """Keypoints of images ([3, H, W] or [B, 3, H, W], 0..1): {'value': [B, 21, 2]}, the x and y of eq. 2's
        keypoints (what the best-frame search compares)."""
        from fomm_core.model.liveportrait.motion import transform_keypoint
        with self._running():
            info = self._keypoints(self._prepare(images))
            return {"value": transform_keypoint(info)[..., :2]}

    def _source_parts(self, src, kp) -> dict:
        # float32 on every path: it runs once per source
        return {"volume": self.features(src), "info": kp}

    def reset_reference(self):
        super().reset_reference()
        self._relative = None

    def _set_reference_kp(self, kp):
        """The reference frame's kp_info fixes relative motion: its pose, expression, scale and translation, and the
        expression-friendly gain measured there."""
        from fomm_core.model.liveportrait.motion import RelativeMotion
        self._reference = kp
        if self._source is None:
            return
        self._relative = RelativeMotion(self._source["info"], stitching=self.stitching,
                                        expression_friendly=self.adapt_movement_scale)
        with self._running():
            self._relative(kp)

    # -- per frame ------------------------------------------------------------------------------------------------

    def transfer(self, kp_driving):
        """Driving frames' kp_info -> the keypoints x_d [B, 21, 3] to warp the source's volume to."""
        return self._relative(kp_driving)

    def _render(self, kp, batch):
        """512-px frames for driving frames' kp_info: one frame at a time, from its keypoints (the stitching MLP on
        one row, as the original) to G, the convolutions autocast."""
        import torch
        if self._built_for != self.precision:  # the engine fell back to fp32: half-precision copies cannot run it
            self._build_warp_decode()
        x_s, volume = self._relative.x_s, self._source["volume"]
        frames = []
        for i in range(batch):
            x_d = self.transfer({key: value[i:i + 1] for key, value in kp.items()})
            with self._autocast():
                warped = self._run_warp(volume, x_d, x_s)["out"]
                frames.append(self._run_generator(warped).float())
        return torch.cat(frames).clamp_(0, 1).contiguous().cpu()
