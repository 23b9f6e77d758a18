"""`fomm-doctor crop VIDEO -o OUT`: find the face track, crop a stable square around it, keep the audio."""
from pathlib import Path
from typing import Optional

import typer

from fomm_doctor.errors import UserError


def crop(
    video: Path = typer.Argument(..., help="Driving video to crop to the face."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Where to write the cropped clip (mp4)."),
    size: int = typer.Option(256, "--size", help="Side of the square output in pixels (the model's size)."),
    increase: float = typer.Option(0.1, "--increase", help="Margin around the face, as a fraction of its size."),
    print_ffmpeg: bool = typer.Option(False, "--print-ffmpeg", help="Print the ffmpeg command instead of running it."),
    no_audio: bool = typer.Option(False, "--no-audio", help="Drop the audio track."),
) -> None:
    """Crop a driving video to the face (as first-order-model's crop script), with its audio."""
    from fomm_core.media import crop as cropping
    from fomm_core.media.video import check_output_path

    if output is None and not print_ffmpeg:
        raise UserError("give the output file with -o OUT.mp4 (or use --print-ffmpeg).")
    if size < 16 or increase < 0:
        raise UserError("--size must be at least 16 and --increase at least 0.")
    out = output or video.with_name(f"{video.stem}-crop.mp4")
    if not print_ffmpeg:  # before the face search, which reads the whole video
        check_output_path(out, inputs=(video,))
    # absolute paths: ffmpeg reads a relative name like `12:30.mp4` as the protocol '12'
    faces = cropping.find_face_tracks(video.absolute())
    track = faces.longest()
    if track is None:
        raise UserError(f"no face found in {video}; use a video where a face looks at the camera, "
                        "or crop it yourself.")
    box = cropping.stable_crop_box(track, increase, faces.frame_shape)
    whole = track.start == 0 and track.end == faces.frame_count - 1
    start = None if whole else track.start / faces.fps
    duration = None if whole else track.frames / faces.fps
    kw = dict(audio=not no_audio, start=start, duration=duration)
    if print_ffmpeg:
        typer.echo(cropping.ffmpeg_crop_command(video.absolute(), out.absolute(), box, size, **kw))
        return
    cropping.crop_video(video.absolute(), out.absolute(), box, size, **kw)
    x, y, w, h = box.ints()
    span = "all frames" if whole else f"frames {track.start}-{track.end} of {faces.frame_count}"
    others = f"; {len(faces.tracks) - 1} shorter face track(s) left out" if len(faces.tracks) > 1 else ""
    typer.echo(f"wrote {out}: {size}x{size}, face box {w}x{h} at ({x},{y}), {span}{others}")
