"""Paste-back: results put back into the full-resolution photo, on a real photo and real encoded clips."""
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from fomm_core.media.crop import source_square  # noqa: E402
from fomm_core.media.face import Box  # noqa: E402
from fomm_core.media.images import load_image  # noqa: E402
from fomm_core.media.paste import MAX_PIXELS, Feather, paste_back  # noqa: E402
from fomm_core.media.video import iter_frames, probe_video  # noqa: E402
from test_face import write_face_clip  # noqa: E402

MARGIN, FEATHER = Feather().margin, Feather().width

# NASA's portrait of Eileen Collins (public domain; tests/data/faces/README.md), 511x383: odd on both sides
PORTRAIT = Path(__file__).parent / "data" / "faces" / "astronaut_portrait.jpg"


def _crossing_steps(image: np.ndarray, box, band: int) -> float:
    """The largest mean step (levels, between neighbouring pixels, across the edge) along the box's left and
    right sides, within `band` pixels of the edge: what a seam looks like to the eye."""
    x, y, side, _ = box.ints()
    rows = image[y + band:y + side - band].astype(np.float32)
    steps = np.abs(np.diff(rows, axis=1)).mean(axis=(0, 2))      # [W-1]: mean step between columns c and c+1
    left = steps[max(0, x - band):x + band]
    right = steps[x + side - band:x + side + band]
    return float(max(left.max(), right.max()))


def _side_energy(image: np.ndarray, x: int, y: int, side: int, inset: int = 2) -> float:
    """Mean step across the square's four sides, `inset` pixels inside them (levels): where a pasted square
    shows as a line."""
    rows, cols = slice(y + inset, y + side - inset), slice(x + inset, x + side - inset)
    steps = [np.abs(image[rows, x + inset] - image[rows, x + inset - 1]),
             np.abs(image[rows, x + side - inset] - image[rows, x + side - inset - 1]),
             np.abs(image[y + inset, cols] - image[y + inset - 1, cols]),
             np.abs(image[y + side - inset, cols] - image[y + side - inset - 1, cols])]
    return float(np.mean([s.mean() for s in steps]))


def test_the_colour_match_follows_a_change_of_light():
    """The animation brightens by 20 levels over 20 frames (the driving face walks into light), then stays: the
    colour match follows within a few frames, so the blending band never shows the step that a shift measured
    once would leave (about 10 levels there), and settles on the new light."""
    photo = load_image(PORTRAIT)
    box = source_square(PORTRAIT, 256, crop=True).box
    x, y, side, _ = box.ints()
    square = photo[y:y + side, x:x + side].astype(np.float32)
    paste = paste_back(photo, box)
    band = (paste.mask[..., 0] > 0.05) & (paste.mask[..., 0] < 0.95)
    for i in range(32):
        light = 20.0 * min(i, 20) / 20
        out = paste(np.clip(square + light, 0, 255).astype(np.uint8)).astype(np.float32)
        seam = np.abs(out[y:y + side, x:x + side] - square)[band].mean()
        assert seam < 3.0, (i, seam)                                  # measured once: 9.7 by the end
    unclipped = square.max(axis=2) + 20 <= 255                    # pixels the brightening did not saturate
    assert np.abs(out[y:y + side, x:x + side] - square)[unclipped].mean() < 1.0   # settled: the photo, no halo


