"""One path, measured in this process: our engine at one of its paths, or the original code."""
from __future__ import annotations

import time

from fomm_core.bench.reference import reference_runner
from fomm_core.bench.weights import family, inputs, our_models, our_tpsmm_networks

PATHS = ("reference", "exact", "bf16", "int8", "fast")
TPSMM_PATHS = ("reference", "exact", "bf16", "fast")
DEFAULT_CONFIG = {"fomm": "vox-256", "tpsmm": "tpsmm-vox-256"}
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


def _stage_timer(animator, timings):
    """Wrap the engine's stages with timers (the engine itself stays untouched)."""
    kp_fn, dm_fn = animator._keypoints, animator._dense_motion

    def keypoints(images):
        t = time.perf_counter()
        out = kp_fn(images)
        timings["keypoints"] += time.perf_counter() - t
        return out

    def dense_motion(kp):
        t = time.perf_counter()
        out = dm_fn(kp)
        timings["dense motion"] += time.perf_counter() - t
        return out

    animator._keypoints, animator._dense_motion = keypoints, dense_motion


def _our_model(config_name, weights):
    """Our networks as fomm_core.model.checkpoint.Model (what make_animator takes)."""
    from fomm_core.model.checkpoint import Model
    from fomm_core.model.config import load_config
    if family(config_name) == "tpsmm":
        return Model("tpsmm", our_tpsmm_networks(config_name, weights=weights), load_config(config_name), config_name)
    generator, kp_detector = our_models(config_name, weights=weights)
    return Model("fomm", {"generator": generator, "kp_detector": kp_detector}, load_config(config_name), config_name)


def _engine_runner(path, config_name, source, driving, batch, weights, device="cpu"):
    import torch
    from fomm_core.inference.factory import make_animator
    model = _our_model(config_name, weights)
    options = dict(ENGINE_PATHS[path])
    frames = driving.shape[0]
    batch = options.pop("batch", None) or batch or frames
    animator = make_animator(model, device=device, size=driving.shape[-1], **options)
    del model  # the engine holds its own copies: the user's modules would only add to the RSS
    timed = False

    def run(timings=None):
        nonlocal timed
        if timings is not None and not timed:
            _stage_timer(animator, timings)
            timed = True
        animator.set_source(source)
        animator.reset_reference()
        outs = []
        for i in range(0, frames, batch):
            t = time.perf_counter()
            outs.append(animator.animate(driving[i:i + batch]))
            if timings is not None:
                timings["generator"] += time.perf_counter() - t
        if timings is not None:  # the engine's other stages ran inside animate
            timings["generator"] -= timings["keypoints"] + timings["dense motion"]
        return torch.cat(outs)
    note = f"; {animator.note}" if animator.note else ""
    run.precision = animator.precision  # what ran: int8 or fast may have become another path here
    return animator.path + f", batch {batch}{note}", run


def make_runner(path, config_name="vox-256", size=256, frames=4, batch=None, weights="random", device="cpu"):
    """(description, run): run(timings=None) animates the benchmark's frames once by `path`, returns the frames."""
    source, driving = inputs(size, frames)
    if path == "reference":
        return reference_runner(config_name, source, driving, weights, device)
    return _engine_runner(path, config_name, source, driving, batch, weights, device)
