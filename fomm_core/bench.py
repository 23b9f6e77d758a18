"""Benchmark: the original FOMM or TPSMM code against our engine's paths, on identical random weights and inputs.

    python -m fomm_core.bench [--model fomm|tpsmm] [--config vox-256] [--size 256] [--frames 4] [--runs 3]
                              [--threads N] [--smoke] [--paths reference,exact,fast] [--json]

Each path runs in its own subprocess (so peak RSS is that path's own) on the same seeded weights and frames;
the timed runs are interleaved across paths (round by round), so that load from other programs on a shared
machine hits every path alike. Outputs come back to the parent, which compares every path with the reference:
max abs difference and PSNR.
The reference is deep-animator's copy of the original code with grid_sample forced to align_corners=True
(torch 1.0's behaviour, which the checkpoints were trained with), animated as the original demo does: one frame
at a time, the source re-encoded for every frame. For TPSMM (a tpsmm-* config, or --model tpsmm) the reference is
the original repository's code (fomm_core.reference: $FOMM_TPSMM_REFERENCE or shared/reference/tpsmm beside the
checkout) run by its demo's own make_animation, relative mode; TPSMM has no int8 path.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import types
from contextlib import contextmanager
from pathlib import Path

from fomm_core.media.images import psnr

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
SEED = 0


# ----------------------------------------------------------------------------------------------------------------
# Identical models and inputs


def randomise(*modules, seed=SEED):
    """Seeded random weights that make every parameter matter (BN statistics, the zero-init Jacobian head too)."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for name, t in module.state_dict().items():
                if not t.is_floating_point() or name.endswith("down.weight"):  # the fixed Gaussian kernel
                    continue
                noise = torch.randn(t.shape, generator=gen)
                if name.endswith("running_var"):
                    t.copy_(0.5 + torch.rand(t.shape, generator=gen))
                elif name.endswith("running_mean") or (".norm" in name and name.endswith("bias")):
                    t.copy_(0.1 * noise)
                elif ".norm" in name and name.endswith("weight"):
                    t.copy_(1 + 0.1 * noise)
                elif name == "jacobian.weight":
                    t.copy_(0.01 * noise)
                elif name == "jacobian.bias":
                    t.add_(0.1 * noise)
                elif t.dim() == 1:
                    t.copy_(0.05 * noise)
                else:
                    t.copy_(noise * t.std())


def stress(generator, kp_detector):
    """Random weights give a nearly flat grey picture (a constant image scores 48.6 dB against it): scaled like
    this, the keypoints spread over the frame and the output spans 0..1, so a PSNR means something."""
    import torch
    with torch.no_grad():
        kp_detector.kp.weight.mul_(30)
        generator.final.weight.mul_(100)


def randomise_tpsmm(networks: dict, seed=SEED, stress=False, contrast=1.0):
    """Seeded random TPSMM weights, as `randomise`, with every batch norm's scale near 1 (the ResNets' and the AVD
    network's; near 0 they would silence the keypoints).

    stress: keypoints spread over the frame as a trained model's do (the detector's last layer x8, the AVD
    network's x4); the picture then has contrast of its own (std about 0.17). contrast scales the inpainting's last
    conv further (x30: a picture spanning 0..1, and a model so sensitive that float32 rounding shows at 1e-4).
    """
    import torch
    randomise(*networks.values(), seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for net in networks.values():
            for m in net.modules():
                if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                    m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=gen))
        if stress:
            networks["kp_detector"].fg_encoder.fc.weight.mul_(8)
            networks["avd_network"].decoder[-1].weight.mul_(4)
        if contrast != 1:
            networks["inpainting_network"].final.weight.mul_(contrast)


