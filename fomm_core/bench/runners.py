"""One path, measured in this process: our engine at one of its paths, or the original code."""
from __future__ import annotations

import time

from fomm_core.bench.reference import reference_runner
from fomm_core.bench.stages import ENGINE_CALLS, STAGES, time_calls
from fomm_core.bench.weights import clip, family, our_models, our_tpsmm_networks

PATHS = ("reference", "exact", "bf16", "int8", "fast")
LIVEPORTRAIT_PATHS = ("reference", "exact", "bf16", "fast")
DEFAULT_CONFIG = {"fomm": "vox-256", "tpsmm": "tpsmm-vox-256", "liveportrait": "liveportrait"}
# Our paths and the engine options they run with; the extra ones isolate one idea each (ablation).
ENGINE_PATHS = {
    "exact": dict(precision="fp32"),
    "bf16": dict(precision="bf16"),
    "int8": dict(precision="int8"),
    "fast": dict(precision="fast"),                            # what `fast` picks here (measured, cached)
    "cached": dict(precision="fp32", fuse=False),            # only: source cached, 2x2 inverse, no 'deformed' warp
    "exact-b1": dict(precision="fp32", batch=1),              # one frame per call
    "exact-contiguous": dict(precision="fp32", channels_last=False),  # folded, but NCHW memory
    "fast-b1": dict(precision="bf16", batch=1),
    "fast-unfused": dict(precision="bf16", fuse=False),       # bf16 autocast alone on top of 'cached'
    "exact-compiled": dict(precision="fp32", compile=True),   # torch.compile (its compile time is in warm-up)
    "fast-compiled": dict(precision="bf16", compile=True),
}
ALL_PATHS = ("reference",) + tuple(ENGINE_PATHS)
# family -> (the paths run by default, every path it can run); LivePortrait's engine has no int8 (G's int8 measured
# 25 dB), no batching and no compile worth running, but its fusion can be switched off to show what it buys
FAMILY_PATHS = {"fomm": (PATHS, ALL_PATHS), "tpsmm": (PATHS, ALL_PATHS),
                "liveportrait": (LIVEPORTRAIT_PATHS, LIVEPORTRAIT_PATHS + ("cached", "fast-unfused"))}


def not_run_here(path, device) -> str:
    """Why `path` is not run on `device` ('' when it is): a bf16 path on a CPU torch has no bf16 kernels for would
    take hours to time (up to 300x float32's time) only to show that it loses."""
    from fomm_core.device import BF16_WITHOUT_KERNELS, cpu_has_bf16_kernels
    bf16 = ENGINE_PATHS.get(path, {}).get("precision") == "bf16"
    return BF16_WITHOUT_KERNELS if bf16 and str(device) == "cpu" and not cpu_has_bf16_kernels() else ""


def _stage_timer(animator, fam, timings) -> list:
    """Time the engine's stages (the engine itself stays untouched); -> the stages timed around their own calls."""
    return time_calls(animator, ENGINE_CALLS[fam], timings)


def _our_model(config_name, weights):
    """Our networks as fomm_core.model.checkpoint.Model (what make_animator takes)."""
    from fomm_core.model.checkpoint import Model, load_model
    from fomm_core.model.config import load_config
    if family(config_name) == "liveportrait":  # a folder of the five files (the stress set is saved as one)
        return load_model(weights)
    if family(config_name) == "tpsmm":
        return Model("tpsmm", our_tpsmm_networks(config_name, weights=weights), load_config(config_name), config_name)
    generator, kp_detector = our_models(config_name, weights=weights)
    return Model("fomm", {"generator": generator, "kp_detector": kp_detector}, load_config(config_name), config_name)


def _settle_stages(timings, fam, timed, animate_seconds) -> None:
    """After a timed run: the rest of animate is the stage no call of its own times (FOMM's and TPSMM's
    generator); a stage whose call this engine lacks is dropped rather than reported as zero."""
    calls = ENGINE_CALLS[fam]
    for stage in STAGES[fam]:
        if stage not in calls.values():
            timings[stage] += animate_seconds - sum(timings[s] for s in timed)
        elif stage not in timed:
            timings.pop(stage, None)


def make_engine(path, config_name, size, weights, device="cpu"):
    """Our engine at one of ENGINE_PATHS (its batch option is the runner's, not the engine's). The loaded model is
    not kept: the engine holds its own copies, and the model's would only add to the RSS."""
    from fomm_core.inference.factory import make_animator
    options = {k: v for k, v in ENGINE_PATHS[path].items() if k != "batch"}
    return make_animator(_our_model(config_name, weights), device=device, size=size, **options)


def _engine_runner(path, config_name, source, driving, batch, weights, device="cpu"):
    import torch
    frames = driving.shape[0]
    batch = ENGINE_PATHS[path].get("batch") or batch or frames
    animator = make_engine(path, config_name, driving.shape[-1], weights, device)
    fam, timed = family(config_name), []

    def run(timings=None):
        if timings is not None and not timed:
            timed.extend(_stage_timer(animator, fam, timings))
        animator.set_source(source)
        animator.reset_reference()
        outs, seconds = [], 0.0
        for i in range(0, frames, batch):
            t = time.perf_counter()
            outs.append(animator.animate(driving[i:i + batch]))
            seconds += time.perf_counter() - t
        if timings is not None:
            _settle_stages(timings, fam, timed, seconds)
        return torch.cat(outs)
    note = f"; {animator.note}" if animator.note else ""
    run.precision = animator.precision  # what ran: int8 or fast may have become another path here
    run.note = animator.note            # why (the path's own words may hold semicolons too)
    return animator.path + f", batch {batch}{note}", run


def make_runner(path, config_name="vox-256", size=256, frames=4, batch=None, weights="random", device="cpu"):
    """(description, run): run(timings=None) animates the benchmark's frames once by `path`, returns the frames."""
    source, driving = clip(config_name, size, frames)
    if path == "reference":
        return reference_runner(config_name, source, driving, weights, device)
    return _engine_runner(path, config_name, source, driving, batch, weights, device)
