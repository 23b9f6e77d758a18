"""Our TPSMM networks against the original code (../shared/reference/tpsmm), on the same seeded random weights.

The original imports torchvision's resnet18; tests/tpsmm_oracle.py rebuilds it the way torchvision does, apart
from our ResNet-18, so that the ResNet is compared too. Weights: fomm_core.bench.weights.randomise_tpsmm with stress
and contrast x30 (keypoints spread over the frame, a picture spanning 0..1), so that every difference shows.
"""
import pytest

pytestmark = pytest.mark.slow(45)  # seconds on 2 cores: run among the first (conftest.py)

torch = pytest.importorskip("torch", reason="torch is not installed")

import tpsmm_oracle  # noqa: E402
from fomm_core.bench.weights import randomise_tpsmm  # noqa: E402
from fomm_core.model.config import build_networks, load_config  # noqa: E402
from fomm_core.model.tpsmm.resnet import ResNet18  # noqa: E402
from fomm_core.bench.reference import (load_tpsmm_reference, tpsmm_reference_dir,  # noqa: E402
                                       tpsmm_reference_networks)

TOL = 1e-4
CONFIGS = ("tpsmm-vox-256", "tpsmm-ted-384")


@pytest.fixture(scope="module")
def ref():
    found = load_tpsmm_reference(resnet18=tpsmm_oracle.resnet18)
    if found is None:
        pytest.skip(f"the original TPSMM code is not at {tpsmm_reference_dir()} (set FOMM_TPSMM_REFERENCE)")
    return found


_PAIRS = {}


def pair(ref, name, seed=0):
    """(reference networks, ours) with the reference's seeded random weights loaded strictly into ours, eval mode
    (built once per config and seed: no test changes them)."""
    if (id(ref), name, seed) not in _PAIRS:
        _PAIRS[(id(ref), name, seed)] = _pair(ref, name, seed)
    return _PAIRS[(id(ref), name, seed)]


def _pair(ref, name, seed):
    config = load_config(name)
    torch.manual_seed(seed)
    theirs = tpsmm_reference_networks(ref, config)
    randomise_tpsmm(theirs, seed=seed, stress=True, contrast=30)
    ours = build_networks(config)
    for key, net in theirs.items():
        ours[key].load_state_dict(net.state_dict(), strict=True)
    for net in list(theirs.values()) + list(ours.values()):
        net.eval()
    return theirs, ours


def images(size, n, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=gen)


def worst(a, b) -> float:
    return (a - b).abs().max().item()