def our_models(config_name="vox-256", seed=SEED, weights="random"):
    """(generator, kp_detector) of our fomm_core, eval mode: seeded random weights ('random' or 'stress'), or
    the checkpoint file `weights` (its config wins over config_name)."""
    import torch
    from fomm_core.model.config import build_models, load_config
    if weights not in ("random", "stress"):
        from fomm_core.model.checkpoint import load_checkpoints
        generator, kp_detector = load_checkpoints(config_name, weights, "cpu")
        return generator.eval(), kp_detector.eval()
    torch.manual_seed(seed)
    generator, kp_detector = build_models(load_config(config_name))
    randomise(generator, kp_detector, seed=seed)
    if weights == "stress":
        stress(generator, kp_detector)
    return generator.eval(), kp_detector.eval()


def family(config_name) -> str:
    from fomm_core.model.config import config_family, load_config
    return config_family(load_config(config_name))


def our_tpsmm_networks(config_name="tpsmm-vox-256", seed=SEED, weights="random") -> dict:
    """Our TPSMM networks by state dict name, eval mode: seeded random weights ('random', 'stress') or a file's."""
    import torch
    from fomm_core.model.config import build_networks, load_config
    if weights not in ("random", "stress"):
        from fomm_core.model.checkpoint import load_model
        return load_model(config_name, weights, "cpu").networks
    torch.manual_seed(seed)
    networks = build_networks(load_config(config_name))
    randomise_tpsmm(networks, seed=seed, stress=weights == "stress")
    del networks["bg_predictor"]  # trained with the model, never used to animate
    return {k: v.eval() for k, v in networks.items()}


def reference_available(config_name="vox-256") -> bool:
    if family(config_name) == "tpsmm":
        from fomm_core.reference import load_tpsmm_reference
        return load_tpsmm_reference() is not None
    import importlib
    try:
        for name in ("deep_animator.modules.generator", "deep_animator.modules.kp_detector"):
            importlib.import_module(name)
        return True
    except Exception:
        return False


def reference_models(config_name="vox-256", seed=SEED, weights="random"):
    """The original code's modules holding exactly our weights (strict load)."""
    from deep_animator.modules.generator import OcclusionAwareGenerator
    from deep_animator.modules.kp_detector import KPDetector
    from fomm_core.model.config import load_config, original_model_params
    params = original_model_params(load_config(config_name))
    generator = OcclusionAwareGenerator(**params["generator_params"], **params["common_params"])
    kp_detector = KPDetector(**params["kp_detector_params"], **params["common_params"])
    ours_g, ours_k = our_models(config_name, seed, weights)
    generator.load_state_dict(ours_g.state_dict(), strict=True)
    kp_detector.load_state_dict(ours_k.state_dict(), strict=True)
    return generator.eval(), kp_detector.eval()


@contextmanager
def training_time_grid_sample():
    """Patch the reference modules' `F` so grid_sample defaults to align_corners=True (torch 1.0's behaviour)."""
    import torch.nn.functional as F
    import deep_animator.modules.dense_motion as dm
    import deep_animator.modules.generator as gen

    def grid_sample(*args, **kwargs):
        kwargs.setdefault("align_corners", True)
        return F.grid_sample(*args, **kwargs)

    proxy = types.SimpleNamespace(**{n: getattr(F, n) for n in dir(F) if not n.startswith("__")})
    proxy.grid_sample = grid_sample
    saved = {m: m.F for m in (dm, gen)}
    try:
        for m in saved:
            m.F = proxy
        yield
    finally:
        for m, f in saved.items():
            m.F = f


def inputs(size=256, frames=4, seed=SEED):
    """A smooth random source [1, 3, S, S] and driving frames [N, 3, S, S] in 0..1 (the same for every path)."""
    import torch
    import torch.nn.functional as F
    gen = torch.Generator().manual_seed(seed + 1)
    coarse = torch.rand(frames + 1, 3, 16, 16, generator=gen)
    images = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return images[:1].contiguous(), images[1:].contiguous()


def reference_normalize_kp(kp_source, kp_driving, kp_initial):
    """The original demo's normalize_kp with relative movement and Jacobians (adapt scale off), torch.inverse."""
    import torch
    value = kp_driving["value"] - kp_initial["value"] + kp_source["value"]
    jacobian = torch.matmul(torch.matmul(kp_driving["jacobian"], torch.inverse(kp_initial["jacobian"])),
                            kp_source["jacobian"])
    return {"value": value, "jacobian": jacobian}


