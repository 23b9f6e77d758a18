"""Cropping driving videos and source images to the face, as first-order-model's crop script does — and doing it.

The original script tracks faces through the video, takes for each track the union of its boxes grown by an
`increase` margin and made square, and *prints* an ffmpeg command per track. Here the same steps return data,
and `crop_video` runs the command with the ffmpeg that imageio-ffmpeg bundles, keeping the audio.
"""
from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fomm_core.errors import FommError
from fomm_core.media.face import Box, FaceDetector, crop_square, iou, square_box


@dataclass
class Track:
    """One face followed through a video: boxes (frame pixels) at the frames where it was detected."""
    start: int                                   # first frame index
    end: int                                     # last frame index (inclusive)
    boxes: list[Box] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return self.end - self.start + 1


@dataclass
class VideoFaces:
    """What `find_face_tracks` saw: the tracks, and the video's frame size, rate and length."""
    tracks: list[Track]
    frame_shape: tuple[int, int]   # (h, w)
    fps: float
    frame_count: int

    def longest(self) -> Track | None:
        return max(self.tracks, key=lambda t: t.frames, default=None)


def _open_video(path):
    import cv2
    path = Path(path)
    if not path.is_file():
        raise FommError(f"video {path} does not exist; check the path.")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FommError(f"{path} cannot be read as a video (OpenCV could not open it); convert it to mp4.")
    return cap


