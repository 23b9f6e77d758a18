"""What every model family's engine shares: device and a settled precision, the call context, frame preparation,
the relative-motion reference, and the per-batch loop with its GPU fail-soft.

    animator.set_source(source)          # [1, 3, H, W] float in 0..1: what depends on the source, computed once
    for batch in frames:                 # [B, 3, H, W]
        out = animator.animate(batch)    # [B, 3, H, W] float32 0..1 on the CPU

A family's engine (fomm_core.inference.fomm's Animator, fomm_core.inference.tpsmm's TpsAnimator) supplies its
networks' steps. An engine runs the precision it is given (fp32, bf16, fp16, or int8 with its runner); `fast`,
measured on this machine, is settled before an engine is built (fomm_core.inference.factory.make_animator).
Half-precision paths autocast the convolutions only: keypoints, flow fields and every grid_sample stay float32
(half-precision sampling coordinates visibly misplace pixels). Nothing is kept between `animate` calls except the
source and reference, so memory does not grow with a video.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager, nullcontext, suppress

from fomm_core.device import cpu_has_bf16_kernels, cpu_has_fast_bf16
from fomm_core.errors import FommError
from fomm_core.media.face import Framings
from fomm_core.media.paste import Feather


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


def can_compile() -> bool:
    import torch
    return hasattr(torch, "compile")


def compiled(fn):
    """torch.compile(fn), falling back to fn for good at the first failure (no C++ compiler, unsupported op...)."""
    import torch
    try:
        compiled_fn = torch.compile(fn)
    except Exception:
        return fn
    state = {"ok": True}

    def call(*args, **kwargs):
        if state["ok"]:
            try:
                return compiled_fn(*args, **kwargs)
            except Exception:
                state["ok"] = False
        return fn(*args, **kwargs)
    return call


class Engine:
    """The shared base. A family supplies `FAMILY`, `MODES`, `_torch_keypoints` (keypoints as a dict),
    `_source_parts`, `_set_reference_kp`, `transfer` and `_render`; `note` and `choice_table` say why its path
    runs (set by whoever settled it)."""

    MODES = ("relative", "absolute")
    PRECISIONS = ("fp32", "bf16", "fp16")  # settled precisions this family's engine runs
    FAMILY = ""
    FUSED = "BN folded, sub-pixel up blocks"  # what fuse=True does, in words
    OUTPUT_SCALE = 1  # the output frame's side over the input frame's (LivePortrait's generator doubles it)
    FRAMING = Framings()   # where this family's training crops put the face (--crop)
    FEATHER = Feather()    # how its paste-back mask rises at the crop's edges (--paste-back)
    LEFT_OUT = ""          # what the original does that this engine does not, said once a run

    def __init__(self, networks: dict, *, device, precision, mode, adapt_movement_scale, int8_runner=None):
        import torch
        self.mode = self.check_mode(mode, networks)
        if precision not in self.PRECISIONS:
            raise FommError(f"a {self.FAMILY} engine runs a settled precision ({', '.join(self.PRECISIONS)}), not "
                            f"'{precision}'; make_animator settles auto, fast and int8 (measured on this machine) "
                            "before it builds one.")
        if (precision == "int8") != (int8_runner is not None):
            raise FommError("int8 runs with the OpenVINO runner built for these weights, and only int8 does; "
                            "make_animator builds the runner (and measures whether it is worth it).")
        self.device = torch.device(device)
        self.precision = precision
        self.adapt_movement_scale = adapt_movement_scale
        self.note, self.choice_table = "", []
        self._int8 = int8_runner   # fomm_core.inference.int8: keypoints and render of the driving frames
        self._source = None

    @classmethod
    def check_mode(cls, mode, networks=None) -> str:
        """The mode as this family names it, or a FommError sentence (networks: those it would run, when known)."""
        mode = {"standard": "absolute"}.get(mode, mode)  # TPSMM's demo calls absolute motion 'standard'
        if mode not in cls.MODES:
            raise FommError(f"unknown mode '{mode}' for a {cls.FAMILY} model; use {' or '.join(cls.MODES)}.")
        return mode

    def output_size(self, size: int) -> int:
        """The side of the frames `animate` returns for input frames of side `size`."""
        return int(size) * self.OUTPUT_SCALE

    @property
    def path(self) -> str:
        """Which path runs, in words, e.g. 'cpu fp32 exact (source cached, BN folded, channels-last)'."""
        if self._int8 is not None:
            return f"cpu int8 (OpenVINO, source cached in float32), {self.mode} motion"
        what = {"fp32": "fp32 exact", "bf16": "bf16 fast", "fp16": "fp16 fast"}[self.precision]
        if self.precision == "bf16" and self.device.type == "cpu" and not cpu_has_bf16_kernels():
            what += " (no bf16 kernels for this CPU: up to 300x slower than fp32)"
        elif self.precision == "bf16" and self.device.type == "cpu" and not cpu_has_fast_bf16():
            what += " (no AVX512-BF16/AMX: emulated, likely slower)"
        extras = ["source cached"]
        if self.fused:
            extras.append(self.FUSED)
        if self.channels_last:
            extras.append("channels-last")
        if self.compiled:
            extras.append("torch.compile")
        return f"{self.device.type} {what} ({', '.join(extras)}), {self.mode} motion"

    def _wrap(self, compile_asked):
        """Set `compiled`; -> what wraps a network's call (torch.compile, or nothing)."""
        # torch.compile: ~5-10% on CPU after a 10-20 s first call, so opt-in (long videos, not the webcam)
        self.compiled = bool(compile_asked) and can_compile()
        return compiled if self.compiled else (lambda fn: fn)

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
        """Driving frames [B, 3, H, W] float 0..1 -> animated source [B, 3, s*H, s*W] float32 0..1 on the CPU
        (s = OUTPUT_SCALE)."""
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
