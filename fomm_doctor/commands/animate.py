"""`fomm-doctor animate SOURCE DRIVING -o OUT.mp4`: a photo driven by a video, streamed to an mp4."""
from pathlib import Path
from typing import Optional

import typer

from fomm_doctor import animation
from fomm_doctor.commands import load, options


def _animate_with_progress(source, driving, output, loaded, layout, info) -> animation.Animation:
    """animation.animate under a progress bar."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    with Progress(TextColumn("animating"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                  TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task("animate", total=max(info.frame_count, 1), rate="")

        def progress(done, total):
            elapsed = bar.tasks[0].elapsed or 0.0
            bar.update(task, completed=done, total=total,
                       rate=f"{done / elapsed:.2f} frames/s" if elapsed > 0 else "")

        return animation.animate(source, driving, output, loaded, layout, progress=progress)


def animate(
    source: Path = typer.Argument(..., help="Source image (JPEG, PNG, any size; RGBA is put on white)."),
    driving: Path = typer.Argument(..., help="Driving video (any format, size, fps and rotation ffmpeg reads)."),
    output: Path = typer.Option(..., "--output", "-o", help="Result video (.mp4, H.264)."),
    checkpoint: Optional[str] = options.checkpoint(),
    config: Optional[str] = options.config(),
    size: Optional[int] = options.size(),
    mode: str = options.mode(),
    adapt_scale: Optional[bool] = typer.Option(None, "--adapt-scale/--no-adapt-scale",
                                               help="Scale the motion by the ratio of face sizes (relative mode; "
                                                    "default as each model's demo: off for FOMM, on for TPSMM)."),
    find_best_frame: bool = typer.Option(False, "--find-best-frame",
                                         help="Start from the driving frame whose pose best matches the source."),
    device: str = options.device(),
    precision: str = options.precision(),
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
    choice = animation.ModelChoice(checkpoint, config, device, precision, mode, adapt_scale, size, batch_size)
    layout = animation.Layout(batch_size, side_by_side, audio, find_best_frame, crop, paste_back)
    info = animation.check_request(source, driving, output, choice, layout)
    loaded = load(choice)
    typer.echo(loaded.describe(), err=True)
    typer.echo(f"driving: {info.width}x{info.height} at {info.fps:g} fps, about {info.frame_count} frames"
               + (", with audio" if info.has_audio else ""), err=True)
    done = _animate_with_progress(source, driving, output, loaded, layout, info)
    for note in done.notes:
        typer.echo(f"note: {note}", err=True)
    if done.start:
        typer.echo(done.start, err=True)
    typer.echo(done.sentence)
