"""One device and precision policy for the library and every command.

    device = resolve_device("auto")              # torch.device: CUDA when usable, then Apple MPS, then CPU
    precision = choose_precision(device, "auto")  # 'fp32' on CPU (exact), 'fp16' on CUDA

A device is spelled `auto`, `cpu`, `cuda`, `cuda:N` or `mps`; anything else, or a GPU this torch cannot use,
is one FommError sentence. "Usable" means a tiny operation on the device succeeds: a CUDA build can see a GPU
it has no kernels for, or a driver too old for it, and then `auto` falls back instead of failing mid-video.
Nothing here changes a process-wide setting.
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
        if not torch.cuda.is_available():
            raise FommError(f"device {word} was asked for but this torch ({torch.__version__}) cannot use a GPU; "
                            "use --device cpu, or run `fomm-doctor install` for a CUDA build.")
        index = int(word.split(":")[1]) if ":" in word else 0
        if index >= torch.cuda.device_count():
            raise FommError(f"device {word} was asked for but this machine has {torch.cuda.device_count()} "
                            "CUDA device(s), numbered from 0.")
        if not _works(torch, word):
            raise FommError(f"torch sees {word} but cannot run on it (no kernels for this GPU, or the driver is "
                            "too old); run `fomm-doctor check` to see why.")
    if word == "mps" and not mps_usable(torch):
        raise FommError("the Apple GPU (mps) was asked for but is not available; use --device cpu.")
    return torch.device(word)


def check_precision(text) -> str:
    """The precision as written, lower-cased, or a FommError naming the choices. No torch needed."""
    word = str(text or "auto").strip().lower()
    if word not in PRECISIONS:
        raise FommError(f"unknown precision '{text}'; use one of: {', '.join(PRECISIONS)}.")
    return word


def choose_precision(device, requested: str = "auto") -> str:
    """The precision asked of the engine: 'fp32' (exact), 'bf16', 'fp16', 'int8', or 'fast' (measured on the CPU).

    auto is fast: on the CPU the fastest path that meets the quality bar on this machine (measured on first use:
    fomm_core.inference.choice), fp16 on CUDA, exact float32 on Apple's GPU (its half precision is not faster
    for these convolutions everywhere, and exact is the safe default there).
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
        raise FommError(f"int8 runs on the CPU (OpenVINO); use --device cpu with it, or fp16 on {kind}.")
    return requested
