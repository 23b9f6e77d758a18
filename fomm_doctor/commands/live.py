"""`fomm-doctor live --source IMG --camera 0`: a photo driven by a webcam (or a video standing in for one)."""
from pathlib import Path
from typing import Optional

import typer

from fomm_doctor import animation
from fomm_doctor.commands import load, options
from fomm_doctor.errors import UserError


def _summary(stats) -> str:
    s = stats.as_dict()
    return (f"{s['processed']} frames animated in {s['seconds']} s: {s['fps']} fps, latency mean "
            f"{s['latency_mean_ms']} ms / p95 {s['latency_p95_ms']} ms, {s['dropped']} camera frames dropped"
            + (f" ({s['stop_reason']})" if s["stop_reason"] else ""))


def live(
    source: Path = typer.Option(..., "--source", "-s", help="Source image, or a folder of images (n/p switch)."),
    camera: str = typer.Option("0", "--camera", "-c", help="Camera index, or a video file / stream URL."),
    checkpoint: Optional[str] = options.checkpoint(),
    config: Optional[str] = options.config(),
    size: Optional[int] = options.size(),
    device: str = options.device(),
    precision: str = options.precision(),
    no_window: bool = typer.Option(False, "--no-window", help="No window (machines without a display)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Record the result to this mp4."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after this many animated frames."),
    virtual_camera: bool = typer.Option(False, "--virtual-camera", help="Also send the result to a virtual camera."),
    no_crop: bool = typer.Option(False, "--no-crop", help="Use the centre square instead of finding the face."),
    paste_back: bool = typer.Option(False, "--paste-back", help="Put each result back into the whole photo: "
                                    "the recording and the virtual camera get the photo's size."),
) -> None:
    """Animate a photo with your webcam: r/space new reference pose, n/p next/previous photo, q/Esc quit."""
    from fomm_core.device import check_device, check_precision
    from fomm_core.live.capture import parse_camera
    from fomm_core.live.session import LiveOptions, LiveSession
    from fomm_core.live.sources import list_sources

    if max_frames is not None and max_frames < 1:
        raise UserError("--max-frames must be at least 1.")
    check_device(device)
    check_precision(precision)
    sources = list_sources(source)
    camera_source = parse_camera(camera)  # a wrong camera is said before the slow model loading
    # one camera frame a call: `fast` is measured fed so
    loaded = load(animation.ModelChoice(checkpoint, config, device, precision, mode="relative", size=size, batch=1))
    animator, size = loaded.animator, loaded.size
    options = LiveOptions(camera=camera_source, sources=sources, size=size, crop=not no_crop,
                          paste_back=paste_back, window=not no_window, output=output, max_frames=max_frames,
                          virtual_camera=virtual_camera)
    session = LiveSession(animator, options)
    try:
        stats = session.run()
    finally:
        for note in session.notes:
            typer.echo(note, err=True)
    typer.echo(_summary(stats))
    if output is not None and output.exists():
        typer.echo(f"recorded {output}")
