"""Cropping driving videos and source images to the face, as first-order-model's crop script does — and doing it.

The original script tracks faces through the video, takes for each track the union of its boxes grown by an
`increase` margin and made square, and *prints* an ffmpeg command per track. Here the same steps return data,
and `crop_video` runs the command with the ffmpeg that imageio-ffmpeg bundles, keeping the audio.

Faces are searched in the frames `video.iter_frames` decodes, rotation applied: the frames `animate` animates
and the picture ffmpeg's crop filter cuts (it rotates first too), so a box fits both.
"""
from __future__ import annotations

import os
import shlex
import subprocess
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fomm_core.errors import FommError
from fomm_core.media.face import Box, FaceDetector, Framing, crop_square, iou
from fomm_core.media.opener import ffmpeg_exe, ffmpeg_file, input_args, probe_video, refusal, was_refused
from fomm_core.media.video import iter_frames, temp_path_for

RESCAN_SECONDS = 2.0   # while faces are followed, the whole frame is searched for new ones this often


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


def _checked_frames(frames, detect_every: int):
    """(index, frame) for every frame, the frame None between checks: the read-ahead then holds only the
    frames searched, not a queue of whole frames nobody looks at."""
    with closing(frames):
        for index, frame in enumerate(frames):
            yield index, (frame if index % detect_every == 0 else None)