def test_resnet18_has_torchvisions_names_shapes_and_maths():
    oracle, ours = tpsmm_oracle.resnet18(num_classes=100), ResNet18(num_outputs=100)
    want = {k: tuple(v.shape) for k, v in oracle.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == want
    assert len(want) == 122 and "layer3.0.downsample.1.running_var" in want and "fc.weight" in want
    randomise_tpsmm({"a": oracle})
    ours.load_state_dict(oracle.state_dict(), strict=True)
    x = images(96, 2, seed=3)
    with torch.no_grad():
        assert worst(oracle.eval()(x), ours.eval()(x)) < 1e-5


@pytest.mark.parametrize("name", CONFIGS)
def test_state_dicts_load_strictly_both_ways(ref, name):
    config = load_config(name)
    ours, theirs = build_networks(config), tpsmm_reference_networks(ref, config)
    for key in ours:
        theirs[key].load_state_dict(ours[key].state_dict(), strict=True)
        ours[key].load_state_dict(theirs[key].state_dict(), strict=True)


@pytest.mark.parametrize("name", CONFIGS)
def test_networks_equal_the_original(ref, name):
    theirs, ours = pair(ref, name)
    # 256 px for both configs: the networks are the same maths at any side they halve evenly, and TED's 384 costs
    # 2.25 times the work (TED at its own size: test_tpsmm_cli.py)
    size = 256
    source, driving = images(size, 1, seed=1), images(size, 1, seed=2)
    with torch.no_grad():
        kp = {who: (nets["kp_detector"](source), nets["kp_detector"](driving)) for who, nets in
              (("theirs", theirs), ("ours", ours))}
        assert worst(kp["theirs"][1]["fg_kp"], kp["ours"][1]["fg_kp"]) < TOL
        assert kp["theirs"][1]["fg_kp"].std() > 0.2  # spread over the frame: the TPS fits are not degenerate
        assert worst(kp["theirs"][0]["fg_kp"], kp["ours"][0]["fg_kp"]) < TOL
        kp_source, kp_driving = kp["theirs"]
        motion_t = theirs["dense_motion_network"](source_image=source, kp_driving=kp_driving, kp_source=kp_source,
                                                  bg_param=None, dropout_flag=False)
        motion_o = ours["dense_motion_network"](source, kp_driving, kp_source)
        for key in ("deformation", "contribution_maps", "deformed_source"):
            assert worst(motion_t[key], motion_o[key]) < TOL, key
        assert len(motion_o["occlusion_map"]) == 4
        for a, b in zip(motion_t["occlusion_map"], motion_o["occlusion_map"]):
            assert a.shape == b.shape and worst(a, b) < TOL
        out_t = theirs["inpainting_network"](source, motion_t)
        out_o = ours["inpainting_network"](source, motion_o)
        assert worst(out_t["prediction"], out_o["prediction"]) < TOL
        assert out_t["prediction"].std() > 0.1  # a picture, not a flat grey
        avd_t = theirs["avd_network"](kp_source, kp_driving)["fg_kp"]
        assert worst(avd_t, ours["avd_network"](kp_source, kp_driving)["fg_kp"]) < TOL
        bg = theirs["bg_predictor"](source, driving)
        assert worst(bg, ours["bg_predictor"](source, driving)) < TOL


def test_background_motion_moves_the_identity_warp_as_the_original(ref):
    theirs, ours = pair(ref, "tpsmm-vox-256", seed=4)
    source, driving = images(256, 2, seed=5), images(256, 2, seed=6)
    bg = torch.eye(3).repeat(2, 1, 1)
    bg[:, :2, :] += 0.05 * torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        kp_s, kp_d = theirs["kp_detector"](source), theirs["kp_detector"](driving)
        a = theirs["dense_motion_network"](source_image=source, kp_driving=kp_d, kp_source=kp_s, bg_param=bg)
        b = ours["dense_motion_network"](source, kp_d, kp_s, bg_param=bg)
    assert worst(a["deformation"], b["deformation"]) < TOL


# -- the engine, frame by frame, in the demo's three modes ---------------------------------------------------------

FRAMES = 2


def face_clip(size):
    from fomm_core.inference.calibration import face_pairs
    return face_pairs(size, seed=2, frames=FRAMES, synthetic=0)[0]


_ORIGINAL = {}


def original_of(ref, name, size, mode):
    """(source, driving, the original's frames one frame a call) for a config at `size` in `mode`, made once per
    module: both tests below compare with them."""
    if (id(ref), name, size, mode) not in _ORIGINAL:
        source, driving = face_clip(size)
        expected = original_frames(ref, pair(ref, name)[0], source, driving, mode)
        _ORIGINAL[(id(ref), name, size, mode)] = source, driving, expected
    return _ORIGINAL[(id(ref), name, size, mode)]


def original_frames(ref, nets, source, driving, mode, batch=1):
    """The original demo's make_animation loop (its relative_kp, its AVD call), `batch` frames per call."""
    mode = {"absolute": "standard"}.get(mode, mode)
    out = []
    with torch.no_grad():
        kp_source_1 = nets["kp_detector"](source)
        initial = nets["kp_detector"](driving[:1])
        for i in range(0, driving.shape[0], batch):
            frames = driving[i:i + batch]
            b = frames.shape[0]
            kp_source = {"fg_kp": kp_source_1["fg_kp"].expand(b, -1, -1)}
            kp = nets["kp_detector"](frames)
            if mode == "relative":
                kp = ref.relative_kp(kp_source=kp_source, kp_driving=kp, kp_driving_initial=initial)
            elif mode == "avd":
                kp = nets["avd_network"](kp_source, kp)
            images = source.expand(b, -1, -1, -1)
            motion = nets["dense_motion_network"](source_image=images, kp_driving=kp, kp_source=kp_source,
                                                  bg_param=None, dropout_flag=False)
            out.append(nets["inpainting_network"](images, motion)["prediction"])
    return torch.cat(out)


def ours(nets, source, driving, mode, batch, fuse):
    from fomm_core.inference.tpsmm import TpsAnimator
    animator = TpsAnimator(nets, precision="fp32", mode=mode, fuse=fuse)
    animator.set_source(source)
    return torch.cat([animator.animate(driving[i:i + batch]) for i in range(0, driving.shape[0], batch)])


# A mode is the keypoints' transformation, the same code at any frame size: the vox networks run every mode at 128
# px (a quarter of 256's work), the ted networks one mode at 256 (their shapes, at their own 384, are compared in
# test_networks_equal_the_original).
MODES_AT = 128


@pytest.mark.parametrize("name, size, mode", [("tpsmm-vox-256", MODES_AT, "relative"),
                                              ("tpsmm-vox-256", MODES_AT, "absolute"),
                                              ("tpsmm-vox-256", MODES_AT, "avd"), ("tpsmm-ted-384", 256, "avd")])
def test_engine_equals_the_original_demo_frame_by_frame(ref, name, size, mode):
    source, driving, expected = original_of(ref, name, size, mode)
    assert expected.std() > 0.1
    got = ours(pair(ref, name)[1], source, driving, mode, batch=1, fuse=False)
    assert worst(got, expected) < TOL


@pytest.mark.parametrize("mode", ["relative", "absolute", "avd"])
def test_batched_fused_path_is_within_the_originals_own_batching_noise(ref, mode):
    """Four frames a call and folded, channels-last networks round differently from one frame a call; the TPS fits
    amplify such rounding, in the original too. So the bar is the original's own difference between batch 4 and
    batch 1 (x2), and never looser than TOL."""
    theirs, nets = pair(ref, "tpsmm-vox-256")
    source, driving, expected = original_of(ref, "tpsmm-vox-256", MODES_AT, mode)
    own_noise = worst(original_frames(ref, theirs, source, driving, mode, batch=4), expected)
    got = ours(nets, source, driving, mode, batch=4, fuse=True)
    assert worst(got, expected) <= max(TOL, 2 * own_noise)
