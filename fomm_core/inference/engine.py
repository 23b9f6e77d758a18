"""The inference engine: one source image animated by batches of driving frames, as fast as the device allows.

    animator = Animator(generator, kp_detector, device="cpu")     # precision "auto": exact float32 on CPU
    animator.set_source(source)                                   # [1, 3, H, W] float in 0..1
    for batch in frames:                                          # [B, 3, H, W]
        out = animator.animate(batch)                             # [B, 3, H, W] float32 0..1 on the CPU

What it does differently from the original demo (same maths):
- the source's keypoints, encoder features, anti-aliased copy and heatmaps are computed once (`set_source`);
- the reference frame's inverse Jacobians and the movement scale once per video (`set_reference`);
- closed-form 2x2 inverses; no visualisation-only full-resolution 'deformed' warp; inference_mode;
- batch-norm folded into the convolutions of a private copy of the networks, channels-last memory, and
  nearest-upsample + 3x3 conv computed as a sub-pixel 2x2 conv (16/36 of the work; fomm_core/inference/fast.py);
- fast paths: bf16 (CPU) / fp16 (CUDA) autocast for the convolutions, with the keypoints, the flow field and
  every grid_sample kept in float32 (half-precision sampling coordinates visibly misplace pixels).
Nothing is kept between `animate` calls except the source and reference: memory does not grow with a video.
"""
from __future__ import annotations

from contextlib import nullcontext

from fomm_core.errors import FommError
from fomm_core.device import choose_precision
from fomm_core.inference.motion import inverse_2x2, movement_scale

