"""LivePortrait as a model family: a set of five files loaded by load_model, its engine's frames against the
original pipeline's, animate_video end to end at 512 px, and one sentence for a set that is not whole.

The set is the original's networks with seeded random weights (tests/liveportrait_oracle.py), saved once per
module as the published folder holds them. Frames cost seconds each on a CPU, so few are rendered.
"""
import os
import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.slow(35)  # seconds on 2 cores: run among the first (conftest.py)

torch = pytest.importorskip("torch", reason="torch is not installed")
cv2 = pytest.importorskip("cv2", reason="OpenCV reads and writes the test media")

from fomm_core.errors import FommError  # noqa: E402
from fomm_core.inference.factory import make_animator  # noqa: E402
from fomm_core.inference.pipeline import animate_video  # noqa: E402
from fomm_core.media.video import iter_frames, probe_video  # noqa: E402
from fomm_core.model.checkpoint import load_model  # noqa: E402
from fomm_core.model.liveportrait.loading import PUBLISHED_FILES  # noqa: E402
from liveportrait_oracle import (driving_frames, load_reference, make_wrapper,  # noqa: E402
                                 reference_keypoints, reference_template, seeded_networks, seeded_set,
                                 source_picture, worst)

TOL = 1e-4
RENDERED = 2  # driving frames rendered after the reference frame, by both pipelines
SIDE = 128    # the engine's frames: any side W's hourglass takes (the networks are compared at 256 elsewhere)


@pytest.fixture(scope="module")
def ref():
    return load_reference()


@pytest.fixture(scope="module")
def lp_set(ref):
    """(the reference networks, the folder of the five files in the published layout: the run's, read only)."""
    return seeded_networks(ref), seeded_set(ref)


@pytest.fixture(scope="module")
def model(lp_set):
    return load_model(lp_set[1])


def variant(folder, into, replace=None, drop=None):
    """A flat copy of the set (hard links where the file system allows: no copying), with one file dropped or
    replaced by another's bytes."""
    into.mkdir()
    for name, rel in PUBLISHED_FILES.items():
        target = into / os.path.basename(rel)
        if name == drop:
            continue
        if replace and name == replace[0]:
            replace[1](target)
        else:
            try:
                os.link(folder / rel, target)
            except OSError:  # the run's cache on another file system
                shutil.copyfile(folder / rel, target)
    return into


def test_load_model_reads_the_published_folder_and_a_flat_one_strictly(lp_set, model, tmp_path):
    theirs, folder = lp_set
    assert (model.family, model.config_name, model.size) == ("liveportrait", "liveportrait", 256)
    assert set(model.networks) == set(PUBLISHED_FILES)
    with torch.no_grad():
        ours_w = model.networks["motion_extractor"].state_dict()["detector.fc_kp.weight"]
        assert torch.equal(ours_w, theirs["motion_extractor"].state_dict()["detector.fc_kp.weight"])
    flat = load_model(variant(folder, tmp_path / "flat"))
    a = flat.networks["spade_generator"].state_dict()
    assert all(torch.equal(v, model.networks["spade_generator"].state_dict()[k]) for k, v in a.items())


def test_engine_frames_equal_the_original_pipeline(ref, lp_set, model):
    """Relative motion with stitching on, the original's defaults: frames 1.. of a driving video after frame 0.
    At 128 px, a quarter of the work: the networks, frame by frame at the published 256, are compared in
    test_liveportrait_equivalence.py; here it is the engine's pipeline around them."""
    theirs = lp_set[0]
    w = make_wrapper(ref, theirs)
    source, frames = source_picture(SIDE), driving_frames(n=1 + RENDERED, size=SIDE)
    x_s_info, x_s, template = reference_template(ref, w, source, frames)
    kps = reference_keypoints(ref, w, x_s_info, x_s, template)
    f_s = w.extract_feature_3d(source)
    expected = torch.cat([w.warp_decode(f_s, x_s, kp)["out"] for kp in kps[1:]])

    animator = make_animator(model, precision="fp32")
    assert animator.output_size(256) == 512 and "relative motion" in animator.path
    animator.set_source(source)
    animator.set_reference(frames[:1])
    out = animator.animate(frames[1:])
    assert out.shape == (RENDERED, 3, 2 * SIDE, 2 * SIDE)
    print(f"largest difference from the original: {worst(expected, out):.2e}")
    assert worst(expected, out) < TOL
    assert worst(out[0], out[1]) > 1e-3 and expected.std() > 0.05  # the frames move and are not flat

    with pytest.raises(FommError, match="relative motion only") as err:
        make_animator(model, precision="fp32", mode="absolute")
    assert "\n" not in str(err.value)


def _photo(path):
    img = np.zeros((120, 160, 3), np.uint8)
    cv2.circle(img, (80, 60), 40, (40, 160, 220), -1)
    cv2.imwrite(str(path), img)
    return path


def test_animate_video_writes_512_px_frames_with_audio(model, clip_factory, tmp_path):
    photo = _photo(tmp_path / "photo.png")
    clip = clip_factory("drv.mp4", frames=2, size=(96, 72), fps=20, audio=True)
    animator = make_animator(model, precision="fp32")
    out = animate_video(photo, clip, tmp_path / "out.mp4", animator, size=256)
    info = probe_video(out.path)
    assert (info.width, info.height, info.has_audio, out.frames) == (512, 512, True, 2)
    assert len(list(iter_frames(out.path))) == 2
    # pasted back into the photo: through the commands and the page (test_liveportrait_e2e.py, test_ui_exposed.py)


def _html(path):
    path.write_text("<!DOCTYPE html><html><body>quota exceeded</body></html>")


@pytest.mark.parametrize("case, expected", [
    (dict(drop="warping_module"), r"lacks base_models/warping_module\.pth \(its warping module\)"),
    (dict(replace=("warping_module", None)), r"warping_module\.pth lacks the tensor"),
    (dict(replace=("spade_generator", _html)), r"spade_generator\.pth is a web page"),
])
def test_a_set_not_whole_is_one_sentence_naming_the_file(lp_set, tmp_path, case, expected):
    folder = lp_set[1]
    if case.get("replace") and case["replace"][1] is None:  # another network's file under this one's name
        case = dict(replace=(case["replace"][0],
                             lambda target: shutil.copyfile(folder / PUBLISHED_FILES["appearance_feature_extractor"],
                                                            target)))
    broken = variant(folder, tmp_path / "broken", **case)
    with pytest.raises(FommError, match=expected) as err:
        load_model(broken)
    message = str(err.value)
    assert "\n" not in message and message.endswith(".")


def test_a_folder_that_is_no_set_keeps_its_sentence(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing")
    with pytest.raises(FommError, match="is a folder, not a checkpoint file"):
        load_model(tmp_path)