def reference_animate(generator, kp_detector, source, frames, timings=None):
    """The original demo's loop: per frame keypoints, normalize_kp, the whole generator (source re-encoded)."""
    import torch
    outs = []
    with torch.no_grad(), training_time_grid_sample():
        kp_source = kp_detector(source)
        kp_initial = kp_detector(frames[:1])
        for i in range(frames.shape[0]):
            t0 = time.perf_counter()
            kp = kp_detector(frames[i:i + 1])
            t1 = time.perf_counter()
            kp_norm = reference_normalize_kp(kp_source, kp, kp_initial)
            if timings is not None:  # dense motion alone, timed separately (the generator runs it again inside)
                generator.dense_motion_network(source_image=source, kp_driving=kp_norm, kp_source=kp_source)
            t2 = time.perf_counter()
            outs.append(generator(source, kp_source=kp_source, kp_driving=kp_norm)["prediction"])
            t3 = time.perf_counter()
            if timings is not None:
                timings["keypoints"] += t1 - t0
                timings["dense motion"] += t2 - t1
                timings["generator"] += (t3 - t2) - (t2 - t1)
    return torch.cat(outs)


# ----------------------------------------------------------------------------------------------------------------
# One path, measured in this process


def _peak_rss_mb() -> float:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


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


def _tpsmm_reference_runner(config_name, source, driving, weights, device="cpu"):
    """The original TPSMM demo's make_animation (relative mode) on the original modules holding our weights."""
    import numpy as np
    import torch
    from fomm_core.model.config import load_config
    from fomm_core.reference import load_tpsmm_reference, tpsmm_reference_networks
    ref = load_tpsmm_reference()
    theirs = tpsmm_reference_networks(ref, load_config(config_name))
    for name, net in our_tpsmm_networks(config_name, weights=weights).items():
        theirs[name].load_state_dict(net.state_dict(), strict=True)
    nets = {k: v.to(device).eval() for k, v in theirs.items()}
    source_hwc = source[0].permute(1, 2, 0).numpy()
    driving_hwc = [frame.permute(1, 2, 0).numpy() for frame in driving]

    def run(timings=None):
        predictions = ref.make_animation(source_hwc, driving_hwc, nets["inpainting_network"], nets["kp_detector"],
                                         nets["dense_motion_network"], nets["avd_network"], device, mode="relative")
        return torch.from_numpy(np.stack(predictions)).permute(0, 3, 1, 2)
    return "original TPSMM code (its demo's make_animation), frame by frame", run


def _reference_runner(config_name, source, driving, weights, device="cpu"):
    if family(config_name) == "tpsmm":
        return _tpsmm_reference_runner(config_name, source, driving, weights, device)
    generator, kp_detector = reference_models(config_name, weights=weights)
    generator, kp_detector = generator.to(device), kp_detector.to(device)
    source, driving = source.to(device), driving.to(device)

    def run(timings=None):  # .cpu(): on a GPU, also waits for the work to finish before the clock stops
        return reference_animate(generator, kp_detector, source, driving, timings).cpu()
    return "original code, frame by frame, align_corners=True", run


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
    from fomm_core.inference.engine import make_animator
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
        return _reference_runner(config_name, source, driving, weights, device)
    return _engine_runner(path, config_name, source, driving, batch, weights, device)


