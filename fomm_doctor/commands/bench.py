"""`fomm-doctor bench`: the original FOMM, TPSMM or LivePortrait code against our exact and fast paths, same
weights and inputs; `--memory`: our engine's peak memory against clip length."""
import json
from typing import Optional

import typer

from fomm_doctor.animation import require_torch
from fomm_doctor.errors import UserError


def bench(
    model: str = typer.Option("fomm", "--model", help="fomm, tpsmm (Thin-Plate Spline Motion Model) or liveportrait: "
                              "the family benchmarked, with its published vox config unless --config names another "
                              "(liveportrait has one: 256 px in, 512 out)."),
    config: Optional[str] = typer.Option(None, "--config", help="Shipped config name or YAML path "
                                         "(vox-256, tpsmm-vox-256, tpsmm-ted-384, ...)."),
    size: int = typer.Option(256, "--size", help="Frame side in pixels (a multiple of 128 for vox; 256 for "
                             "liveportrait)."),
    frames: int = typer.Option(4, "--frames", help="Driving frames per timed run."),
    runs: int = typer.Option(3, "--runs", help="Timed runs per path (the median is reported), after one warm-up."),
    threads: int = typer.Option(None, "--threads", help="torch threads (default: the CPU count, at most 4)."),
    paths: Optional[str] = typer.Option(None, "--paths",
                                        help="Comma-separated: reference, exact, bf16, int8 (FOMM only), fast "
                                             "(default: all of these); ablations (FOMM and TPSMM): cached, exact-b1, "
                                             "fast-b1, fast-unfused, exact-compiled, fast-compiled."),
    weights: str = typer.Option("stress", "--weights", help="stress (random weights scaled so the picture spans "
                                "0..1), random, or a checkpoint file (give its --config and --size); for "
                                "liveportrait stress or a folder of its five files."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps: where every path is timed "
                               "(int8 runs on the CPU only)."),
    smoke: bool = typer.Option(False, "--smoke", help="128x128 frames in (liveportrait: 256 out), 2 frames, one pass "
                               "per path and no warm-up: checks every path works, not its speed."),
    memory: bool = typer.Option(False, "--memory", help="Instead of the timings: the peak resident memory of our "
                                "paths (--paths, default exact) streaming 4 and then 16 frames, and its growth per "
                                "frame."),
    clips: Optional[str] = typer.Option(None, "--clips", help="With --memory: the clip lengths the memory is read "
                                        "at (default 4,16)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON (with what each path runs)."),
) -> None:
    """Frames/s, peak memory and accuracy of each inference path against the original code, and which path
    `fast` picks on this machine and why."""
    from fomm_core.bench.report import smoke_settings
    from fomm_core.bench.runners import DEFAULT_CONFIG

    if model not in DEFAULT_CONFIG:
        raise UserError(f"--model must be {', '.join(list(DEFAULT_CONFIG)[:-1])} or {list(DEFAULT_CONFIG)[-1]}, "
                        f"not '{model}'.")
    config = config or DEFAULT_CONFIG[model]
    if smoke:
        size, frames, runs = smoke_settings(config)
    chosen = [p.strip() for p in paths.split(",") if p.strip()] if paths else None
    _check_flags(config, size, frames, runs, threads, chosen, weights, memory, clips, smoke)
    require_torch()
    if memory:
        _memory(config, size, chosen, weights, threads, device, clips, as_json)
        return
    (_json if as_json else _table)(config, size, frames, runs, threads, chosen, weights, device, smoke)


def _check_flags(config, size, frames, runs, threads, chosen, weights, memory, clips, smoke) -> None:
    """Every flag checked before torch loads (a second or more), so that a bad one is its sentence at once."""
    from fomm_core.bench.memory import CLIPS_WITHOUT_MEMORY, check_memory_options, parse_clips
    from fomm_core.bench.report import check_options
    from fomm_core.bench.runners import FAMILY_PATHS
    from fomm_core.bench.weights import family
    if memory:
        check_memory_options(config, size, chosen or ["exact"], weights, threads)
        if clips:
            parse_clips(clips)
    elif clips:
        raise UserError(CLIPS_WITHOUT_MEMORY)
    else:
        check_options(config, size, frames, runs, threads, chosen or FAMILY_PATHS[family(config)][0], weights,
                      one_pass=smoke)


def _json(config, size, frames, runs, threads, chosen, weights, device, one_pass) -> None:
    from fomm_core.bench.report import run_benchmark
    report = run_benchmark(config, size, frames, runs, threads, chosen, weights=weights, device=device,
                           one_pass=one_pass)
    typer.echo(json.dumps(report, indent=2))


def _table(config, size, frames, runs, threads, chosen, weights, device, one_pass) -> None:
    from rich.console import Console

    from fomm_core.bench.reference import how_to_add_reference, missing_reference
    from fomm_core.bench.report import format_text, run_benchmark
    console = Console(stderr=True)
    with console.status("benchmark") as status:
        report = run_benchmark(config, size, frames, runs, threads, chosen, weights=weights, device=device,
                               on_path=lambda what: status.update(f"benchmark: {what}"), one_pass=one_pass)
    typer.echo(format_text(report))
    if not report["reference_available"]:
        typer.echo(f"{missing_reference(config)}: {how_to_add_reference(config)} to compare with it.", err=True)
    failed = [r for r in report["rows"] if "error" in r]
    if failed:
        raise UserError(f"the {failed[0]['name']} path failed: {failed[0]['error']}")


def _memory(config, size, chosen, weights, threads, device, clips, as_json) -> None:
    from fomm_core.bench.memory import CLIPS, format_memory, parse_clips, run_memory
    report = run_memory(config, size, chosen or ["exact"], weights=weights, threads=threads, device=device,
                        clips=parse_clips(clips) if clips else CLIPS)
    typer.echo(json.dumps(report, indent=2) if as_json else format_memory(report))
    failed = [r for r in report["rows"] if "error" in r]
    if failed:
        raise UserError(f"the {failed[0]['name']} path failed: {failed[0]['error']}")