def find_face_tracks(video_path, *, detect_every: int | None = None, iou_with_initial: float = 0.25,
                     min_frames: int = 1, detector: FaceDetector | None = None) -> VideoFaces:
    """Follow every face through the video file (decoded by OpenCV); see `track_faces`."""
    import cv2
    cap = _open_video(video_path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0

    def frames():
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
        finally:
            cap.release()
    faces = track_faces(frames(), fps, detect_every=detect_every, iou_with_initial=iou_with_initial,
                        min_frames=min_frames, detector=detector)
    if faces is None:
        raise FommError(f"{video_path} has no readable video frames.")
    return faces


def track_faces(frames, fps: float, *, detect_every: int | None = None, iou_with_initial: float = 0.25,
                min_frames: int = 1, detector: FaceDetector | None = None) -> VideoFaces | None:
    """Follow every face through an iterable of frames (None when there are none).

    A detection continues a track when it overlaps the track's first box by `iou_with_initial` (the original's
    rule: a track is one stable head position, so a head that wanders far starts a new track). A track ends
    when its face is not seen in a checked frame. Only every `detect_every`-th frame is checked (default: about
    8 checks a second; a head moves little in 1/8 s and detection is the slow part). Tracks shorter than
    `min_frames` frames are dropped.
    """
    detector = detector or FaceDetector()
    detect_every = detect_every or max(1, round(fps / 8))
    finished, live, shape, index = [], [], None, -1
    for frame in frames:
        index += 1
        shape = frame.shape[:2]
        if index % detect_every:
            continue
        boxes = detector.detect(frame)
        still = []
        for track in live:
            match = max(boxes, key=lambda b: iou(b, track.boxes[0]), default=None)
            if match is not None and iou(match, track.boxes[0]) >= iou_with_initial:
                track.boxes.append(match)
                track.end = index
                boxes.remove(match)
                still.append(track)
            else:
                finished.append(track)
        live = still + [Track(index, index, [b]) for b in boxes]
    if shape is None:
        return None
    last = index
    for track in live:  # a face still there at the end lasts until the last frame
        track.end = last
    for track in finished:  # it was last seen at track.end and gone by the next check
        track.end = min(track.end + detect_every - 1, last)
    tracks = sorted((t for t in finished + live if t.frames >= min_frames), key=lambda t: t.start)
    return VideoFaces(tracks, shape, float(fps), last + 1)


def stable_crop_box(track: Track, increase: float = 0.1, frame_shape=None) -> Box:
    """One square crop for a whole track: the union of its boxes, grown by `increase`, made square, in frame."""
    left = min(b.x for b in track.boxes)
    top = min(b.y for b in track.boxes)
    right = max(b.x + b.w for b in track.boxes)
    bottom = max(b.y + b.h for b in track.boxes)
    return square_box(Box(left, top, right - left, bottom - top), increase, frame_shape)


def ffmpeg_crop_args(video_in, video_out, box: Box, size: int = 256, *, audio: bool = True,
                     start: float | None = None, duration: float | None = None, ffmpeg: str = "ffmpeg") -> list:
    """The ffmpeg argument list that crops `box` out of the video, scales it to size x size and keeps audio."""
    x, y, w, h = box.ints()
    args = [ffmpeg, "-y", "-v", "error"]
    if start:
        args += ["-ss", f"{start:.3f}"]
    args += ["-i", str(video_in)]
    if duration is not None:
        args += ["-t", f"{duration:.3f}"]
    args += ["-map", "0:v:0", "-vf", f"crop={w}:{h}:{x}:{y},scale={size}:{size}:flags=area",
             "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18"]
    # aac, not copy: any input's audio fits an mp4; '?' keeps a video without audio working
    args += ["-map", "0:a:0?", "-c:a", "aac", "-b:a", "160k"] if audio else ["-an"]
    return args + [str(video_out)]


def ffmpeg_crop_command(video_in, video_out, box: Box, size: int = 256, **kw) -> str:
    """The same as one shell command line (for `crop --print-ffmpeg`)."""
    return shlex.join(map(str, ffmpeg_crop_args(video_in, video_out, box, size, **kw)))


def crop_video(video_in, video_out, box: Box, size: int = 256, *, audio: bool = True,
               start: float | None = None, duration: float | None = None) -> Path:
    """Write the cropped, scaled clip (with audio) to `video_out` via a temp file renamed into place."""
    out = Path(video_out)
    if not Path(video_in).is_file():
        raise FommError(f"video {video_in} does not exist; check the path.")
    if out.parent and not out.parent.exists():
        raise FommError(f"the folder {out.parent} does not exist; create it or choose another output path.")
    from fomm_core.media.video import ffmpeg_exe, ffmpeg_file, temp_path_for
    tmp = temp_path_for(out)
    # file: names, so that a name like 12:30.mp4 is not read as a protocol
    args = ffmpeg_crop_args(ffmpeg_file(video_in), ffmpeg_file(tmp), box, size, audio=audio, start=start,
                            duration=duration, ffmpeg=ffmpeg_exe())
    try:
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no message"])[-1]
            raise FommError(f"ffmpeg could not write {out} ({last}).")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


@dataclass
class ImageCrop:
    image: np.ndarray      # size x size, same channel order as the input
    box: Box | None        # the square taken from the input image (None: resized whole, see source_square)
    face_found: bool       # False: no face seen, the centre square was used (e.g. an already-cropped photo)


def crop_face_image(image: np.ndarray, size: int = 256, increase: float = 0.1,
                    detector: FaceDetector | None = None) -> ImageCrop:
    """Crop a source photo to its largest face the same way as driving videos (square, `increase` margin).

    A photo where no face is found (often one already cropped tight to the face) gives its centre square.
    """
    detector = detector or FaceDetector(max_side=480, min_face=0.1)
    faces = detector.detect(image)
    h, w = image.shape[:2]
    if faces:
        box = square_box(faces[0], increase, image.shape)
    else:
        side = min(h, w)
        box = Box(float((w - side) // 2), float((h - side) // 2), float(side), float(side))
    return ImageCrop(crop_square(image, box, size), box, bool(faces))


def source_square(path, size: int, crop: bool) -> ImageCrop:
    """A source photo at model size, as `animate` and `live` both take it: cropped to its largest face (its
    centre square when none is found), or with crop=False its centre square. `box` is None without crop."""
    from fomm_core.media.images import load_image, square_resize
    image = load_image(path)   # non-ASCII paths, a pixel limit from the header, transparency on white
    if crop:
        return crop_face_image(image, size)
    return ImageCrop(square_resize(image, size), None, False)
