"""`fomm-doctor batch JOBS -o OUTDIR`: many animations, resumable, on this machine or a Ray cluster."""
import json
import os
from pathlib import Path
from typing import Optional

import typer

from fomm_doctor.commands import options
from fomm_doctor.errors import ExitCode, UserError

RAY_HELP = ("Run on Ray: auto (this machine's cluster, else a local one), local, or an address such as head:6379 "
            "(pip install \"fomm-doctor\\[ray]\"). Joining a cluster trusts it: this batch's code runs on its nodes, "
            "and what they send back is unpickled here, so whoever runs the cluster can run code on this machine as "
            "you. Use only your own.")


def _defaults(checkpoint, config, mode, crop, paste_back, find_best_frame, adapt_scale, audio, side_by_side):
    from fomm_doctor.batch.jobs import Job, mode_word
    mode = mode_word(mode, "--mode")
    if side_by_side and paste_back:
        raise UserError("--side-by-side and --paste-back cannot be combined: choose one layout for the output.")
    return Job(Path(), Path(), "", checkpoint=checkpoint, config=config, mode=mode, crop=crop, paste_back=paste_back,
               find_best_frame=find_best_frame, adapt_scale=adapt_scale, audio=audio, side_by_side=side_by_side)


def _jobs(jobs_file, sources, driving, defaults):
    from fomm_doctor.batch.jobs import folder_jobs, read_jobs
    if jobs_file is not None and (sources or driving):
        raise UserError("give a jobs file or --sources and --driving, not both.")
    if jobs_file is not None:
        return read_jobs(jobs_file, defaults)
    if sources is None or driving is None:
        raise UserError("give a jobs file (.csv or .jsonl), or --sources DIR and --driving DIR for every pair.")
    return folder_jobs(sources, driving, defaults)


