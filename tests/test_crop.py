"""`fomm-doctor crop` and fomm_core.media.crop on real clips of a real face, made with the bundled ffmpeg."""
import subprocess

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from conftest import run_cli  # noqa: E402
from fomm_core.media.crop import (crop_face_image, crop_video, ffmpeg_crop_command, find_face_tracks,  # noqa: E402
                            stable_crop_box)
from fomm_core.media.face import Box, FaceDetector, iou  # noqa: E402
from fomm_core.media.video import iter_frames  # noqa: E402
from test_face import background, encode_clip, paste_face, planted_frame, write_face_clip  # noqa: E402


def probe(path):
    """(frames, width, height, has_audio) of a video, read back with OpenCV and ffmpeg."""
    import imageio_ffmpeg
    cap = cv2.VideoCapture(str(path))
    frames = 0
    while cap.read()[0]:
        frames += 1
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    info = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True).stderr
    return frames, w, h, "Audio:" in info


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    # the face drifts 2 px a frame to the right: one track, and a crop that must cover all of it
    positions = [(60 + 2 * i, 40) for i in range(20)]
    return write_face_clip(tmp_path_factory.mktemp("crop") / "face.mp4", positions)


def test_finds_one_track_and_a_stable_box_covering_every_frame(face_clip):
    path, truth = face_clip
    faces = find_face_tracks(path)
    assert faces.frame_shape == (240, 320) and faces.frame_count == 20
    track = faces.longest()
    assert len(faces.tracks) == 1 and (track.start, track.end) == (0, 19)
    for found in track.boxes:
        assert max(iou(found, t) for t in truth) >= 0.5
    box = stable_crop_box(track, 0.1, faces.frame_shape)
    assert box.w == box.h
    for t in truth:  # each frame's true face lies inside the crop
        assert box.x <= t.x and box.y <= t.y and t.x + t.w <= box.x + box.w and t.y + t.h <= box.y + box.h
    # ...with margin, but not much more than the union of the faces needs
    assert box.w <= 1.5 * (truth[-1].x + truth[-1].w - truth[0].x)


def face_path(i):
    """Where the test photo is in frame i (top-left x, y, scale), or None: 40 frames of a sway while leaning in
    and out, 20 frames sliding out past the right edge, 10 frames without a face, 30 frames somewhere else."""
    if i < 40:
        t = i / 40
        return round(30 + 80 * t), round(40 + 15 * np.sin(2 * np.pi * t)), 0.7 * (1 + 0.12 * np.sin(2 * np.pi * t))
    if i < 60:
        return 110 + (i - 39) * 12, 40, 0.7
    if i < 70:
        return None
    return 10 + (i - 70), 95, 0.75


@pytest.fixture(scope="module")
def leaving_clip(tmp_path_factory):
    """(clip path, true face box per frame or None). 320x240, 100 frames at 25 fps."""
    frames, truth = [], []
    for i in range(100):
        frame, where = background(240, 320, seed=1), face_path(i)
        truth.append(paste_face(frame, *where) if where else None)
        frames.append(frame)
    return encode_clip(tmp_path_factory.mktemp("leave") / "leave.mp4", frames), truth


def visible(box, w=320, h=240):
    """The part of a box inside the frame (None when none of it is)."""
    x0, y0, x1, y1 = max(box.x, 0), max(box.y, 0), min(box.x + box.w, w), min(box.y + box.h, h)
    return Box(x0, y0, x1 - x0, y1 - y0) if x0 < x1 and y0 < y1 else None


def boxes_by_frame(faces, every):
    found = {}
    for track in faces.tracks:
        for k, box in enumerate(track.boxes):
            assert track.start + k * every not in found, "two tracks hold one face at once"
            found[track.start + k * every] = box
    return found


def test_tracked_box_on_every_frame_matches_the_true_face(leaving_clip):
    path, truth = leaving_clip
    faces = find_face_tracks(path, detect_every=1)
    found = boxes_by_frame(faces, 1)
    whole = [i for i, t in enumerate(truth) if t is not None and visible(t) == t]
    assert set(whole) <= set(found), "a frame with the whole face in it has no box"
    for i, box in found.items():            # every box is the face, as much of it as the frame shows
        assert truth[i] is not None and iou(box, visible(truth[i])) >= 0.8, (i, box, truth[i])
    # the face that slid out ended its track before the empty frames; the one that came back was found at once
    assert not [i for i in found if 60 <= i < 70]
    comeback = [t for t in faces.tracks if t.start >= 70]
    assert len(comeback) == 1 and comeback[0].start == 70 and comeback[0].end == 99
    assert comeback[0].boxes[0].center[0] < 160                        # on the left, where it came back


