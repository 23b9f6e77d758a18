"""Animate a source image by a driving video, streamed: decode -> batch -> animate -> encode, frame by frame.

Memory holds one batch of frames, whatever the video's length (the original preloads every frame as floats,
about 1 GB a minute). `find_best_frame` makes two passes over the file instead of keeping it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fomm_core.errors import FommError
from fomm_core.inference.motion import BestFrame
from fomm_core.media.face import Framings
from fomm_core.media.images import frames_to_tensor, square_resize, tensor_to_frames
from fomm_core.media.video import VideoWriter, iter_frames, probe_video


@dataclass
class AnimateResult:
    frames: int
    fps: float
    seconds: float          # the whole run: probing, face tracking (crop), best frame search, animation
    path: Path
    best_frame: int = 0
    animate_seconds: float = 0.0  # the animation pass alone (decode, model, encode)
    size: tuple = (0, 0)    # (width, height) of the video written
    notes: list = field(default_factory=list)  # sentences worth telling: no face found, a stand-in method, ...


def _batches(iterable, n: int):
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def best_start_frame(animator, source, driving_path, size: int, batch_size: int = 4,
                     fit=None) -> tuple[BestFrame, np.ndarray]:
    """(BestFrame, the frame itself) of the driving frame to start relative motion from, in one streamed pass.

    With face_alignment installed the original's landmark matching runs over the frames (kept only at model size
    for that library's sake); without it the model's own keypoints are compared (fomm_core.inference.motion's stand-in),
    keeping only the best frame so far in memory.
    """
    import importlib
    from fomm_core.inference.motion import closest_shape, find_best_frame
    fit = fit or (lambda frame: square_resize(frame, size))
    try:
        importlib.import_module("face_alignment")
        have_landmarks = True
    except ImportError:
        have_landmarks = False
    if have_landmarks:  # the library wants the frames themselves; model size keeps this to 192 KB a frame
        frames = [fit(f) for f in iter_frames(driving_path)]
        best = find_best_frame(frames_to_tensor([source]), frames_to_tensor(frames), animator.keypoints)
        return best, frames[best.index]
    src_kp = animator.keypoints(frames_to_tensor([source]))["value"][0].cpu().numpy()
    best, best_pts, best_frame, index = 0, None, None, 0
    for batch in _batches((fit(f) for f in iter_frames(driving_path)), batch_size):
        kp = animator.keypoints(frames_to_tensor(batch))["value"].cpu().numpy()
        for frame, pts in zip(batch, kp):
            # running argmin, first frame winning ties, as closest_shape over the whole list would
            if best_pts is None or closest_shape(src_kp, [best_pts, pts]) == 1:
                best, best_pts, best_frame = index, pts, frame.copy()
            index += 1
    how = "no landmark library (face_alignment) installed; matched the model's keypoints instead"
    return BestFrame(best, how, stand_in=True), best_frame


def driving_face_crop(driving_path, info, size: int, increase: float = 0.1, notes=None, framing=None):
    """frame -> size x size crop around the video's longest face track (one fixed square, so no jitter), grown
    by `increase` or framed by the family's `framing`.

    A video where no face is found falls back to the centre square, and `notes` gets a sentence saying so.
    """
    from fomm_core.media.crop import stable_crop_box, track_faces
    from fomm_core.media.face import crop_square
    faces = track_faces(iter_frames(driving_path, info=info), info.fps or 25.0)
    track = faces.longest() if faces is not None else None
    if track is None:
        if notes is not None:
            notes.append("no face found in the driving video; used its centre square")
        return lambda frame: square_resize(frame, size)
    box = stable_crop_box(track, increase, faces.frame_shape, framing=framing)
    return lambda frame: crop_square(frame, box, size)


def _source_and_fit(source_path, driving_path, info, size: int, crop: bool, notes: list, framings):
    """(the source's ImageCrop, frame -> driving frame at model size): centre squares, or with `crop` the faces,
    framed as the family's training crops frame them."""
    from fomm_core.media.crop import source_square
    cropped = source_square(source_path, size, crop, framing=framings.source)
    if not crop:
        return cropped, lambda frame: square_resize(frame, size)
    if not cropped.face_found:
        notes.append("no face found in the source image; used its centre square")
    return cropped, driving_face_crop(driving_path, info, size, notes=notes, framing=framings.driving)


def _composer(cropped, side_by_side: bool, paste_back: bool, out_size: int, feather=None):
    """((driving frame, result) -> the frame written, (width, height) of the video) for the output's layout.

    out_size: the side of the engine's results (the input size, or twice it for LivePortrait); the source and
    driving frames shown beside them are scaled to it, and paste-back scales them to the photo's square."""
    if paste_back:
        from fomm_core.media.paste import paste_back as paste_plan
        paste = paste_plan(cropped.photo, cropped.box, feather)
        return (lambda drv, out: paste(out)), paste.size
    if side_by_side:
        source = _fit_side(cropped.image, out_size)
        return (lambda drv, out: np.concatenate([source, _fit_side(drv, out_size), out], axis=1)), \
            (3 * out_size, out_size)
    return (lambda drv, out: out), (out_size, out_size)


def _fit_side(frame, side: int):
    """A square frame at `side` pixels (itself when it already is)."""
    return frame if frame.shape[0] == side else square_resize(frame, side)


def _start_at_best_frame(animator, source, driving_path, size: int, batch_size: int, fit) -> BestFrame:
    """Make the best-matching driving frame the reference of relative motion; -> how it was chosen."""
    best, best_frame = best_start_frame(animator, source, driving_path, size, batch_size, fit)
    if best_frame is not None:
        # relative motion of every frame depends only on itself and the start frame, so animating in file
        # order with that reference gives the original's backward+forward result without reordering
        animator.set_reference(frames_to_tensor([best_frame]))
    return best


def _animate_frames(writer, animator, frames, compose, batch_size: int, progress, total):
    """Animate the driving frames batch by batch into the writer; returns how many were written."""
    done = 0
    for batch in _batches(frames, batch_size):
        results = tensor_to_frames(animator.animate(frames_to_tensor(batch)))
        for drv, out in zip(batch, results):
            writer.write(compose(drv, out))
        done += len(batch)
        if progress is not None:
            progress(done, max(total, done))
    return done


def animate_video(source_path, driving_path, output_path, animator, *, size: int, batch_size: int = 4,
                  side_by_side: bool = False, audio: bool = True, find_best_frame: bool = False,
                  crop: bool = False, paste_back: bool = False, progress=None) -> AnimateResult:
    """Animate the image at `source_path` by the video at `driving_path` into `output_path` (mp4, H.264).

    Both inputs are centre-cropped to a square and resized to `size`; with `crop`, cropped to the face instead
    (the photo's largest face; one stable square over the video's longest face track, as `fomm-doctor crop`).
    The output is at the animator's output size (`output_size(size)`: 512 for LivePortrait at 256), keeps the
    driving fps and, with `audio`, its audio track. side_by_side: source | driving | result.
    paste_back: each result is put back into the whole photo (fomm_core.media.paste), at the photo's size.
    progress(done, total_estimate) is called after each batch. The output appears only when complete
    (written beside it, then renamed).
    """
    if batch_size < 1:
        raise FommError("the batch size must be at least 1.")
    if side_by_side and paste_back:
        raise FommError("side by side and paste-back cannot be combined: choose one layout for the output.")
    started = time.perf_counter()
    notes: list = [animator.LEFT_OUT] if getattr(animator, "LEFT_OUT", "") else []
    info = probe_video(driving_path)
    cropped, fit = _source_and_fit(source_path, driving_path, info, size, crop, notes,
                                   getattr(animator, "FRAMING", Framings()))
    source = cropped.image
    out_size = animator.output_size(size) if hasattr(animator, "output_size") else size
    compose, frame_size = _composer(cropped, side_by_side, paste_back, out_size, getattr(animator, "FEATHER", None))
    animator.set_source(frames_to_tensor([source]))
    best = BestFrame(0, "", False)
    if find_best_frame:
        best = _start_at_best_frame(animator, source, driving_path, size, batch_size, fit)
        if best.stand_in:  # the original's method could not run: say so
            notes.append(best.how)
    engine_note = animator.note
    start = time.perf_counter()
    with VideoWriter(output_path, info.rate or info.fps, frame_size,
                     audio_from=driving_path if audio and info.has_audio else None) as writer:
        frames = (fit(f) for f in iter_frames(driving_path, info=info))
        done = _animate_frames(writer, animator, frames, compose, batch_size, progress, info.frame_count)
    end = time.perf_counter()
    if animator.note != engine_note:  # the engine changed path on the way (a GPU without half kernels)
        notes.append(animator.note)
    return AnimateResult(done, info.fps, end - started, Path(output_path), best.index, end - start, frame_size,
                         notes)
