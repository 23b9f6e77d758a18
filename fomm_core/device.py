"""One device and precision policy for the library and every command.

    device = resolve_device("auto")              # torch.device: CUDA when usable, then Apple MPS, then CPU
    precision = choose_precision(device, "auto")  # 'fast' on CPU (measured), 'fp16' on CUDA

A device is spelled `auto`, `cpu`, `cuda`, `cuda:N` or `mps`; anything else, or a GPU this torch cannot use,
is one FommError sentence (its `setting` names the device to use instead). "Usable" means a tiny operation on the
device succeeds: a CUDA build can see a GPU it has no kernels for, or a driver too old for it, and then `auto`
falls back instead of failing mid-video.
The CPU's own facts (`cpu_flags`, `cpu_name`, `cpu_has_fast_bf16`, `cpu_has_bf16_kernels`) are here too. Nothing
here changes a process-wide setting.
"""
from __future__ import annotations

import re

from fomm_core.errors import FommError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("auto", "fast", "fp32", "bf16", "fp16", "int8")
_SPELLING = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")


def check_device(text) -> str:
    """The device as written, lower-cased, or a FommError naming the spellings. No torch needed."""
    word = str(text or "auto").strip().lower()
    if not _SPELLING.fullmatch(word):
        raise FommError(f"unknown device '{text}'; use one of: {', '.join(DEVICES)}.")
    return word


def _works(torch, device) -> bool:
    try:
        (torch.ones(1, device=device) + 1).item()
        return True
    except Exception:  # seen but unusable: no kernels for this GPU, driver too old, out of memory
        return False


def cuda_usable(torch, device="cuda") -> bool:
    return bool(torch.cuda.is_available()) and _works(torch, device)


def mps_usable(torch) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available()) and _works(torch, "mps")


def resolve_device(text="auto"):
    """`auto` -> the best usable device; an explicit one -> itself when usable, else a FommError sentence."""
    import torch
    if isinstance(text, torch.device):
        text = str(text)
    word = check_device(text)
    if word == "auto":
        if cuda_usable(torch):
            return torch.device("cuda")
        return torch.device("mps" if mps_usable(torch) else "cpu")
    if word.startswith("cuda"):
        _check_cuda(torch, word)
    if word == "mps" and not mps_usable(torch):
        raise FommError("the Apple GPU (mps) was asked for but is not available; run on the CPU instead.",
                        setting=("device", "cpu"))
    return torch.device(word)


def _check_cuda(torch, word) -> None:
    if not torch.cuda.is_available():
        raise FommError(f"device {word} was asked for but this torch ({torch.__version__}) cannot use a GPU; run on "
                        "the CPU instead, or install a CUDA build of torch.", setting=("device", "cpu"))
    index = int(word.split(":")[1]) if ":" in word else 0
    if index >= torch.cuda.device_count():
        raise FommError(f"device {word} was asked for but this machine has {torch.cuda.device_count()} CUDA "
                        "device(s), numbered from 0; ask for one of them.", setting=("device", "cuda:0"))
    if not _works(torch, word):
        raise FommError(f"torch sees {word} but cannot run on it (no kernels for this GPU, or the driver is too "
                        "old); run on the CPU instead, or install a torch build and driver for this GPU.",
                        setting=("device", "cpu"))


def check_precision(text) -> str:
    """The precision as written, lower-cased, or a FommError naming the choices. No torch needed."""
    word = str(text or "auto").strip().lower()
    if word not in PRECISIONS:
        raise FommError(f"unknown precision '{text}'; use one of: {', '.join(PRECISIONS)}.")
    return word


def choose_precision(device, requested: str = "auto") -> str:
    """The precision asked of the engine: 'fp32' (exact), 'bf16', 'fp16', 'int8', or 'fast' (measured on the CPU).

    auto is fast: on the CPU the fastest path that meets the quality bar on this machine (measured on first use by
    fomm_core.inference.factory.make_animator, with fomm_core.inference.choice), fp16 on CUDA, exact float32 on
    Apple's GPU (its half precision is not faster for these convolutions everywhere, and exact is the safe default
    there).
    fp16 asked for on a CPU becomes bf16 (CPUs have no fast fp16 convolutions); bf16 on CUDA stays bf16.
    int8 runs on the CPU only (OpenVINO).
    """
    import torch
    requested = check_precision(requested)
    kind = torch.device(device).type
    if requested in ("auto", "fast"):
        return {"cuda": "fp16", "cpu": "fast"}.get(kind, "fp32")
    if requested == "fp16" and kind != "cuda":
        return "bf16"
    if requested == "int8" and kind != "cpu":
        raise FommError(f"int8 runs on the CPU only (OpenVINO); run it on the CPU, or use fp16 on {kind}.",
                        setting=("device", "cpu"))
    return requested


# ----------------------------------------------------------------------------------------------------------------
# The CPU's facts: what a measured path choice is keyed by, and whether bf16 has hardware behind it


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


# Measured on an AMD EPYC with AVX2 only (Zen 3), torch 2.13, one thread, bf16 autocast against float32: a 3x3
# conv2d 125-170x (22->64 channels at 64 px: 1.5 ms, 187 ms), a 3x3 conv3d 47-52x (22->64 on a 16x16x16 volume:
# 12 ms, 576 ms); LivePortrait's warping module at 128 px 320x (1.1 s, 364 s), its generator 6x (1.4 s, 9.2 s).
BF16_WITHOUT_KERNELS = ("this CPU has no bf16 kernels, which need AVX-512 or AMX: bf16 runs on reference loops, "
                        "up to 300x slower than float32")


def cpu_has_bf16_kernels(flags=None) -> bool:
    """Whether torch's oneDNN has bf16 kernels for this CPU (AVX-512 BW/VL/DQ or AMX on x86; Arm's bf16). Without
    them a bf16 convolution falls to torch's reference loops (BF16_WITHOUT_KERNELS), so bf16 is not worth timing.
    AVX-512 without AVX512-BF16 has kernels that emulate it: slower than float32 or not, which only measuring says.
    flags: a CPU's flags to judge instead of asking this torch (what it asks, where it can)."""
    if flags is None:
        try:
            import torch
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (ImportError, AttributeError, RuntimeError):  # a torch without the check: judged by the flags
            flags = cpu_flags()
    return {"avx512bw", "avx512vl", "avx512dq"} <= flags or bool({"amx_bf16", "bf16"} & flags)