def test_searching_near_the_faces_gives_what_searching_everywhere_gives(leaving_clip):
    path, truth = leaving_clip
    tracked = find_face_tracks(path)                                   # as `crop` runs it
    everywhere = find_face_tracks(path, rescan=0)                      # the whole frame at every check
    assert [(t.start, t.end) for t in tracked.tracks] == [(t.start, t.end) for t in everywhere.tracks]
    for a, b in zip(tracked.tracks, everywhere.tracks):
        assert min(iou(x, y) for x, y in zip(a.boxes, b.boxes)) >= 0.95
    starts = [t.start for t in tracked.tracks]
    assert starts[0] == 0 and 70 <= starts[-1] <= 72                   # within one check (every 3rd frame)


def test_live_cropper_follows_the_face_by_searching_near_it(leaving_clip):
    from fomm_core.live.tracking import DrivingCropper
    path, truth = leaving_clip

    class Counting(FaceDetector):
        near = whole = 0

        def detect(self, frame, near=None):
            if near is None:
                self.whole += 1
            else:
                self.near += 1
            return super().detect(frame, near)

    cropper = DrivingCropper(64, background=False, budget=float("inf"))   # no pacing: detect at every frame
    cropper.detector = Counting(max_side=240, min_face=0.15)
    frames = iter_frames(path)                                    # as live reads a video file
    for i in range(40):                                           # the sway, before the face leaves
        _, found = cropper(next(frames))
        assert found
    frames.close()
    assert cropper.detector.whole == 1 and cropper.detector.near == 39
    assert iou(cropper.tracker.box, truth[39]) >= 0.6


def test_frames_read_ahead_in_a_thread_arrive_in_order_errors_included():
    from fomm_core.media.crop import _read_ahead
    closed = []

    def items(n, fail=False):
        try:
            for i in range(n):
                yield i, np.full((2, 2), i)
            if fail:
                raise OSError("the disk went away")
        finally:
            closed.append(n)

    assert [i for i, _ in _read_ahead(items(50), depth=4)] == list(range(50))
    with pytest.raises(OSError, match="went away"):
        list(_read_ahead(items(3, fail=True)))
    early = _read_ahead(items(1000), depth=4)
    assert next(early)[0] == 0
    early.close()                        # the reader stops and the source is closed (ffmpeg ended)
    assert closed == [50, 3, 1000]


def test_a_phone_clip_is_tracked_in_the_frames_animate_and_crop_use(tmp_path, ffmpeg_exe):
    """A portrait phone clip stores its frames sideways plus a rotation tag. The faces are found in the frames as
    shown (rotation applied: upright), the very frames `animate` decodes, and ffmpeg's crop cuts the face out
    of them; the stored sideways frames hold no face the detector could find."""
    from fomm_core.media.crop import default_detect_every, track_faces
    upright, truth = zip(*(planted_frame(320, 240, 20 + 2 * i, 60, 0.8, seed=1) for i in range(20)))
    sideways = encode_clip(tmp_path / "sideways.mp4", [np.rot90(f) for f in upright], audio=True)
    phone = tmp_path / "phone.mp4"
    subprocess.run([ffmpeg_exe, "-y", "-v", "error", "-display_rotation", "-90", "-i", str(sideways), "-c", "copy",
                    str(phone)], check=True)
    shown = next(iter_frames(phone))
    assert shown.shape == (320, 240, 3)
    assert np.abs(shown.astype(int) - cv2.cvtColor(upright[0], cv2.COLOR_BGR2RGB)).mean() < 3   # upright
    assert find_face_tracks(sideways).tracks == []
    faces = find_face_tracks(phone)
    assert faces.frame_shape == (320, 240) and faces.frame_count == 20
    animated = track_faces(iter_frames(phone), 25)                              # what `animate --crop` tracks
    assert [(t.start, t.end, t.boxes) for t in faces.tracks] == [(t.start, t.end, t.boxes) for t in animated.tracks]
    track = faces.longest()
    assert len(faces.tracks) == 1 and (track.start, track.end) == (0, 19)
    every = default_detect_every(25)
    for i, found in enumerate(track.boxes):
        assert iou(found, truth[i * every]) >= 0.5, (i, found)
    out = tmp_path / "phone-crop.mp4"
    r = run_cli("crop", phone, "-o", out, "--size", "96")
    assert r.returncode == 0, r.stderr
    big = cv2.resize(next(iter_frames(out)), (256, 256))
    found = FaceDetector().detect(big)
    assert found and found[0].w > 256 * 0.5                    # the face, upright, filling the crop


