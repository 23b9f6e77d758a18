"""`fomm-doctor live --source IMG --camera 0`: a photo driven by a webcam (or a video standing in for one)."""
import dataclasses
import os
import sys
import threading
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


def _settled_later(choice: animation.ModelChoice) -> bool:
    """Whether the path is measured or built on this CPU (fast, int8): the window then opens at once on the exact
    path, and the measured one takes over when it is ready."""
    from fomm_core.device import choose_precision, resolve_device
    return choose_precision(resolve_device(choice.device), choice.precision) in ("fast", "int8")


def _prepare(session, models: animation.Models, choice: animation.ModelChoice) -> None:
    """Build and time the asked-for path beside the running session, then hand it over. Inference pauses while
    the paths are timed (a busy CPU would time them wrong); the int8 build runs beside it."""
    def step(done, total, what):
        session.hold(not what.startswith("int8"))
        session.status = f"exact fp32 while {choice.precision} is prepared: {what}"
    try:
        loaded = models.load(choice, on_step=step)
        session.switch(loaded.animator, loaded.animator.note or f"{loaded.animator.precision} is ready")
    except Exception as err:  # the exact path keeps running: the fast one is an improvement, not a need
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        session.notes.append(f"{choice.precision} could not be prepared ({first}); the exact path ran throughout.")
    finally:
        session.status = ""
        session.hold(False)


def _let_finish(preparing: threading.Thread) -> None:
    """A session that ends while its fast path is still being built waits for it: the work is kept for the next
    run, and a process must not exit while native code (OpenVINO, NNCF) runs on another thread (it aborts).
    Ctrl-C skips the wait; the next run starts that work again."""
    if not preparing.is_alive():
        return
    typer.echo("finishing the fast path's one-time build and measurement, so that the next run starts with it "
               "(Ctrl-C skips it)", err=True)
    try:
        preparing.join()
    except KeyboardInterrupt:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # no interpreter shutdown under the running native build


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
    choice = animation.ModelChoice(checkpoint, config, device, precision, mode="relative", size=size, batch=1)
    models = animation.Models(animators_kept=2)
    later = _settled_later(choice)
    loaded = load(dataclasses.replace(choice, precision="fp32") if later else choice, models)
    animator, size = loaded.animator, loaded.size
    options = LiveOptions(camera=camera_source, sources=sources, size=size, crop=not no_crop,
                          paste_back=paste_back, window=not no_window, output=output, max_frames=max_frames,
                          virtual_camera=virtual_camera)
    session = LiveSession(animator, options)
    preparing = threading.Thread(target=_prepare, args=(session, models, choice), name="live-prepare", daemon=True)
    if later:
        preparing.start()
    try:
        stats = session.run()
    finally:
        for note in session.notes:
            typer.echo(note, err=True)
        _let_finish(preparing)
    typer.echo(_summary(stats))
    if output is not None and output.exists():
        typer.echo(f"recorded {output}")