def _worker(ns) -> None:
    """A path's own process: warm up, say 'ready', then time one run per 'run' line; 'done' saves and exits.

    The parent sends 'run' to each path in turn, so that the paths are timed interleaved: a neighbour's load
    on a shared machine slows all of them alike instead of one path's whole measurement.
    """
    import torch
    torch.set_num_threads(ns.threads)
    description, run = make_runner(ns.child, ns.config, ns.size, ns.frames, weights=ns.weights, device=ns.device)
    output = run()  # warm-up (and torch.compile's compile, where asked)
    print("ready", flush=True)
    seconds = []
    for line in sys.stdin:
        if line.strip() == "run":
            t = time.perf_counter()
            output = run()
            seconds.append(time.perf_counter() - t)
            print(f"time {seconds[-1]}", flush=True)
        elif line.strip() == "done":
            break
    stages = {"keypoints": 0.0, "dense motion": 0.0, "generator": 0.0}
    run(stages)  # one more pass with per-stage timers
    result = {"path": description, "fps": ns.frames / statistics.median(seconds), "seconds": seconds,
              "stages": {k: v / ns.frames for k, v in stages.items()}, "peak_rss_mb": _peak_rss_mb(),
              "output": output, "precision": getattr(run, "precision", ns.child)}
    tmp = ns.out + ".partial"
    torch.save(result, tmp)
    os.replace(tmp, ns.out)


# ----------------------------------------------------------------------------------------------------------------
# The whole benchmark