def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where unreadable, e.g. not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_fast_bf16(flags=None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def _can_compile() -> bool:
    import torch
    return hasattr(torch, "compile")


def _compiled(fn):
    """torch.compile(fn), falling back to fn for good at the first failure (no C++ compiler, unsupported op...)."""
    import torch
    try:
        compiled = torch.compile(fn)
    except Exception:
        return fn
    state = {"ok": True}

    def call(*args, **kwargs):
        if state["ok"]:
            try:
                return compiled(*args, **kwargs)
            except Exception:
                state["ok"] = False
        return fn(*args, **kwargs)
    return call


class Animator:
    """Animates one source image by driving frames (relative or absolute motion, as the original demo)."""

    def __init__(self, generator, kp_detector, *, device="cpu", precision="auto", mode="relative",
                 adapt_movement_scale=False, use_relative_jacobian=True, fuse=True, channels_last=None,
                 compile=False):
        import torch
        if mode not in ("relative", "absolute"):
            raise FommError(f"unknown mode '{mode}'; use relative or absolute.")
        self.device = torch.device(device)
        self.precision = choose_precision(self.device, precision)
        self.mode = mode
        self.adapt_movement_scale = adapt_movement_scale
        self.use_relative_jacobian = use_relative_jacobian
        if channels_last is None:
            channels_last = fuse
        if fuse:
            from fomm_core.inference.fast import fused_copy
            self.generator = fused_copy(generator, channels_last).to(self.device)
            self.kp_detector = fused_copy(kp_detector, channels_last).to(self.device)
        else:
            self.generator = generator.eval().to(self.device)
            self.kp_detector = kp_detector.eval().to(self.device)
        self.channels_last = channels_last
        self.fused = fuse
        # torch.compile: ~5-10% on CPU here after a 10-20 s first call, so opt-in (long videos, not the webcam)
        self.compiled = bool(compile) and _can_compile()
        wrap = _compiled if self.compiled else (lambda fn: fn)
        self._run_kp = wrap(self.kp_detector)
        self._run_decode = wrap(self.generator.decode)
        dm = self.generator.dense_motion_network
        self._run_hourglass = wrap(dm.hourglass) if dm is not None else None
        if self.device.type == "cuda":
            # exact path: no TF32 behind our back
            torch.backends.cuda.matmul.allow_tf32 = self.precision != "fp32" and torch.backends.cuda.matmul.allow_tf32
            torch.backends.cudnn.allow_tf32 = self.precision != "fp32" and torch.backends.cudnn.allow_tf32
        self._source = None
        self.reset_reference()

    # -- description --------------------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """Which path runs, in words, e.g. 'cpu fp32 exact (source cached, BN folded, channels-last)'."""
        what = {"fp32": "fp32 exact", "bf16": "bf16 fast", "fp16": "fp16 fast"}[self.precision]
        if self.precision == "bf16" and self.device.type == "cpu" and not cpu_has_fast_bf16():
            what += " (no AVX512-BF16/AMX: emulated, likely slower)"
        extras = ["source cached"]
        if self.fused:
            extras.append("BN folded, sub-pixel up blocks")
        if self.channels_last:
            extras.append("channels-last")
        if self.compiled:
            extras.append("torch.compile")
        return f"{self.device.type} {what} ({', '.join(extras)}), {self.mode} motion"

    def _autocast(self):
        import torch
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _prepare(self, images):
        import torch
        images = images.to(self.device, torch.float32)
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _keypoints(self, images):
        # float32 always: cheap, and the Jacobians' inverses are precision-sensitive
        kp = self._run_kp(images)
        return {k: v.float() for k, v in kp.items()}

    def keypoints(self, images) -> dict:
        """Keypoints of images ([3, H, W] or [B, 3, H, W], 0..1): {'value': [B, K, 2], 'jacobian': [B, K, 2, 2]}."""
        import torch
        with torch.inference_mode():
            return self._keypoints(self._prepare(images))

    # -- state ----------------------------------------------------------------------------------------------------

    def set_source(self, image):
        """Cache everything that depends on the source only: keypoints, encoder features, the downsampled copy."""
        import torch
        from fomm_core.model.blocks import kp2gaussian
        with torch.inference_mode():
            src = self._prepare(image)
            if src.shape[0] != 1:
                raise FommError("set_source takes one image ([1, 3, H, W]).")
            kp = self._keypoints(src)
            with self._autocast():
                features = self.generator.encode_source(src)
            dm = self.generator.dense_motion_network
            small = heat = None
            if dm is not None:
                small = dm.down(src) if dm.scale_factor != 1 else src
                heat = kp2gaussian(kp, small.shape[2:], dm.kp_variance)   # [1, K, h, w]
            self._source = {"image": src, "kp": kp, "features": features, "small": small, "heatmap": heat}
        self.reset_reference()

    def set_reference(self, frame):
        """The initial driving frame of relative motion: its keypoints, inverse Jacobians and the movement scale."""
        import torch
        with torch.inference_mode():
            kp = self._keypoints(self._prepare(frame)[:1])
        self._set_reference_kp(kp)

    def _set_reference_kp(self, kp):
        self._reference = kp
        self._inv_reference_jacobian = inverse_2x2(kp["jacobian"]) if "jacobian" in kp else None
        self._scale = (movement_scale(self._source["kp"], kp)
                       if self.adapt_movement_scale and self._source is not None else 1.0)

    def reset_reference(self):
        self._reference = None
        self._inv_reference_jacobian = None
        self._scale = 1.0

    # -- per frame ------------------------------------------------------------------------------------------------

    def transfer(self, kp_driving):
        """Driving keypoints -> the keypoints to animate the source with (relative or absolute motion)."""
        if self.mode == "absolute":
            return kp_driving
        src, ref = self._source["kp"], self._reference
        out = {"value": (kp_driving["value"] - ref["value"]) * self._scale + src["value"]}
        if "jacobian" in kp_driving:
            if self.use_relative_jacobian:
                out["jacobian"] = kp_driving["jacobian"] @ self._inv_reference_jacobian @ src["jacobian"]
            else:
                out["jacobian"] = kp_driving["jacobian"]
        return out

    def _dense_motion(self, kp_driving):
        """The dense motion network on the cached source: flow [B, h, w, 2] and occlusion map [B, 1, h, w]."""
        import torch
        import torch.nn.functional as F
        from fomm_core.model.blocks import kp2gaussian, make_coordinate_grid
        dm = self.generator.dense_motion_network
        src, small = self._source, self._source["small"]
        b, k = kp_driving["value"].shape[:2]
        _, c, h, w = small.shape
        kp_src = src["kp"]

        heat = kp2gaussian(kp_driving, (h, w), dm.kp_variance) - src["heatmap"]            # [B, K, h, w]
        heat = torch.cat([heat.new_zeros(b, 1, h, w), heat], dim=1).unsqueeze(2)           # [B, K+1, 1, h, w]

        identity = make_coordinate_grid((h, w), torch.float32, small.device).view(1, 1, h, w, 2)
        coords = identity - kp_driving["value"].view(b, k, 1, 1, 2)
        if "jacobian" in kp_driving:
            jac = kp_src["jacobian"] @ inverse_2x2(kp_driving["jacobian"])                # [B, K, 2, 2]
            coords = (jac.view(b, k, 1, 1, 2, 2) @ coords.unsqueeze(-1)).squeeze(-1)
        sparse = torch.cat([identity.expand(b, 1, h, w, 2),
                            coords + kp_src["value"].view(1, k, 1, 1, 2)], dim=1)         # [B, K+1, h, w, 2]

        source_rep = small.expand(b * (k + 1), c, h, w)
        deformed = F.grid_sample(source_rep, sparse.reshape(b * (k + 1), h, w, 2), align_corners=True)
        x = torch.cat([heat, deformed.view(b, k + 1, c, h, w)], dim=2).view(b, -1, h, w)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            features = self._run_hourglass(x)
            mask_logits = dm.mask(features)
            occ_logits = dm.occlusion(features) if dm.occlusion is not None else None
        mask = F.softmax(mask_logits.float(), dim=1)                                         # [B, K+1, h, w]
        flow = (sparse.permute(0, 1, 4, 2, 3) * mask.unsqueeze(2)).sum(dim=1).permute(0, 2, 3, 1)
        occlusion = torch.sigmoid(occ_logits.float()) if occ_logits is not None else None
        return flow, occlusion

    def animate(self, frames):
        """Driving frames [B, 3, H, W] float 0..1 -> animated source [B, 3, H, W] float32 0..1 on the CPU."""
        import torch
        if self._source is None:
            raise FommError("set_source must be called before animate.")
        with torch.inference_mode():
            frames = self._prepare(frames)
            kp = self._keypoints(frames)
            if self.mode == "relative" and self._reference is None:
                self._set_reference_kp({key: v[:1] for key, v in kp.items()})
            kp_new = self.transfer(kp)
            b = frames.shape[0]
            features = self._source["features"]
            if self.generator.dense_motion_network is not None:
                flow, occlusion = self._dense_motion(kp_new)
                # the warp in float32 (features may be half): sampling coordinates must not be rounded
                features = self.generator.warp_features(features.float().expand(b, -1, -1, -1), flow, occlusion)
            else:
                features = features.expand(b, -1, -1, -1)
            if self.channels_last:
                features = features.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                out = self._run_decode(features)
            return out.float().clamp_(0, 1).contiguous().cpu()
