"""fomm_core.media.images: every kind of source image becomes a square RGB of the model's size."""
import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from fomm_core.errors import FommError  # noqa: E402
from fomm_core.media.images import (center_square, frames_to_tensor, load_image, square_resize,  # noqa: E402
                              tensor_to_frames)


def _write(path, arr):
    assert cv2.imwrite(str(path), arr)
    return path


def test_jpeg_png_rgb_order(tmp_path):
    bgr = np.zeros((20, 30, 3), np.uint8)
    bgr[:, :, 2] = 200  # red in OpenCV's BGR
    for name in ("red.png", "red.jpg"):
        img = load_image(_write(tmp_path / name, bgr))
        assert img.shape == (20, 30, 3) and img.dtype == np.uint8
        assert img[10, 15, 0] > 180 and img[10, 15, 2] < 20


def test_rgba_is_composited_on_white(tmp_path):
    bgra = np.zeros((8, 8, 4), np.uint8)
    bgra[:, :4, 3] = 255  # left half opaque black, right half transparent
    img = load_image(_write(tmp_path / "cut.png", bgra))
    assert img.shape == (8, 8, 3)
    assert (img[:, :4] == 0).all() and (img[:, 4:] == 255).all()


def test_grayscale_and_16_bit(tmp_path):
    gray = load_image(_write(tmp_path / "g.png", np.full((5, 7), 77, np.uint8)))
    assert gray.shape == (5, 7, 3) and (gray == 77).all()
    deep = load_image(_write(tmp_path / "d.png", np.full((4, 4, 3), 65535, np.uint16)))
    assert deep.dtype == np.uint8 and (deep == 255).all()


def test_non_ascii_path(tmp_path):
    folder = tmp_path / "фото 写真"
    folder.mkdir()
    img = load_image(_save_bytes(folder / "x.png", np.full((3, 3, 3), 9, np.uint8)))
    assert (img == 9).all()


def _save_bytes(path, arr):
    ok, data = cv2.imencode(".png", arr)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def test_not_an_image_missing_and_folder(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    with pytest.raises(FommError, match="not an image"):
        load_image(text)
    with pytest.raises(FommError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(FommError, match="not a file"):
        load_image(tmp_path)


def test_center_square_and_resize_both_ways():
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 255  # the centre square is all white
    sq = center_square(wide)
    assert sq.shape == (10, 10, 3) and (sq == 255).all()
    assert square_resize(wide, 64).shape == (64, 64, 3)
    tall = np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)
    small = square_resize(tall, 50)
    assert small.shape == (50, 50, 3)
    # area averaging: the mean brightness survives the shrink
    assert abs(small.mean() - center_square(tall).mean()) < 2


def test_tensor_round_trip():
    torch = pytest.importorskip("torch")
    frames = [np.random.default_rng(i).integers(0, 256, (6, 5, 3), dtype=np.uint8) for i in range(3)]
    t = frames_to_tensor(frames)
    assert t.shape == (3, 3, 6, 5) and t.dtype == torch.float32
    assert 0 <= float(t.min()) and float(t.max()) <= 1
    back = tensor_to_frames(t)
    assert all((a == b).all() for a, b in zip(frames, back))
