"""The inference engine: one source image animated by batches of driving frames, as fast as the device allows.

    animator = Animator(generator, kp_detector, device="cpu")     # precision "auto": exact float32 on CPU
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
  nearest-upsample + 3x3 conv computed as a sub-pixel 2x2 conv (16/36 of the work; fomm_core/inference/fast.py);
- fast paths: bf16 (CPU) / fp16 (CUDA) autocast for the convolutions, with the keypoints, the flow field and
  every grid_sample kept in float32 (half-precision sampling coordinates visibly misplace pixels).
Nothing is kept between `animate` calls except the source and reference: memory does not grow with a video.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager, nullcontext, suppress

from fomm_core.errors import FommError
from fomm_core.device import choose_precision
from fomm_core.inference.motion import inverse_2x2, movement_scale, normalize_kp


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


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` says ('' when nothing does)."""
    import platform
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_fast_bf16(flags=None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & flags)


@contextmanager
def tf32_off():
    """TF32 matmuls and convolutions switched off inside the block only; the process's settings are restored after.

    Fails soft: where torch lacks the switches, or they cannot be set, the block runs as torch is set.
    """
    try:
        import torch
        switches = (torch.backends.cuda.matmul, torch.backends.cudnn)
        saved = [s.allow_tf32 for s in switches]
    except Exception:  # an old or stripped-down torch: exactness is then torch's own default
        switches, saved = (), []
    try:
        with suppress(Exception):
            for s in switches:
                s.allow_tf32 = False
        yield
    finally:
        with suppress(Exception):
            for s, allowed in zip(switches, saved):
                s.allow_tf32 = allowed


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


class Engine:
    """What every model family's animator shares: device and precision, the call context, frame preparation, the
    relative-motion reference, and the per-batch loop with its GPU fail-soft. A family supplies `MODES`,
    `_torch_keypoints` (keypoints as a dict), `_source_parts`, `_set_reference_kp`, `transfer` and `_render`."""

    MODES = ("relative", "absolute")
    FAMILY = ""
    FUSED = "BN folded, sub-pixel up blocks"  # what fuse=True does, in words

    def _init_common(self, device, precision, mode, adapt_movement_scale) -> str:
        """Set the shared state; -> the precision asked of the engine (choose_precision's answer)."""
        import torch
        mode = {"standard": "absolute"}.get(mode, mode)  # TPSMM's demo calls absolute motion 'standard'
        if mode not in self.MODES:
            raise FommError(f"unknown mode '{mode}' for a {self.FAMILY} model; use {' or '.join(self.MODES)}.")
        self.device = torch.device(device)
        self.mode = mode
        self.adapt_movement_scale = adapt_movement_scale
        self.note, self.choice_table = "", []
        self._int8 = None
        self._source = None
        return choose_precision(self.device, precision)

    @property
    def path(self) -> str:
        """Which path runs, in words, e.g. 'cpu fp32 exact (source cached, BN folded, channels-last)'."""
        what = {"fp32": "fp32 exact", "bf16": "bf16 fast", "fp16": "fp16 fast"}[self.precision]
        if self.precision == "bf16" and self.device.type == "cpu" and not cpu_has_fast_bf16():
            what += " (no AVX512-BF16/AMX: emulated, likely slower)"
        extras = ["source cached"]
        if self.fused:
            extras.append(self.FUSED)
        if self.channels_last:
            extras.append("channels-last")
        if self.compiled:
            extras.append("torch.compile")
        return f"{self.device.type} {what} ({', '.join(extras)}), {self.mode} motion"

    def _autocast(self):
        import torch
        if self.precision in ("fp32", "int8"):
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    @contextmanager
    def _running(self):
        """Around every call into the networks: no autograd; on CUDA's exact path no TF32 (float32 means float32)."""
        import torch
        exact_cuda = self.device.type == "cuda" and self.precision == "fp32"
        with torch.inference_mode(), (tf32_off() if exact_cuda else nullcontext()):
            yield

    def _prepare(self, images):
        import torch
        images = images.to(self.device, torch.float32)
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _keypoints(self, images):
        """Driving frames' keypoints (int8 where that path runs; the source's are always torch float32)."""
        return self._int8.keypoints(images) if self._int8 is not None else self._torch_keypoints(images)

    def set_source(self, image):
        """Cache what depends on the source image [1, 3, H, W] only (the family's `_source_parts`)."""
        with self._running():
            src = self._prepare(image)
            if src.shape[0] != 1:
                raise FommError("set_source takes one image ([1, 3, H, W]).")
            if self._pending:
                self._resolve(src.shape[-1])
            self._source = self._source_parts(src, self._torch_keypoints(src))
        self.reset_reference()

    def set_reference(self, frame):
        """The initial driving frame of relative motion: its keypoints (and what follows from them)."""
        with self._running():
            kp = self._keypoints(self._prepare(frame)[:1])
        self._set_reference_kp(kp)

    def reset_reference(self):
        self._reference = None
        self._inv_reference_jacobian = None
        self._scale = 1.0

    def animate(self, frames):
        """Driving frames [B, 3, H, W] float 0..1 -> animated source [B, 3, H, W] float32 0..1 on the CPU."""
        if self._source is None:
            raise FommError("set_source must be called before animate.")
        with self._running():
            frames = self._prepare(frames)
            kp = self._keypoints(frames)
            if self.mode == "relative" and self._reference is None:
                self._set_reference_kp({key: v[:1] for key, v in kp.items()})
            if self._int8 is not None:
                return self._int8.render(self.transfer(kp), self._source).clamp_(0, 1)
            try:
                return self._render(kp, frames.shape[0])
            except RuntimeError as err:
                if self.precision not in ("fp16", "bf16") or self.device.type == "cpu":
                    raise
                # a GPU without half-precision kernels for an op, or a library that cannot run it: fail soft
                first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
                self.note = (f"{self.precision} failed on {self.device} ({first_line}); "
                             "using exact fp32 from here on.")
                self.precision = "fp32"
                warnings.warn(self.note, UserWarning, stacklevel=2)  # the CLI shows warnings as notes
                return self._render(kp, frames.shape[0])