def test_crop_video_writes_square_clip_with_audio(face_clip, tmp_path):
    path, truth = face_clip
    out = crop_video(path, tmp_path / "out.mp4", Box(50, 20, 160, 160), 128)
    assert probe(out) == (20, 128, 128, True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp file renamed away


def test_crop_video_failure_leaves_no_partial_file(tmp_path):
    from fomm_core.errors import FommError
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(FommError, match="ffmpeg could not write"):
        crop_video(fake, tmp_path / "out.mp4", Box(0, 0, 100, 100), 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.mp4"]


def test_cli_crop_end_to_end(face_clip, tmp_path):
    path, truth = face_clip
    out = tmp_path / "cropped.mp4"
    r = run_cli("crop", path, "-o", out, "--size", "96")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and probe(out) == (20, 96, 96, True)
    # the cropped frames show the face: the detector finds it filling most of the frame
    big = cv2.resize(next(iter_frames(out)), (256, 256))
    found = FaceDetector().detect(big)
    assert found and found[0].w > 256 * 0.5


def test_cli_print_ffmpeg_and_no_audio(face_clip, tmp_path):
    path, _ = face_clip
    r = run_cli("crop", path, "-o", tmp_path / "x.mp4", "--print-ffmpeg", "--no-audio")
    assert r.returncode == 0, r.stderr
    assert "crop=" in r.stdout and "scale=256:256" in r.stdout and "-an" in r.stdout
    assert not (tmp_path / "x.mp4").exists()
    cmd = ffmpeg_crop_command("in.mp4", "out.mp4", Box(1, 2, 30, 30), 256)
    assert "crop=30:30:1:2" in cmd and "-c:a aac" in cmd


def test_cli_crop_clear_sentences(tmp_path, clip_factory):
    r = run_cli("crop", tmp_path / "missing.mp4", "-o", tmp_path / "o.mp4")
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    noface = clip_factory("noface.mp4", frames=6, size=(96, 64))  # a test pattern, no face
    r = run_cli("crop", noface, "-o", tmp_path / "o.mp4")
    assert r.returncode == 2 and "no face found" in r.stderr


def test_crop_face_image_for_animate_crop():
    frame, truth = planted_frame(h=400, w=600, x=350, y=120, scale=1.0)
    result = crop_face_image(frame, size=256, increase=0.1)
    assert result.face_found and result.image.shape == (256, 256, 3)
    assert result.box.w == result.box.h and iou(result.box, truth) > 0.5
    # no face (e.g. a plain picture): the centre square, said so
    plain = np.full((100, 200, 3), 128, np.uint8)
    fallback = crop_face_image(plain, size=64)
    assert not fallback.face_found and fallback.box == Box(50, 0, 100, 100)


def test_animate_crop_uses_the_face_in_the_photo_and_the_video(face_clip, tmp_path):
    """`animate --crop --side-by-side`: the left panel is the photo's face crop, the middle one the video's
    steady face crop (not the centre squares a plain `animate` takes)."""
    from fomm_core.media.face import crop_square
    from fomm_core.media.images import square_resize
    path, truth = face_clip
    photo_bgr, _ = planted_frame(480, 640, 380, 200, 1.0, seed=2)    # face far from the centre
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), photo_bgr)
    out = tmp_path / "out.mp4"
    r = run_cli("animate", photo, path, "-o", out, "--crop", "--side-by-side", "--no-audio",
                env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    panels = list(iter_frames(out))
    assert len(panels) == 20 and panels[0].shape == (64, 192, 3)
    size = 64

    def mad(a, b):
        return float(np.abs(a.astype(float) - b.astype(float)).mean())
    photo_rgb = cv2.cvtColor(photo_bgr, cv2.COLOR_BGR2RGB)
    face_crop = crop_face_image(photo_rgb, size)
    assert face_crop.face_found
    left = panels[0][:, :size]
    assert mad(left, face_crop.image) < 6 < mad(left, square_resize(photo_rgb, size))
    from fomm_core.media.crop import track_faces
    faces = track_faces(iter_frames(path), 25)                      # the frames the pipeline decodes (RGB)
    box = stable_crop_box(faces.longest(), 0.1, faces.frame_shape)
    for t in truth:                                                 # one steady square holding every face
        assert box.x <= t.x and box.y <= t.y and t.x + t.w <= box.x + box.w and t.y + t.h <= box.y + box.h
    first = next(iter_frames(path))
    middle = panels[0][:, size:2 * size]
    assert mad(middle, crop_square(first, box, size)) < 6 < mad(middle, square_resize(first, size))


def test_animate_crop_without_a_face_says_so_and_uses_the_centre(tmp_path, ffmpeg_exe):
    from conftest import make_clip
    clip = make_clip(tmp_path / "noface.mp4", frames=6, size=(64, 64), audio=False, ffmpeg=ffmpeg_exe)
    photo = tmp_path / "flat.png"
    cv2.imwrite(str(photo), np.full((80, 80, 3), 128, np.uint8))
    r = run_cli("animate", photo, clip, "-o", tmp_path / "o.mp4", "--crop", env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert "no face found in the source image" in r.stderr and "no face found in the driving video" in r.stderr
    assert (tmp_path / "o.mp4").is_file()
