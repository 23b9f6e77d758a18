"""Synthetic clips: deterministic per seed, moving, face-like parts that change; pair datasets."""
import numpy as np
import pytest

from fomm_core.train.synthetic import folder_pairs, make_clip, synthetic_pairs


def test_same_seed_same_clip_other_seed_other_clip():
    a, b, c = make_clip(7, 8, 64), make_clip(7, 8, 64), make_clip(8, 8, 64)
    assert a.dtype == np.uint8 and a.shape == (8, 64, 64, 3)
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 10


def test_clip_moves_and_is_not_flat():
    clip = make_clip(3, 32, 64).astype(np.float32)
    assert clip.std() > 20                                   # textured, not a flat colour
    change = np.abs(np.diff(clip, axis=0)).mean(axis=(1, 2, 3))
    assert (change > 0.2).mean() > 0.8                       # nearly every frame moves
    # the background corners barely change while the centre (the face) does
    corner = np.abs(clip[:, :6, :6] - clip[0, :6, :6]).mean()
    centre = np.abs(clip[:, 24:40, 24:40] - clip[0, 24:40, 24:40]).mean()
    assert centre > 2 * corner


def test_synthetic_pairs_are_reproducible_frames_of_one_clip():
    data = synthetic_pairs(size=32, num_clips=3, frames=8, seed=5)
    src, drv = data[4]
    assert src.shape == (3, 32, 32) and drv.shape == (3, 32, 32)
    assert 0 <= float(src.min()) and float(src.max()) <= 1
    again = synthetic_pairs(size=32, num_clips=3, frames=8, seed=5)[4]
    assert all((x == y).all() for x, y in zip((src, drv), again))
    assert not (src == drv).all()


def test_folder_of_videos_gives_pairs(tmp_path, clip_factory):
    clip_factory("a.mp4", frames=10, size=(96, 64), audio=False)
    clip_factory("b.mp4", frames=6, size=(64, 64), audio=True)
    data = folder_pairs(tmp_path, size=32, seed=0)
    src, drv = data[0]
    assert src.shape == (3, 32, 32) and drv.shape == (3, 32, 32)


def test_empty_folder_is_one_sentence(tmp_path):
    from fomm_core.errors import FommError
    with pytest.raises(FommError, match="no readable video"):
        folder_pairs(tmp_path, size=32)


def test_training_reads_a_phone_clip_as_shown(tmp_path, clip_factory, ffmpeg_exe):
    """Video files for training are read as every video file is (`iter_frames`): a rotation tag is applied."""
    import subprocess

    from fomm_core.train.synthetic import read_video_frames
    plain = clip_factory("plain.mp4", frames=6, size=(96, 64), audio=False)
    turned = tmp_path / "turned.mp4"
    subprocess.run([ffmpeg_exe, "-y", "-v", "error", "-display_rotation", "90", "-i", str(plain), "-c", "copy",
                    str(turned)], check=True)
    upright, shown = read_video_frames(plain, 32).astype(int), read_video_frames(turned, 32, max_frames=4).astype(int)
    assert upright.shape == (6, 32, 32, 3) and shown.shape == (4, 32, 32, 3)

    def gap(a, b):
        return float(np.abs(a - b).mean())
    as_turned = min(gap(np.rot90(upright[:4], k, axes=(1, 2)), shown) for k in (1, 3))
    # the pictures match once turned (up to scaling noise), and are far apart as stored
    assert as_turned < 30 < gap(upright[:4], shown), (as_turned, gap(upright[:4], shown))
