"""`fomm-doctor animate SOURCE DRIVING -o OUT.mp4`: a photo driven by a video, streamed to an mp4."""
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from fomm_doctor.commands import require_torch
from fomm_doctor.errors import UserError


def load_model(checkpoint, config, device="auto", precision="auto", on_step=None, **engine_options):
    """(animator, model size, ResolvedCheckpoint) from a checkpoint name or path of either family (FOMM or
    TPSMM, told apart by the file's state dicts), on the device asked for.

    Without a checkpoint: the best face model present; when that is only the bundled 64-px synthetic model, the
    store's note saying so is printed to stderr, and the command goes on with it. on_step(done, total, what)
    follows the one-time work of fast/int8 (default: a progress bar on stderr).
    """
    require_torch()
    from fomm_core.device import resolve_device
    from fomm_core.inference.engine import make_animator
    from fomm_core.model.checkpoint import load_model as load_checkpoint
    from fomm_doctor.checkpoints import resolve_checkpoint

    dev = resolve_device(device)
    resolved = resolve_checkpoint(checkpoint)
    if resolved.note:
        typer.echo(resolved.note, err=True)
    config = config or resolved.config             # a known checkpoint names the config it fits
    model = load_checkpoint(config, Path(resolved), dev)
    size = model.size
    with _one_time_progress() as bar_step:
        animator = make_animator(model, device=dev, precision=precision, size=size,
                                 on_step=on_step or bar_step, **engine_options)
    if animator.note:
        typer.echo(animator.note, err=True)
    return animator, size, resolved