def _settings(device, precision, batch_size, workers, threads, on_ray):
    """(RunSettings, workers). One torch thread per worker by default: on a CPU, N single-thread workers beat one
    N-thread worker (benchmarks/batch_scaling.py), and the thread count changes float sums, so one count
    everywhere keeps every worker's files byte-identical. Locally: a worker per core (per GPU on CUDA), as many
    as the free memory holds."""
    from fomm_core.device import check_device, check_precision
    from fomm_doctor.batch.worker import RunSettings
    device, precision = check_device(device), check_precision(precision)
    for flag, value in (("--batch-size", batch_size), ("--workers", workers), ("--threads", threads)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1.")
    if not on_ray and workers is None:
        workers = _local_workers(device, threads or 1)
    return RunSettings(device, precision, batch_size, threads or 1), workers


def _local_workers(device: str, threads: int) -> int:
    from fomm_doctor.batch.worker import WORKER_MEMORY
    from fomm_doctor.checks.system import probe_ram
    from fomm_doctor.units import byte_size
    gpus = _gpu_count() if device in ("auto", "cuda") else int(device.startswith("cuda"))
    if gpus:
        return gpus
    cores = max(1, (os.cpu_count() or 1) // threads)
    free = probe_ram().get("available_bytes")
    fits = max(1, int(free // WORKER_MEMORY)) if free else cores
    if fits < cores:
        typer.echo(f"note: {fits} worker{'s' * (fits != 1)}, not {cores}: each needs about "
                   f"{byte_size(WORKER_MEMORY)} and {byte_size(free)} is free (--workers to choose).",
                   err=True)
    return min(cores, fits)


def _gpu_count() -> int:
    try:
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # no torch, or a broken CUDA install: the CPU count decides, and the job says the rest
        return 0


def _progress_bar():
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    return Progress(TextColumn("batch"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                    TextColumn("{task.fields[failed]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=False)


def _run_with_progress(plan, pool, backend: str):
    from fomm_doctor.batch.run import run_plan
    with _progress_bar() as bar:
        task = bar.add_task("batch", total=None, rate="", failed="")

        def on_progress(summary, record):
            bad = summary.failed + summary.errors
            bar.update(task, completed=summary.finished, total=max(summary.to_run, 1),
                       rate=f"{summary.jobs_per_second:.2f} jobs/s" if summary.ran else "",
                       failed=f"[red]{bad} failed[/red]" if bad else "")
        return run_plan(plan, pool, on_progress, backend)


def _report(summary, as_json: bool) -> None:
    for failure in summary.failures:
        typer.echo(f"{failure['status']}: {failure['where']} ({failure['job']}): {failure['error']}", err=True)
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
        return
    typer.echo(f"{summary.done} done, {summary.failed} failed, {summary.errors} errors, {summary.skipped} already "
               f"done, of {summary.jobs} jobs in {summary.seconds:.1f} s ({summary.jobs_per_second:.2f} jobs/s) on "
               f"{summary.backend}; manifest: {summary.manifest}")


def batch(
    jobs_file: Optional[Path] = typer.Argument(None, metavar="[JOBS]", help="CSV (with a header) or JSON-lines file,"
                                               " a job each: source, driving; optional: output, checkpoint, config, "
                                               "mode, crop, paste_back, find_best_frame, adapt_scale, audio, "
                                               "side_by_side (an empty cell takes the flag's value)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the videos and manifest.jsonl (created)."),
    sources: Optional[Path] = typer.Option(None, "--sources", help="Instead of JOBS: a folder of photos..."),
    driving: Optional[Path] = typer.Option(None, "--driving", help="...and a folder of videos: every pair."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Workers, each with its model loaded (default: "
                                          "one per core; on Ray one per GPU, or per --threads CPUs)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads per worker (default 1: one count "
                                          "for all keeps their files byte-identical)."),
    ray: Optional[str] = typer.Option(None, "--ray", help=RAY_HELP),
    ray_timeout: float = typer.Option(30.0, "--ray-timeout", help="Seconds for a --ray address to be joined."),
    checkpoint: Optional[str] = options.checkpoint(),
    config: Optional[str] = options.config(),
    mode: str = options.mode(),
    crop: bool = typer.Option(False, "--crop", help="Crop photos and videos to the face first."),
    paste_back: bool = typer.Option(False, "--paste-back", help="Put each result back into the whole photo."),
    find_best_frame: bool = typer.Option(False, "--find-best-frame", help="Start from the best-matching frame."),
    adapt_scale: Optional[bool] = typer.Option(None, "--adapt-scale/--no-adapt-scale",
                                               help="Scale relative motion by face size (default: the model's)."),
    audio: bool = typer.Option(True, "--audio/--no-audio", help="Keep the driving videos' audio."),
    side_by_side: bool = typer.Option(False, "--side-by-side", help="Write source | driving | result."),
    device: str = options.device(),
    precision: str = options.precision("fp32", why="fp32 by default: the same frames on every machine; the "
                                       "others are faster and may differ between machines."),
    batch_size: int = typer.Option(4, "--batch-size", help="Driving frames animated together."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run again jobs that failed on bad input even "
                                      "if their inputs have not changed."),
    as_json: bool = typer.Option(False, "--json", help="End with a JSON summary on stdout."),
) -> None:
    """Animate many photos by many videos into OUTDIR, resumably: run it again to skip what is done.

    Each job is one `fomm-doctor animate` with its guarantees (inputs checked, output written whole, audio kept).
    OUTDIR/manifest.jsonl gets a line as each job finishes: status, seconds, the output's sha256, or the sentence
    saying what was wrong. A failing job never stops the others; Ctrl-C or a killed run leaves no partial video,
    and the same command goes on where it stopped. Exit code 1 when a job failed.
    """
    defaults = _defaults(checkpoint, config, mode, crop, paste_back, find_best_frame, adapt_scale, audio,
                         side_by_side)
    jobs = _jobs(jobs_file, sources, driving, defaults)
    settings, workers = _settings(device, precision, batch_size, workers, threads, ray is not None)
    summary = _run(jobs, output, _pool(ray, workers, settings, ray_timeout), settings, retry_failed)
    _report(summary, as_json)
    if summary.failed or summary.errors:
        raise typer.Exit(ExitCode.PROBLEM)


def _run(jobs, output: Path, pool, settings, retry_failed: bool):
    from fomm_doctor.batch.run import hold, make_plan
    with hold(output):
        plan = make_plan(jobs, output, settings, retry_failed)
        for note in plan.notes:
            typer.echo(f"note: {note}", err=True)
        try:
            return _run_with_progress(plan, *pool)
        except KeyboardInterrupt:
            typer.echo(f"interrupted: what finished is in {output / 'manifest.jsonl'}; run the same command again "
                       "to go on.", err=True)
            raise typer.Exit(ExitCode.INTERRUPTED) from None


def _pool(ray, workers, settings, ray_timeout: float = 30.0):
    if ray is not None:
        from fomm_doctor.batch.on_ray import RayPool
        if not ray_timeout > 0:
            raise UserError("--ray-timeout must be a number of seconds above 0.")
        return RayPool(ray.strip(), workers, settings, ray_timeout), "Ray"
    from fomm_doctor.batch.local import LocalPool
    from fomm_doctor.animation import require_torch
    require_torch()
    pool = LocalPool(workers, settings)
    pool.described = (f"{workers} local worker{'s' * (workers != 1)}, {settings.threads} "
                      f"thread{'s' * (settings.threads != 1)} each")
    return pool, "local"
