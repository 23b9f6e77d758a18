"""The whole benchmark: its options checked, every path in its own worker, the outputs compared; the report as
JSON-able rows and as an 80-column table."""
from __future__ import annotations

import os
import platform
import tempfile
import textwrap
import types
from pathlib import Path

from fomm_core.bench.reference import how_to_add_reference, missing_reference, reference_available
from fomm_core.bench.runners import FAMILY_PATHS, PATHS, not_run_here
from fomm_core.bench.weights import family, size_unit, worker_weights
from fomm_core.bench.worker import run_workers, start_workers
from fomm_core.media.images import psnr

SMOKE_SIZE = 128  # --smoke's frames in, every family (smoke_settings)


def environment(threads, device="cpu") -> dict:
    import torch
    from fomm_core.device import cpu_flags, cpu_name
    flags, cpu = cpu_flags(), cpu_name()
    gpu = ""
    if str(device).startswith("cuda"):
        gpu = torch.cuda.get_device_name(torch.device(device))
    return {"torch": torch.__version__, "threads": threads, "cpu": cpu, "device": str(device), "gpu": gpu,
            "python": platform.python_version(),
            "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "amx": bool({"amx_tile", "amx_bf16"} & flags)}


def reference_differs(config_name) -> list:
    """Our own generator options this config turns on: the original code has none of them, so for such a config
    its output differs by design and the comparison with it measures nothing."""
    from fomm_core.model.config import OUR_GENERATOR_OPTIONS, load_config
    if family(config_name) == "liveportrait":  # the networks are the original's, option for option
        return []
    options = load_config(config_name)["model_params"]["generator_params"]  # TPSMM's has none of them
    return [name for name in OUR_GENERATOR_OPTIONS if options.get(name)]


def check_options(config="vox-256", size=256, frames=4, runs=3, threads=None, paths=PATHS, weights="stress",
                  one_pass=False) -> None:
    """Raise FommError with one sentence for options the benchmark cannot run with (one_pass: --smoke's)."""
    from fomm_core.errors import FommError
    _check_size(config, size, one_pass)
    if frames < 1 or runs < 1 or (threads is not None and threads < 1):
        raise FommError("--frames, --runs and --threads must be at least 1.")
    _check_paths(config, paths)
    _check_weights(config, weights)  # last: LivePortrait's stress weights look for the original code


def _check_weights(config, weights) -> None:
    from fomm_core.errors import FommError
    if family(config) == "liveportrait":
        _check_liveportrait_weights(config, weights)
    elif weights not in ("random", "stress") and not Path(weights).is_file():
        raise FommError(f"--weights must be random, stress or a checkpoint file; {weights} is none of them.")


def _check_liveportrait_weights(config, weights) -> None:
    """LivePortrait's stress weights are made by the original code; a real set is a folder of its five files."""
    from fomm_core.errors import FommError
    from fomm_core.model.liveportrait.files import set_files
    if weights == "stress" and not reference_available(config):
        raise FommError(f"LivePortrait's stress weights are the original code's networks, seeded, and "
                        f"{missing_reference(config)}: {how_to_add_reference(config)}, or give --weights a folder "
                        "of LivePortrait's five files.")
    if weights != "stress" and set_files(weights) is None:
        raise FommError(f"--weights must be stress or a folder of LivePortrait's five files for {config}; {weights} "
                        "is neither.")


def _check_size(config, size, one_pass=False) -> None:
    from fomm_core.errors import FommError
    if family(config) == "liveportrait":
        from fomm_core.model.liveportrait.config import INPUT_SIZE, OUTPUT_SIZE
        if size != INPUT_SIZE and not (one_pass and size == SMOKE_SIZE):
            raise FommError(f"--size is {INPUT_SIZE} for {config}: its networks take a {INPUT_SIZE}-px crop (and "
                            f"make a {OUTPUT_SIZE}-px frame).")
        return
    unit = size_unit(config)
    if size < unit or size % unit:
        raise FommError(f"--size must be a multiple of {unit} for {config} (its networks halve the image that often).")


def _check_paths(config, paths) -> None:
    from fomm_core.errors import FommError
    known = FAMILY_PATHS[family(config)][1]
    unknown = [p for p in paths if p not in known]
    if unknown or not paths:
        raise FommError(f"unknown path {', '.join(unknown) or '(none)'} for {config}; choose from: {', '.join(known)}.")


def smoke_settings(config) -> tuple:
    """(size, frames, runs) of --smoke: checks that every path works, not its speed (each path runs one pass:
    run_benchmark's one_pass), at a quarter of the published frames' pixels for every family. LivePortrait's
    networks are convolutions that take any side W's hourglass halves evenly (its timed runs and the commands keep
    the published 256-px crop, which the smoke has no need of: 128 in, 256 out)."""
    return SMOKE_SIZE, 2, 1


def output_side(config, size) -> int:
    """The side of the frames a config's paths return for frames of side `size` (LivePortrait's G doubles it)."""
    if family(config) == "liveportrait":
        from fomm_core.model.liveportrait.config import INPUT_SIZE, OUTPUT_SIZE
        return size * OUTPUT_SIZE // INPUT_SIZE
    return size


def _row(path, result, ref, exact) -> dict:
    """One path's line of the report: its timings, and its output compared with the reference and exact paths."""
    row = {"name": path}
    if "error" in result:
        row["error"] = result["error"]
        return row
    row.update({k: result[k] for k in ("path", "fps", "seconds", "stages", "peak_rss_mb", "precision", "note")
                if k in result})
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
                  weights="stress", device="cpu", one_pass=False) -> dict:
    """Every path in its own subprocess; the parent compares outputs. Returns a JSON-able dict.

    one_pass (--smoke): each path runs once, without a warm-up or a pass of its own for the stage timings.

    paths: None for the config family's own (LivePortrait has no int8).
    on_path(name) is called as each path starts (for progress display).
    """
    if paths is None:
        paths = FAMILY_PATHS[family(config)][0]
    check_options(config, size, frames, runs, threads, paths, weights, one_pass)
    threads = threads or max(1, min(os.cpu_count() or 1, 4))
    from fomm_core.device import resolve_device
    device = str(resolve_device(device))  # one sentence here, before any worker, when it cannot be used
    args = types.SimpleNamespace(config=config, size=size, frames=frames, runs=runs, weights=weights, device=device,
                                 one_pass=one_pass)
    available = reference_available(config)
    paths = [p for p in paths if p != "reference" or available]
    skipped = {p: why for p in paths if (why := not_run_here(p, device))}
    on_path = on_path or (lambda _message: None)
    with tempfile.TemporaryDirectory(prefix="fomm-bench-") as workdir:
        args.weights = _worker_weights(config, weights, workdir, on_path)
        results = run_workers(start_workers([p for p in paths if p not in skipped], args, threads, workdir, on_path),
                              runs, on_path)
    ref, exact = results.get("reference", {}), results.get("exact", {})
    rows = [{"name": path, "skipped": skipped[path]} if path in skipped else _row(path, results[path], ref, exact)
            for path in paths]
    return {"config": config, "size": size, "output_size": output_side(config, size), "frames": frames, "runs": runs,
            "weights": str(weights),
            "reference_differs": reference_differs(config),
            "environment": environment(threads, device), "reference_available": available, "rows": rows}