@contextmanager
def _one_time_progress():
    """A progress bar on stderr for the one-time work of --precision fast/int8 (int8 build, path measurement);
    nothing is shown when that work is already cached."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    task = None

    def on_step(done, total, what):
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(what, total=total)
        bar.update(task, completed=done, total=total, description=what)
    try:
        yield on_step
    finally:
        bar.stop()


MODES = ("relative", "absolute", "standard", "avd")


def check_inputs(source: Path, driving: Path, output: Path, mode: str, device: str, precision: str,
                  batch_size: int):
    """The cheap checks (flags, output path, image, video) before the slow ones; -> the driving VideoInfo."""
    from fomm_core.device import check_device, check_precision
    from fomm_core.media.images import load_image
    from fomm_core.media.video import check_output_path, probe_video
    if mode not in MODES:
        raise UserError(f"--mode must be relative or absolute (also called standard), or avd with a TPSMM "
                        f"checkpoint, not '{mode}'.")
    check_device(device)
    check_precision(precision)
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1.")
    if not source.exists():
        raise UserError(f"source image {source} does not exist.")
    if not driving.exists():
        raise UserError(f"driving video {driving} does not exist.")
    check_output_path(output, inputs=(source, driving))
    load_image(source)
    return probe_video(driving)


def _animate_with_progress(source, driving, output, animator, info, **options):
    """animate_video under a progress bar; -> (result, the warnings it gave)."""
    import warnings

    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from fomm_core.inference.pipeline import animate_video
    with Progress(TextColumn("animating"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                  TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task("animate", total=max(info.frame_count, 1), rate="")

        def progress(done, total):
            elapsed = bar.tasks[0].elapsed or 0.0
            bar.update(task, completed=done, total=total,
                       rate=f"{done / elapsed:.2f} frames/s" if elapsed > 0 else "")

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            result = animate_video(source, driving, output, animator, progress=progress, **options)
    return result, caught


def animate(
    source: Path = typer.Argument(..., help="Source image (JPEG, PNG, any size; RGBA is put on white)."),
    driving: Path = typer.Argument(..., help="Driving video (any format, size, fps and rotation ffmpeg reads)."),
    output: Path = typer.Option(..., "--output", "-o", help="Result video (.mp4, H.264)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint",
                                             help="Checkpoint name (e.g. vox) or path "
                                                  "(default: the best face model present)."),
    config: Optional[str] = typer.Option(None, "--config",
                                         help="Config name (vox-256) or YAML (default: from the checkpoint)."),
    mode: str = typer.Option("relative", "--mode", help="relative (motion relative to the start frame), absolute "
                             "(also called standard), or avd (TPSMM: the photo's identity, the video's pose)."),
    adapt_scale: Optional[bool] = typer.Option(None, "--adapt-scale/--no-adapt-scale",
                                               help="Scale the motion by the ratio of face sizes (relative mode; "
                                                    "default as each model's demo: off for FOMM, on for TPSMM)."),
    find_best_frame: bool = typer.Option(False, "--find-best-frame",
                                         help="Start from the driving frame whose pose best matches the source."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", "--precision", help="auto (= fast; fp16 on CUDA), fast (the fastest "
                                  "path measured on this machine that keeps quality), fp32 (exact), bf16, fp16, "
                                  "int8 (OpenVINO)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Driving frames animated together."),
    audio: bool = typer.Option(True, "--audio/--no-audio", help="Keep the driving video's audio track."),
    side_by_side: bool = typer.Option(False, "--side-by-side", help="Write source | driving | result."),
    crop: bool = typer.Option(False, "--crop", help="Crop the photo and the video to the face first "
                              "(as `fomm-doctor crop`), instead of taking their centre squares."),
    paste_back: bool = typer.Option(False, "--paste-back", help="Put each result back into the whole photo "
                                    "(soft edges, its colours kept): the video has the photo's size."),
) -> None:
    """Animate SOURCE by the motion in DRIVING and write OUT.mp4 (the driving video's fps and audio).

    Both the image and every video frame are centre-cropped to a square, then resized to the model's size
    (256x256 for the published checkpoints); with --crop, cropped around the face instead (the photo's largest
    face, and one steady square over the video's longest face track, as `fomm-doctor crop` does).
    The video is streamed, so memory does not grow with its length. With --paste-back the animated square is
    put back into the full photo, so the result has the photo's resolution (best with --crop).
    """
    if side_by_side and paste_back:
        raise UserError("--side-by-side and --paste-back cannot be combined: choose one layout for the output.")
    info = check_inputs(source, driving, output, mode, device, precision, batch_size)
    animator, size, resolved = load_model(checkpoint, config, device, precision, mode=mode,
                                          adapt_movement_scale=adapt_scale)
    typer.echo(f"checkpoint {resolved} ({animator.FAMILY}) at {size}x{size}; inference path: {animator.path}",
               err=True)
    typer.echo(f"driving: {info.width}x{info.height} at {info.fps:g} fps, about {info.frame_count} frames"
               + (", with audio" if info.has_audio else ""), err=True)
    result, caught = _animate_with_progress(source, driving, output, animator, info, size=size,
                                            batch_size=batch_size, side_by_side=side_by_side, audio=audio,
                                            find_best_frame=find_best_frame, crop=crop,
                                            paste_back=paste_back)
    _report(result, caught, find_best_frame, crop)


def _report(result, caught, find_best_frame: bool, crop: bool) -> None:
    for w in caught:
        typer.echo(f"note: {w.message}", err=True)
    if find_best_frame:
        typer.echo(f"started from driving frame {result.best_frame}", err=True)
    typer.echo(result_sentence(result, crop))


def result_sentence(result, crop: bool) -> str:
    """What was written, and how fast: the line `animate` ends with (the web page shows it too)."""
    fps = result.frames / result.animate_seconds if result.animate_seconds > 0 else 0.0
    before = result.seconds - result.animate_seconds
    return (f"wrote {result.path} ({result.size[0]}x{result.size[1]}): {result.frames} frames at {result.fps:g} "
            f"fps in {result.seconds:.1f} s ({before:.1f} s to prepare{', face tracking included' if crop else ''}"
            f", then {fps:.2f} frames/s)")