def environment(threads, device="cpu") -> dict:
    import torch
    from fomm_core.inference.engine import cpu_flags, cpu_name
    flags, cpu = cpu_flags(), cpu_name()
    gpu = ""
    if str(device).startswith("cuda"):
        gpu = torch.cuda.get_device_name(torch.device(device))
    return {"torch": torch.__version__, "threads": threads, "cpu": cpu, "device": str(device), "gpu": gpu,
            "python": platform.python_version(),
            "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "amx": bool({"amx_tile", "amx_bf16"} & flags)}


class _Worker:
    """The parent's handle on one path's process."""

    def __init__(self, path, args, threads, workdir):
        self.path, self.out = path, Path(workdir) / f"{path}.pt"
        self.err = open(Path(workdir) / f"{path}.err", "w+", encoding="utf-8")
        cmd = [sys.executable, "-m", "fomm_core.bench", "--child", path, "--config", args.config,
               "--size", str(args.size), "--frames", str(args.frames), "--threads", str(threads),
               "--weights", str(args.weights), "--device", str(args.device), "--out", str(self.out)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                     text=True, env=env)
        self.error = None

    def ask(self, command, expect):
        """Send a command line; True once the worker answers with a line starting with `expect`."""
        if self.error:
            return False
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        return self.wait_for(expect)

    def wait_for(self, expect):
        line = self.proc.stdout.readline()
        if line.startswith(expect):
            return True
        self.fail()
        return False

    def fail(self):
        self.proc.kill()
        self.proc.wait()
        self.err.seek(0)
        tail = self.err.read().strip().splitlines()[-1:] or ["the worker stopped without a message"]
        self.error = tail[0]

    def finish(self) -> dict:
        if not self.error:
            try:
                self.proc.stdin.write("done\n")
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            if self.proc.wait() != 0:
                self.fail()
        self.err.close()
        if self.error:
            return {"error": self.error}
        import torch
        return torch.load(self.out, weights_only=True)


def size_unit(config_name) -> int:
    """Frame sizes must be multiples of this: every hourglass and the generator halve the image several times."""
    from fomm_core.model.config import load_config
    params = load_config(config_name)["model_params"]
    if family(config_name) == "tpsmm":  # the ResNet-18 halves 5 times; the dense motion's hourglass at its scale
        dm = params["dense_motion_params"]
        units = [32, 2 ** params["generator_params"]["num_down_blocks"], 2 ** dm["num_blocks"] / dm["scale_factor"]]
        return int(math.ceil(max(units)))
    kp, gen = params["kp_detector_params"], params["generator_params"]
    dm = gen.get("dense_motion_params") or {}
    units = [2 ** gen["num_down_blocks"], 2 ** kp["num_blocks"] / kp.get("scale_factor", 1)]
    if dm:
        units.append(2 ** dm["num_blocks"] / dm.get("scale_factor", 1))
    return int(math.ceil(max(units)))


def reference_differs(config_name) -> list:
    """Our own generator options this config turns on: the original code has none of them, so for such a config
    its output differs by design and the comparison with it measures nothing."""
    from fomm_core.model.config import OUR_GENERATOR_OPTIONS, load_config
    options = load_config(config_name)["model_params"]["generator_params"]  # TPSMM's has none of them
    return [name for name in OUR_GENERATOR_OPTIONS if options.get(name)]


def check_options(config="vox-256", size=256, frames=4, runs=3, threads=None, paths=PATHS, weights="stress") -> None:
    """Raise FommError with one sentence for options the benchmark cannot run with."""
    from fomm_core.errors import FommError
    if weights not in ("random", "stress") and not Path(weights).is_file():
        raise FommError(f"--weights must be random, stress or a checkpoint file; {weights} is none of them.")
    unit = size_unit(config)
    if size < unit or size % unit:
        raise FommError(f"--size must be a multiple of {unit} for {config} (its networks halve the image that often).")
    if frames < 1 or runs < 1 or (threads is not None and threads < 1):
        raise FommError("--frames, --runs and --threads must be at least 1.")
    _check_paths(config, paths)


def _check_paths(config, paths) -> None:
    from fomm_core.errors import FommError
    known = [p for p in ALL_PATHS if p != "int8"] if family(config) == "tpsmm" else ALL_PATHS
    unknown = [p for p in paths if p not in known]
    if unknown or not paths:
        raise FommError(f"unknown path {', '.join(unknown) or '(none)'} for {config}; choose from: {', '.join(known)}.")


def _start_workers(paths, args, threads, workdir, on_path) -> list:
    workers = []
    for path in paths:  # one at a time: set-up and warm-up are not timed, but should not crowd each other
        on_path(f"{path}: building and warming up")
        worker = _Worker(path, args, threads, workdir)
        worker.wait_for("ready")
        workers.append(worker)
    return workers


def _run_workers(workers, runs, on_path) -> dict:
    """Time `runs` rounds, interleaved (every path once per round); then each path's result by name."""
    for r in range(runs):
        for worker in workers:
            on_path(f"{worker.path}: run {r + 1} of {runs}")
            worker.ask("run", "time")
    results = {}
    for worker in workers:
        on_path(f"{worker.path}: stage timings")
        results[worker.path] = worker.finish()
    return results


def _row(path, result, ref, exact) -> dict:
    """One path's line of the report: its timings, and its output compared with the reference and exact paths."""
    row = {"name": path}
    if "error" in result:
        row["error"] = result["error"]
        return row
    row.update({k: result[k] for k in ("path", "fps", "seconds", "stages", "peak_rss_mb", "precision")})
    if path == "reference":
        return row
    if "fps" in ref:
        row["speedup"] = result["fps"] / ref["fps"]
    if "output" in ref:
        row["max_abs_vs_reference"] = float((result["output"] - ref["output"]).abs().max())
        row["psnr_vs_reference"] = psnr(result["output"], ref["output"])
    if "output" in exact and path != "exact":
        row["psnr_vs_exact"] = psnr(result["output"], exact["output"])
    return row


def run_benchmark(config="vox-256", size=256, frames=4, runs=3, threads=None, paths=None, on_path=None,
                  weights="stress", device="cpu") -> dict:
    """Every path in its own subprocess; the parent compares outputs. Returns a JSON-able dict.

    paths: None for the config family's own (TPSMM has no int8).
    on_path(name) is called as each path starts (for progress display).
    """
    if paths is None:
        paths = TPSMM_PATHS if family(config) == "tpsmm" else PATHS
    check_options(config, size, frames, runs, threads, paths, weights)
    threads = threads or max(1, min(os.cpu_count() or 1, 4))
    from fomm_core.device import resolve_device
    device = str(resolve_device(device))  # one sentence here, before any worker, when it cannot be used
    args = types.SimpleNamespace(config=config, size=size, frames=frames, runs=runs, weights=weights, device=device)
    available = reference_available(config)
    paths = [p for p in paths if p != "reference" or available]
    on_path = on_path or (lambda _message: None)
    with tempfile.TemporaryDirectory(prefix="fomm-bench-") as workdir:
        results = _run_workers(_start_workers(paths, args, threads, workdir, on_path), runs, on_path)
    ref, exact = results.get("reference", {}), results.get("exact", {})
    rows = [_row(path, results[path], ref, exact) for path in paths]
    return {"config": config, "size": size, "frames": frames, "runs": runs, "weights": str(weights),
            "reference_differs": reference_differs(config),
            "environment": environment(threads, device), "reference_available": available, "rows": rows}


def _cell(row, key, fmt, width) -> str:
    return format(row[key], fmt).rjust(width) if key in row else "-".rjust(width)


def format_text(report) -> str:
    """The report in 80 columns: one row per path; the details (what runs, stage timings) are in --json."""
    env = report["environment"]
    yes = {True: "yes", False: "no"}
    lines = [f"{report['config']} {report['size']}px, {report.get('weights', 'random')} weights, "
             f"{report['frames']} frames x {report['runs']} runs, torch {env['torch']}, {env['threads']} threads",
             f"{env['cpu']}: AVX-512 {yes[env['avx512f']]}, AVX512-BF16 {yes[env['avx512_bf16']]}, "
             f"AMX {yes[env['amx']]}" + (f"; timed on {env['device']}: {env.get('gpu', '')}"
                                          if env.get("device", "cpu") != "cpu" else ""),
             f"{'path':<12}{'frames/s':>9}{'x orig':>8}{'PSNR/ref':>9}{'PSNR/exact':>11}{'max|diff|':>10}{'peak MB':>9}"]
    for row in report["rows"]:
        if "error" in row:
            lines.append(f"{row['name']:<12} failed: {row['error']}"[:80])
            continue
        name = row["name"] if row.get("precision", row["name"]) in (row["name"], "fp32") and row["name"] != "fast" \
            else f"{row['name']} ({row['precision']})"
        lines.append(f"{name:<12}{row['fps']:>9.2f}{_cell(row, 'speedup', '.2f', 8)}"
                     f"{_cell(row, 'psnr_vs_reference', '.1f', 9)}{_cell(row, 'psnr_vs_exact', '.1f', 11)}"
                     f"{_cell(row, 'max_abs_vs_reference', '.1e', 10)}{row['peak_rss_mb']:>9.0f}")
    if report.get("reference_differs"):
        lines += textwrap.wrap(f"the original code has no {', '.join(report['reference_differs'])}: for "
                               f"{report['config']} its output differs by design (PSNR/ref means nothing)", 80)
    for row in report["rows"]:
        if row["name"] == "int8" and "; " in row.get("path", ""):
            lines += textwrap.wrap("int8: " + row["path"].split("; ", 1)[-1], 80, subsequent_indent="  ")
    fast = next((r for r in report["rows"] if r["name"] == "fast" and "path" in r), None)
    if fast:
        lines += textwrap.wrap("fast: " + fast["path"].split("; ", 1)[-1], 80, subsequent_indent="  ")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fomm_core.bench", description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("fomm", "tpsmm"), default=None,
                   help="the family to benchmark (its published vox config unless --config is given)")
    p.add_argument("--config", default=None)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--paths", default=None, help="comma-separated (default: the family's own)")
    p.add_argument("--weights", default="stress", help="stress (random, scaled so the output spans 0..1), "
                   "random, or a checkpoint file (with its --config and --size)")
    p.add_argument("--smoke", action="store_true", help="128x128, 2 frames, 1 run (for CI)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (int8 runs on the CPU only)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    if ns.child:
        _worker(ns)
        return 0
    ns.config = ns.config or DEFAULT_CONFIG[ns.model or "fomm"]
    if ns.smoke:
        ns.size, ns.frames, ns.runs = 128, 2, 1
    from fomm_core.errors import FommError
    try:
        report = run_benchmark(ns.config, ns.size, ns.frames, ns.runs, ns.threads,
                               ns.paths.split(",") if ns.paths else None, weights=ns.weights, device=ns.device)
    except FommError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if ns.json else format_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
