"""`fomm-doctor bench`: the original FOMM or TPSMM code against our exact and fast paths, same random weights and
inputs."""
import json
from typing import Optional

import typer

from fomm_doctor.animation import require_torch
from fomm_doctor.errors import UserError


def bench(
    model: str = typer.Option("fomm", "--model", help="fomm or tpsmm (Thin-Plate Spline Motion Model): the family "
                              "benchmarked, with its published vox config unless --config names another."),
    config: Optional[str] = typer.Option(None, "--config", help="Shipped config name or YAML path "
                                         "(vox-256, tpsmm-vox-256, tpsmm-ted-384, ...)."),
    size: int = typer.Option(256, "--size", help="Frame side in pixels (a multiple of 128 for vox)."),
    frames: int = typer.Option(4, "--frames", help="Driving frames per timed run."),
    runs: int = typer.Option(3, "--runs", help="Timed runs per path (the median is reported), after one warm-up."),
    threads: int = typer.Option(None, "--threads", help="torch threads (default: the CPU count, at most 4)."),
    paths: Optional[str] = typer.Option(None, "--paths",
                                        help="Comma-separated: reference, exact, bf16, int8 (FOMM only), fast "
                                             "(default: all of these); ablations: cached, exact-b1, fast-b1, "
                                             "fast-unfused, exact-compiled, fast-compiled."),
    weights: str = typer.Option("stress", "--weights", help="stress (random weights scaled so the picture spans "
                                "0..1), random, or a checkpoint file (give its --config and --size)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps: where every path is timed "
                               "(int8 runs on the CPU only)."),
    smoke: bool = typer.Option(False, "--smoke", help="128x128, 2 frames, 1 run: checks it works, not speed."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON (with what each path runs)."),
) -> None:
    """Frames/s, peak memory and accuracy of each inference path against the original code, and which path
    `fast` picks on this machine and why."""
    require_torch()
    from fomm_core.bench.report import format_text, run_benchmark
    from fomm_core.bench.runners import DEFAULT_CONFIG

    if model not in DEFAULT_CONFIG:
        raise UserError(f"--model must be fomm or tpsmm, not '{model}'.")
    config = config or DEFAULT_CONFIG[model]
    if smoke:
        size, frames, runs = 128, 2, 1
    chosen = [p.strip() for p in paths.split(",") if p.strip()] if paths else None
    if as_json:
        report = run_benchmark(config, size, frames, runs, threads, chosen, weights=weights, device=device)
        typer.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    console = Console(stderr=True)
    with console.status("benchmark") as status:
        report = run_benchmark(config, size, frames, runs, threads, chosen, weights=weights, device=device,
                               on_path=lambda what: status.update(f"benchmark: {what}"))
    typer.echo(format_text(report))
    if not report["reference_available"]:
        typer.echo(_no_reference(config), err=True)
    failed = [r for r in report["rows"] if "error" in r]
    if failed:
        raise UserError(f"the {failed[0]['name']} path failed: {failed[0]['error']}")


def _no_reference(config) -> str:
    from fomm_core.bench.weights import family
    if family(config) == "tpsmm":
        from fomm_core.bench.reference import tpsmm_reference_dir
        where = tpsmm_reference_dir()
        return (f"the original TPSMM code {f'is not at {where}' if where else 'was not found'}: set "
                "FOMM_TPSMM_REFERENCE to a copy of its repository to compare with it.")
    return "the reference (original code) is not installed: pip install --no-deps deep-animator to compare with it."