def _read_ahead(items, depth: int = 8):
    """The items of a generator, made by a thread up to `depth` items ahead. The thread keeps ffmpeg's pipe
    drained (reading releases Python's lock), so ffmpeg decodes the next frames on the other core instead of
    waiting on a full pipe while this one searches the current frame."""
    import queue
    import threading
    ahead: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce():
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((False, None))
        except Exception as err:  # handed to the reader, which raises it
            put((False, err))
        finally:
            items.close()

    thread = threading.Thread(target=produce, name="face-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            more, item = ahead.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        thread.join()


def find_face_tracks(video_path, *, detect_every: int | None = None, iou_with_initial: float = 0.25,
                     min_frames: int = 1, detector: FaceDetector | None = None,
                     rescan: float = RESCAN_SECONDS) -> VideoFaces:
    """Follow every face through the video file (its frames as `iter_frames` decodes them, read a few frames
    ahead in a thread); see `track_faces`."""
    info = probe_video(video_path)
    every = detect_every or default_detect_every(info.fps)
    frames = _read_ahead(_checked_frames(iter_frames(video_path, info=info), every))
    try:
        book = _Book(detector, iou_with_initial, info.fps, every, rescan)
        faces = _track(frames, info.fps, every, book, min_frames)
    finally:
        frames.close()   # stops the reading thread (and ffmpeg) if the search failed half way
    return faces   # never None: iter_frames raises on a file without a frame


def default_detect_every(fps: float) -> int:
    """About 8 checks a second: a head moves little in 1/8 s."""
    return max(1, round(fps / 8))


class _Book:
    """The tracks while the frames go by: a detection at each checked frame continues them or starts new ones.

    While faces are being followed, a check searches only near where each one is expected (its last box moved
    on as it moved between the last two checks; see FaceDetector.detect's `near`), which costs a fraction of
    a search of the whole frame. The whole frame is searched when no face is being followed, when a followed
    face is not seen near where it should be, and every `rescan` seconds (new faces elsewhere in the frame are
    found by those searches). With rescan=0 every check searches the whole frame, as before tracking existed.
    """

    def __init__(self, detector, iou_with_initial: float, fps: float, detect_every: int, rescan: float):
        self.detector = detector or FaceDetector()
        self.iou_with_initial = iou_with_initial
        self.rescan_checks = max(1, round(rescan * fps / detect_every))
        self.since_scan = 0                 # checks since the last search of the whole frame
        self.finished: list[Track] = []
        self.live: list[Track] = []

    def _detect(self, frame) -> list[Box]:
        if self.live and self.since_scan < self.rescan_checks:
            expected = [_expected(t) for t in self.live]
            boxes = self.detector.detect(frame, near=expected)
            if all(any(iou(b, e) > 0 for b in boxes) for e in expected):
                self.since_scan += 1
                return boxes
        self.since_scan = 1
        return self.detector.detect(frame)

    def check(self, index: int, frame) -> None:
        boxes = self._detect(frame)
        still = []
        for track in self.live:
            match = max(boxes, key=lambda b: iou(b, track.boxes[0]), default=None)
            if match is not None and iou(match, track.boxes[0]) >= self.iou_with_initial:
                track.boxes.append(match)
                track.end = index
                boxes.remove(match)
                still.append(track)
            else:
                self.finished.append(track)
        self.live = still + [Track(index, index, [b]) for b in boxes]


def _expected(track: Track) -> Box:
    """Where the track's face should be at the next check: its last box, moved on as between its last two."""
    last = track.boxes[-1]
    if len(track.boxes) < 2:
        return last
    before = track.boxes[-2]
    return Box(2 * last.x - before.x, 2 * last.y - before.y, last.w, last.h)


def _track(indexed, fps: float, detect_every: int, book: _Book, min_frames: int) -> VideoFaces | None:
    shape, last = None, -1
    for last, frame in indexed:
        if frame is not None and last % detect_every == 0:
            shape = frame.shape[:2]
            book.check(last, frame)
    if shape is None:
        return None
    for track in book.live:  # a face still there at the end lasts until the last frame
        track.end = last
    for track in book.finished:  # it was last seen at track.end and gone by the next check
        track.end = min(track.end + detect_every - 1, last)
    tracks = sorted((t for t in book.finished + book.live if t.frames >= min_frames), key=lambda t: t.start)
    return VideoFaces(tracks, shape, float(fps), last + 1)


def track_faces(frames, fps: float, *, detect_every: int | None = None, iou_with_initial: float = 0.25,
                min_frames: int = 1, detector: FaceDetector | None = None,
                rescan: float = RESCAN_SECONDS) -> VideoFaces | None:
    """Follow every face through an iterable of frames (None when there are none).

    A detection continues a track when it overlaps the track's first box by `iou_with_initial` (the original's
    rule: a track is one stable head position, so a head that wanders far starts a new track). A track ends
    when its face is not seen in a checked frame. Only every `detect_every`-th frame is checked (default: about
    8 checks a second; a head moves little in 1/8 s and detection is the slow part), and most checks search
    only near the faces already followed; the whole frame is searched every `rescan` seconds and whenever a
    face is lost (rescan=0: at every check, the slow way). Tracks shorter than `min_frames` frames are dropped.
    """
    every = detect_every or default_detect_every(fps)
    book = _Book(detector, iou_with_initial, fps, every, rescan)
    return _track(enumerate(frames), fps, every, book, min_frames)


def stable_crop_box(track: Track, increase: float = 0.1, frame_shape=None, framing: Framing | None = None) -> Box:
    """One square crop for a whole track: the union of its boxes, grown by `increase`, made square, in frame
    (or framed by a family's `framing` instead)."""
    left = min(b.x for b in track.boxes)
    top = min(b.y for b in track.boxes)
    right = max(b.x + b.w for b in track.boxes)
    bottom = max(b.y + b.h for b in track.boxes)
    framing = framing or Framing(scale=1 + 2 * increase)
    return framing.square(Box(left, top, right - left, bottom - top), frame_shape)


def ffmpeg_crop_args(video_in, video_out, box: Box, size: int = 256, *, audio: bool = True,
                     start: float | None = None, duration: float | None = None, ffmpeg: str = "ffmpeg") -> list:
    """The ffmpeg argument list that crops `box` out of the video, scales it to size x size and keeps audio.

    The video is opened as every video file is (`opener.input_args`: a local file of the formats read)."""
    x, y, w, h = box.ints()
    args = [ffmpeg, "-y", "-v", "error"]
    if start:
        args += ["-ss", f"{start:.3f}"]
    args += input_args(video_in)
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
    tmp = temp_path_for(out)
    # file: names, so that a name like 12:30.mp4 is not read as a protocol
    args = ffmpeg_crop_args(video_in, ffmpeg_file(tmp), box, size, audio=audio, start=start,
                            duration=duration, ffmpeg=ffmpeg_exe())
    try:
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0 and was_refused(result.stderr):
            raise refusal(video_in)
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
    box: Box               # the square taken from the input image, in its pixels
    face_found: bool       # False: no face seen, the centre square was used (e.g. an already-cropped photo)
    photo: np.ndarray | None = None   # the whole input image (source_square keeps it, for paste-back)


def centre_square_box(width: int, height: int) -> Box:
    """The largest centred square of a width x height image (the one `square_resize` takes)."""
    side = min(width, height)
    return Box(float((width - side) // 2), float((height - side) // 2), float(side), float(side))


def crop_face_image(image: np.ndarray, size: int = 256, increase: float = 0.1,
                    detector: FaceDetector | None = None, framing: Framing | None = None) -> ImageCrop:
    """Crop a source photo to its largest face the same way as driving videos (square, `increase` margin, or
    the family's `framing`).

    A photo where no face is found (often one already cropped tight to the face) gives its centre square.
    """
    framing = framing or Framing(scale=1 + 2 * increase)
    detector = detector or FaceDetector(max_side=480, min_face=0.1)
    faces = detector.detect(image)
    h, w = image.shape[:2]
    if faces:
        box = framing.square(faces[0], image.shape)
    else:
        box = centre_square_box(w, h)
    return ImageCrop(crop_square(image, box, size), box, bool(faces))


def source_square(path, size: int, crop: bool, framing: Framing | None = None) -> ImageCrop:
    """A source photo at model size, as `animate` and `live` both take it: cropped to its largest face as the
    family frames it (its centre square when none is found), or with crop=False its centre square; the whole
    photo is kept."""
    from fomm_core.media.images import load_image, square_resize
    image = load_image(path)   # non-ASCII paths, a pixel limit from the header, transparency on white
    if crop:
        cropped = crop_face_image(image, size, framing=framing)
    else:
        cropped = ImageCrop(square_resize(image, size), centre_square_box(image.shape[1], image.shape[0]), False)
    cropped.photo = image
    return cropped