def _worker_weights(config, weights, workdir, on_path) -> str:
    if family(config) == "liveportrait" and weights == "stress":
        on_path("seeding the original LivePortrait networks (the stress weights)")
    return worker_weights(config, weights, workdir)


def _cell(row, key, fmt, width) -> str:
    return format(row[key], fmt).rjust(width) if key in row else "-".rjust(width)


def unrun_lines(row) -> list:
    """A path that failed or was not run, and why, in 80 columns ([] for a path that ran)."""
    if "error" in row:
        return [f"{row['name']:<12} failed: {row['error']}"[:80]]
    if "skipped" in row:
        return textwrap.wrap(f"{row['name']:<12} not run: {row['skipped']}", 80, subsequent_indent=" " * 12)
    return []


def _speed_line(row) -> str:
    # what `fast` picked is said beside it; the other paths' precisions are fixed (ENGINE_PATHS) and a suffix
    # would push "fast-unfused (bf16)" past the 80 columns
    name = f"fast ({row['precision']})" if row["name"] == "fast" and "precision" in row else row["name"]
    return (f"{name:<12}{row['fps']:>9.2f}{_cell(row, 'speedup', '.2f', 8)}"
            f"{_cell(row, 'psnr_vs_reference', '.1f', 9)}{_cell(row, 'psnr_vs_exact', '.1f', 11)}"
            f"{_cell(row, 'max_abs_vs_reference', '.1e', 10)}{row['peak_rss_mb']:>9.0f}")


def format_text(report) -> str:
    """The report in 80 columns: one row per path; the details (what runs, stage timings) are in --json."""
    env = report["environment"]
    yes = {True: "yes", False: "no"}
    out = report.get("output_size", report["size"])
    sizes = f"{report['size']}px" + (f" in, {out}px out" if out != report["size"] else "")
    lines = textwrap.wrap(f"{report['config']} {sizes}, {report.get('weights', 'random')} weights, "
                          f"{report['frames']} frames x {report['runs']} runs, torch {env['torch']}, "
                          f"{env['threads']} threads", 80, subsequent_indent="  ")
    lines += [f"{env['cpu']}: AVX-512 {yes[env['avx512f']]}, AVX512-BF16 {yes[env['avx512_bf16']]}, "
              f"AMX {yes[env['amx']]}" + (f"; timed on {env['device']}: {env.get('gpu', '')}"
                                           if env.get("device", "cpu") != "cpu" else ""),
              f"{'path':<12}{'frames/s':>9}{'x orig':>8}{'PSNR/ref':>9}{'PSNR/exact':>11}{'max|diff|':>10}"
              f"{'peak MB':>9}"]
    for row in report["rows"]:
        lines += unrun_lines(row) or [_speed_line(row)]
    if report.get("reference_differs"):
        lines += textwrap.wrap(f"the original code has no {', '.join(report['reference_differs'])}: for "
                               f"{report['config']} its output differs by design (PSNR/ref means nothing)", 80)
    for row in report["rows"]:
        if row["name"] == "int8" and row.get("note"):
            lines += textwrap.wrap("int8: " + row["note"], 80, subsequent_indent="  ")
    fast = next((r for r in report["rows"] if r["name"] == "fast" and "path" in r), None)
    if fast:
        lines += textwrap.wrap("fast: " + fast.get("note", ""), 80, subsequent_indent="  ")
    return "\n".join(lines)