def test_outside_the_square_is_the_photo_and_the_edge_has_no_seam():
    photo = load_image(PORTRAIT)
    box = source_square(PORTRAIT, 256, crop=True).box
    paste = paste_back(photo, box)
    assert paste.size == (510, 382)                   # the photo's size, made even for H.264
    frame = np.full((256, 256, 3), (250, 250, 40), np.uint8)   # far from the photo's colours everywhere
    out = paste(frame)
    x, y, side, _ = box.ints()
    outside = np.ones(out.shape[:2], bool)
    outside[y:y + side, x:x + side] = False
    assert np.array_equal(out[outside], photo[:382, :510][outside])
    # deep inside, the animation (moved by the colour match, which is bounded)
    inner = slice(y + side // 3, y + 2 * side // 3), slice(x + side // 3, x + 2 * side // 3)
    assert np.abs(out[inner].astype(int) - (np.array((250, 250, 40)) + paste.shift)).max() <= 1
    # no seam: across the blending band the steps stay near the photo's own; a hard paste jumps by ~100 levels
    band = int((MARGIN + FEATHER) * side) + 2
    hard = photo[:382, :510].copy()
    hard[y:y + side, x:x + side] = cv2.resize(frame, (side, side))
    ours, photos, hard_step = (_crossing_steps(i, box, band) for i in (out, photo, hard))
    assert hard_step > 80
    assert ours <= photos + 1.5 * 255 / (FEATHER * side) * 0.6, (ours, photos)


def test_colour_is_kept_when_the_model_shifts_it():
    """A result that is the photo's own square 12 levels too dark comes out as the photo (within rounding)."""
    photo = load_image(PORTRAIT)
    box = source_square(PORTRAIT, 256, crop=True).box
    x, y, side, _ = box.ints()
    darker = np.clip(photo[y:y + side, x:x + side].astype(int) - 12, 0, 255).astype(np.uint8)
    out = paste_back(photo, box)(darker)
    assert np.abs(out[y:y + side, x:x + side].astype(int) - photo[y:y + side, x:x + side]).mean() < 1.5
    assert np.abs(darker.astype(int) - photo[y:y + side, x:x + side]).mean() > 10


def test_a_square_on_the_photos_edge_is_not_faded_there_and_huge_photos_are_scaled_down():
    photo = np.zeros((300, 200, 3), np.uint8)
    edge = paste_back(photo, Box(0.0, 50.0, 200.0, 200.0))         # the centre square of a portrait photo
    assert edge.mask[100, 0, 0] == 1.0 and edge.mask[100, -1, 0] == 1.0   # the photo's own left and right edges
    assert edge.mask[0, 100, 0] == 0.0 and edge.mask[-1, 100, 0] == 0.0   # top and bottom lie inside the photo
    big = np.zeros((4001, 6001, 3), np.uint8)
    huge = paste_back(big, Box(3000.0, 2000.0, 1000.0, 1000.0))
    w, h = huge.size
    assert w * h <= MAX_PIXELS and w % 2 == 0 and h % 2 == 0 and abs(w / h - 6001 / 4001) < 0.01
    assert huge.box.x == pytest.approx(3000 * w / 6001, abs=1)


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "face.mp4"
    write_face_clip(path, [(60 + 2 * i, 30 + i) for i in range(12)], size=(320, 240), audio=True)
    return path


def test_cli_paste_back_with_crop_on_a_real_photo(face_clip, tiny_checkpoint, tmp_path):
    plain, pasted = tmp_path / "plain.mp4", tmp_path / "pasted.mp4"
    common = ("--checkpoint", tiny_checkpoint, "--crop", "--precision", "fp32")
    r = run_cli("animate", PORTRAIT, face_clip, "-o", plain, *common)
    assert r.returncode == 0, r.stderr
    r = run_cli("animate", PORTRAIT, face_clip, "-o", pasted, *common, "--paste-back")
    assert r.returncode == 0, r.stderr
    assert "(510x382)" in r.stdout
    info = probe_video(pasted)
    assert (info.width, info.height, info.has_audio) == (510, 382, True)
    animated, results = list(iter_frames(plain)), list(iter_frames(pasted))
    assert len(results) == len(animated) == 12
    photo = load_image(PORTRAIT)[:382, :510].astype(np.float32)
    x, y, side, _ = source_square(PORTRAIT, 64, crop=True).box.ints()
    outside = np.ones(photo.shape[:2], bool)
    outside[max(0, y - 4):y + side + 4, max(0, x - 4):x + side + 4] = False   # chroma blocks reach 4 px over
    inner = slice(y + side // 3, y + 2 * side // 3), slice(x + side // 3, x + 2 * side // 3)
    for still, result in zip(animated, results):
        assert np.abs(result[outside] - photo[outside]).mean() < 2.5        # the photo, through H.264
        expected = cv2.resize(still, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        got = result[inner].astype(np.float32)
        want = expected[side // 3:2 * side // 3, side // 3:2 * side // 3]
        # the animation, up to the one colour shift for the whole clip
        centred = (got - got.mean(axis=(0, 1))) - (want - want.mean(axis=(0, 1)))
        assert np.abs(centred).mean() < 4
        assert np.abs(got - photo[inner]).mean() > 15                       # and not the photo
    band = int((MARGIN + FEATHER) * side) + 2
    assert _crossing_steps(results[5], Box(x, y, side, side), band) < 25
    # no square shows: the square's corners are the photo's, and along its four sides the output's steps across
    # the side are the photo's own (a square mask, 1 a band's width inside its edges, fails both)
    corner = max(4, int(0.15 * side))
    for result in results:
        for cy, cx in ((y, x), (y, x + side - corner), (y + side - corner, x), (y + side - corner, x + side - corner)):
            part = (slice(cy, cy + corner), slice(cx, cx + corner))
            assert np.abs(result[part].astype(np.float32) - photo[part]).mean() < 3
    for result in results[::4]:
        ours, photos = _side_energy(result.astype(np.float32), x, y, side), _side_energy(photo, x, y, side)
        assert ours <= photos * 1.1 + 1.0, (ours, photos)


def test_side_by_side_and_paste_back_are_refused_together(face_clip, tiny_checkpoint, tmp_path):
    r = run_cli("animate", PORTRAIT, face_clip, "-o", tmp_path / "o.mp4", "--checkpoint", tiny_checkpoint,
                "--paste-back", "--side-by-side")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: --side-by-side and --paste-back")
    assert "Traceback" not in r.stderr and not (tmp_path / "o.mp4").exists()


def test_live_paste_back_records_at_the_photos_size(face_clip, tiny_checkpoint, tmp_path):
    out = tmp_path / "live.mp4"
    r = run_cli("live", "-s", PORTRAIT, "-c", face_clip, "--checkpoint", tiny_checkpoint, "--no-window",
                "-o", out, "--paste-back", "--precision", "fp32")
    assert r.returncode == 0, r.stderr
    info = probe_video(out)
    assert (info.width, info.height) == (510, 382) and info.frame_count >= 1
    frame = next(iter_frames(out)).astype(np.float32)
    photo = load_image(PORTRAIT)[:382, :510].astype(np.float32)
    assert np.abs(frame[:, :60] - photo[:, :60]).mean() < 2.5       # far from the face: the photo itself


def test_live_fits_a_photo_of_another_shape_into_the_recording():
    """live --paste-back records at the first photo's size; n/p to a photo of another shape letterboxes it."""
    from fomm_core.live.outputs import letterbox
    tall = np.full((300, 100, 3), 200, np.uint8)
    fitted = letterbox(tall, (510, 382))
    assert fitted.shape == (382, 510, 3)
    lit = np.argwhere(fitted[:, :, 0] > 0)
    (top, left), (bottom, right) = lit.min(axis=0), lit.max(axis=0)
    assert (top, bottom) == (0, 381) and abs((right - left + 1) - 382 / 3) <= 1      # aspect kept
    assert abs(left - (510 - (right + 1))) <= 1                                      # centred
    same = np.zeros((382, 510, 3), np.uint8)
    assert letterbox(same, (510, 382)) is same