class Animator(Engine):
    """Animates one source image by driving frames with a FOMM model (relative or absolute motion, as the
    original demo)."""

    FAMILY = "FOMM"

    def __init__(self, generator, kp_detector, *, device="cpu", precision="auto", mode="relative",
                 adapt_movement_scale=False, use_relative_jacobian=True, fuse=True, channels_last=None,
                 compile=False, size=None, on_step=None, int8_runner=None):
        """precision: fp32 (exact), bf16, fp16, int8, or fast/auto (measured on this CPU: fomm_core.inference.choice).

        fast and int8 need the frame size: give `size`, or the first `set_source` decides. on_step(done, total,
        what) reports the one-time int8 build and measurement. `note` says why a path other than the one asked
        for runs (or why `fast` picked what it did).
        """
        if mode == "avd":
            raise FommError("mode avd (animation via disentanglement) belongs to TPSMM models; this is a FOMM "
                            "checkpoint: use relative or absolute.")
        requested = self._init_common(device, precision, mode, adapt_movement_scale)
        self.use_relative_jacobian = use_relative_jacobian
        self._int8 = int8_runner
        self._pending = None
        if requested in ("fast", "int8") and int8_runner is None:
            self._pending = (requested, generator, kp_detector, on_step)  # resolved once the frame size is known
        self.precision = "int8" if int8_runner is not None else ("fp32" if self._pending else requested)
        self._build_torch(generator, kp_detector, fuse, channels_last, compile)
        self.reset_reference()
        if self._pending and size:
            self._resolve(size)

    def _build_torch(self, generator, kp_detector, fuse, channels_last, compile):
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

    def _resolve(self, size):
        """Settle `fast`/`int8` for this frame size: measured (and cached) on first use."""
        import torch
        from fomm_core.inference.choice import resolve_path
        requested, generator, kp_detector, on_step = self._pending
        self._pending = None
        choice = resolve_path(requested, generator, kp_detector, int(size), threads=torch.get_num_threads(),
                              on_step=on_step)
        self.precision, self.note, self.choice_table, self._int8 = (choice.precision, choice.note, choice.table,
                                                                     choice.runner)

    # -- description --------------------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        if self._int8 is not None:
            return f"cpu int8 (OpenVINO, source cached in float32), {self.mode} motion"
        return super().path

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


def make_animator(model, *, adapt_movement_scale=None, **options):
    """An animator for a checkpoint of either family loaded by fomm_core.model.checkpoint.load_model.

    options: those of Animator / TpsAnimator (device, precision, mode, size, on_step, ...). adapt_movement_scale
    None keeps each family's demo default: off for FOMM, on for TPSMM (its demo always scales relative motion).
    """
    if adapt_movement_scale is not None:
        options["adapt_movement_scale"] = adapt_movement_scale
    if model.family == "tpsmm":
        from fomm_core.inference.tpsmm import TpsAnimator
        options.pop("use_relative_jacobian", None)
        options.pop("int8_runner", None)
        return TpsAnimator(model.networks, **options)
    return Animator(model.networks["generator"], model.networks["kp_detector"], **options)
