"""Our LivePortrait networks and keypoint maths against the original code (../shared/reference/liveportrait), on
the same seeded random weights, CPU float32.

The reference networks are built from the original's models.yaml and given random weights (see `randomise`),
saved as the published files hold them (M's keys under `detector.`, G's convs in spectral norm with converged
u and v) and loaded into ours through fomm_core.model.liveportrait.loading. The original's wrapper methods
(get_kp_info, transform_keypoint, stitching, warp_decode) are taken from its source alone, since its module
imports OpenCV and rich at the top, which these methods do not use; the per-frame steps of its pipeline for a
source image and a driving video are restated in `reference_keypoints`, with its defaults.
"""
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
np = pytest.importorskip("numpy", reason="numpy is not installed")

from fomm_core.errors import FommError  # noqa: E402
from fomm_core.model.liveportrait import motion  # noqa: E402
from fomm_core.model.liveportrait.config import model_params  # noqa: E402
from fomm_core.model.liveportrait.loading import load_networks  # noqa: E402
from liveportrait_oracle import (driving_frames, load_reference, make_wrapper, published_states,  # noqa: E402
                                 reference_keypoints, reference_template, seeded_networks, smooth_images,
                                 source_picture, worst)

TOL = 1e-4
RENDERED = (7,)  # the last of 8 driving frames rendered whole (256 px in, 512 out): the rest is the keypoints only


@pytest.fixture(scope="module")
def ref():
    return load_reference()


@pytest.fixture(scope="module")
def pair(ref):
    theirs = seeded_networks(ref)
    states = published_states(theirs)
    assert "detector.fc_kp.weight" in states["motion_extractor"]
    assert "G_middle_0.conv_0.weight_orig" in states["spade_generator"]
    ours = load_networks(states)
    return theirs, ours, states


@pytest.fixture(scope="module")
def wrapper(ref, pair):
    return make_wrapper(ref, pair[0])


# ----------------------------------------------------------------------------------------------------------------
# Each network


def test_each_network_equals_the_original(pair):
    theirs, ours, _ = pair
    image = smooth_images(2, 64, seed=1)
    with torch.no_grad():
        f_t, f_o = theirs["appearance_feature_extractor"](image), ours["appearance_feature_extractor"](image)
        assert f_o.shape == (2, 32, 16, 16, 16) and worst(f_t, f_o) < TOL and f_t.std() > 0.1

        m_t, m_o = theirs["motion_extractor"](image), ours["motion_extractor"](image)
        assert set(m_o) == {"pitch", "yaw", "roll", "t", "exp", "scale", "kp"}
        for key in m_t:
            assert m_o[key].shape == m_t[key].shape and worst(m_t[key], m_o[key]) < TOL, key
        assert m_t["yaw"].std() > 1.0 and (m_t["kp"][0] - m_t["kp"][1]).abs().max() > 0.01

        # W at the smallest volume its 5-level hourglass takes (32x32), G at 16x16 (a 128-px frame)
        volume = theirs["appearance_feature_extractor"](smooth_images(1, 128, seed=2))
        kp_s = 0.6 * torch.rand(1, 21, 3, generator=torch.Generator().manual_seed(3)) - 0.3
        kp_d = kp_s + 0.1 * torch.randn(1, 21, 3, generator=torch.Generator().manual_seed(4))
        w_t = theirs["warping_module"](volume, kp_driving=kp_d, kp_source=kp_s)
        w_o = ours["warping_module"](volume, kp_d, kp_s)
        for key in ("out", "deformation", "occlusion_map"):
            assert worst(w_t[key], w_o[key]) < TOL, key
        occlusion = w_t["occlusion_map"]
        assert occlusion.std() > 0.05 and 0.05 < occlusion.mean() < 0.95

        features = w_t["out"][:, :, :16, :16]
        g_t, g_o = theirs["spade_generator"](features), ours["spade_generator"](features)
        assert g_o.shape == (1, 3, 128, 128) and worst(g_t, g_o) < TOL
        assert g_t.std() > 0.05 and ((g_t < 0.01) | (g_t > 0.99)).float().mean() < 0.2  # a picture, not saturated

        for part in ("stitching", "lip", "eye"):
            net_t = theirs["stitching_retargeting_module"][part]
            x = torch.randn(3, net_t.mlp[0].in_features, generator=torch.Generator().manual_seed(5))
            out_t = net_t(x)
            assert worst(out_t, getattr(ours["stitching_retargeting_module"], part)(x)) < TOL and out_t.std() > 0.01


def test_our_sizes_are_the_originals(ref, pair):
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return list(value) if isinstance(value, tuple) else value
    ours = model_params()
    for name in ("appearance_feature_extractor", "warping_module", "spade_generator", "stitching_retargeting_module"):
        assert plain(ours[name]) == ref.params[f"{name}_params"], name
    assert ref.params["motion_extractor_params"] == {"num_kp": ours["motion_extractor"]["num_kp"],
                                                     "backbone": "convnextv2_tiny"}
    assert list(ours["motion_extractor"]["depths"]) == pair[0]["motion_extractor"].detector.depths


def test_spectral_norm_is_folded_as_torch_evaluates_it(pair):
    theirs, ours, _ = pair
    conv_t = theirs["spade_generator"].up_1.conv_s
    with torch.no_grad():
        conv_t(torch.zeros(1, 256, 2, 2))  # the hook sets `weight` from weight_orig, u and v
        assert worst(conv_t.weight, ours["spade_generator"].up_1.conv_s.weight) < 1e-6
    assert "up_1.conv_s.weight" in ours["spade_generator"].state_dict()


# ----------------------------------------------------------------------------------------------------------------
# Keypoint and head-pose maths


def test_pose_bins_rotations_and_eq2_equal_the_original(ref, wrapper, pair):
    camera = ref.mods["camera"]
    gen = torch.Generator().manual_seed(6)
    logits = 4 * torch.randn(5, 66, generator=gen)
    assert worst(camera.headpose_pred_to_degree(logits), motion.bins_to_degrees(logits)) < 1e-5
    angles = [180 * torch.rand(5, 1, generator=gen) - 90 for _ in range(3)]
    assert worst(camera.get_rotation_matrix(*angles), motion.rotation_matrix(*angles)) < 1e-6
    rotations = motion.rotation_matrix(*angles)
    assert worst(rotations @ rotations.transpose(1, 2), torch.eye(3).expand(5, 3, 3)) < 1e-5

    image = smooth_images(2, 64, seed=7)
    info_t = wrapper.get_kp_info(image)
    with torch.no_grad():
        info_o = motion.kp_info(pair[1]["motion_extractor"](image))
    for key in info_t:
        assert info_o[key].shape == info_t[key].shape and worst(info_t[key], info_o[key]) < TOL, key
    assert worst(wrapper.transform_keypoint(info_t), motion.transform_keypoint(info_t)) < 1e-5

    kp_s, kp_d = (0.3 * torch.randn(2, 21, 3, generator=gen) for _ in range(2))
    with torch.no_grad():
        stitched = motion.stitch(pair[1]["stitching_retargeting_module"].stitching, kp_s, kp_d)
    assert worst(wrapper.stitching(kp_s, kp_d), stitched) < 1e-5 and worst(stitched, kp_d) > 1e-3


def test_hull_volume_equals_scipys():
    spatial = pytest.importorskip("scipy.spatial", reason="scipy is what the original measures hulls with")
    ConvexHull = spatial.ConvexHull
    gen = np.random.default_rng(8)
    for points in (gen.normal(size=(21, 3)), 0.3 * gen.random((21, 3)) - 0.1, gen.normal(size=(4, 3))):
        assert motion.hull_volume(points) == pytest.approx(ConvexHull(points).volume, rel=1e-9)
    assert motion.hull_volume(gen.normal(size=(3, 3))) == 0.0


# ----------------------------------------------------------------------------------------------------------------
# Whole frames: a source image driven by a video, as the original pipeline does it by default




@pytest.fixture(scope="module")
def driven(ref, wrapper, pair):
    """One source and N_FRAMES driving frames read by both M: (reference template, our kp_infos)."""
    ours = pair[1]
    source, frames = source_picture(), driving_frames()
    reference = reference_template(ref, wrapper, source, frames)
    with torch.no_grad():
        source_info = motion.kp_info(ours["motion_extractor"](source))
        # one frame at a time as the original: a batch of 8 moves the keypoints by ~3e-7, which these random
        # W and G amplify about 1000 times (3e-4 in the frame)
        infos = [motion.kp_info(ours["motion_extractor"](frame[None])) for frame in frames]
    return source, reference, source_info, infos


def test_whole_frames_equal_the_original(ref, wrapper, pair, driven):
    ours = pair[1]
    source, (x_s_info, x_s_t, template), source_info, infos = driven
    kps_t = reference_keypoints(ref, wrapper, x_s_info, x_s_t, template)
    with torch.no_grad():
        relative = motion.RelativeMotion(source_info, stitching=ours["stitching_retargeting_module"].stitching)
        kps_o = [relative(info) for info in infos]
    assert worst(x_s_t, relative.x_s) < TOL
    assert max(worst(a, b) for a, b in zip(kps_t, kps_o)) < TOL
    assert worst(kps_t[-1], x_s_t) > 0.1  # the frames move the keypoints

    f_s_t = wrapper.extract_feature_3d(source)
    with torch.no_grad():
        f_s_o = ours["appearance_feature_extractor"](source)
    assert worst(f_s_t, f_s_o) < TOL
    for i in RENDERED:
        frame_t = wrapper.warp_decode(f_s_t, x_s_t, kps_t[i])["out"]
        with torch.no_grad():
            frame_o = ours["spade_generator"](ours["warping_module"](f_s_o, kps_o[i], relative.x_s)["out"])
        assert frame_o.shape == (1, 3, 512, 512)
        assert worst(frame_t, frame_o) < TOL, i
        assert frame_t.std() > 0.05


@pytest.mark.parametrize("option", [dict(driving_option="pose-friendly"), dict(flag_stitching=False),
                                    dict(driving_multiplier=1.5)])
def test_relative_motion_options_equal_the_original(ref, wrapper, pair, driven, option):
    _, (x_s_info, x_s_t, template), source_info, infos = driven
    kps_t = reference_keypoints(ref, wrapper, x_s_info, x_s_t, template, **option)
    stitching = pair[1]["stitching_retargeting_module"].stitching if option.get("flag_stitching", True) else None
    with torch.no_grad():
        relative = motion.RelativeMotion(
            source_info, stitching=stitching, multiplier=option.get("driving_multiplier", 1.0),
            expression_friendly=option.get("driving_option", "expression-friendly") == "expression-friendly")
        kps_o = [relative(info) for info in infos]
        # all frames at once give the same keypoints as one by one
        batched = motion.RelativeMotion(source_info, stitching=stitching, multiplier=relative.multiplier,
                                        expression_friendly=relative.expression_friendly)
        together = batched({key: torch.cat([info[key] for info in infos]) for key in infos[0]})
    assert max(worst(a, b) for a, b in zip(kps_t, kps_o)) < TOL
    assert worst(torch.cat(kps_o), together) < 1e-6


# ----------------------------------------------------------------------------------------------------------------
# Loading


def test_published_state_dicts_load_strictly_and_only_them(pair):
    _, _, states = pair
    broken = dict(states, motion_extractor=dict(states["motion_extractor"]))
    del broken["motion_extractor"]["detector.fc_exp.bias"]
    with pytest.raises(FommError) as err:
        load_networks(broken, networks=pair[1])
    message = str(err.value)
    assert "base_models/motion_extractor.pth" in message and "detector.fc_exp.bias" in message
    assert "\n" not in message and message.count(". ") == 0 and message.endswith(".")

    generator = {k: v for k, v in states["spade_generator"].items() if k != "G_middle_2.conv_1.weight_v"}
    with pytest.raises(FommError, match=r"spade_generator\.pth lacks the tensor G_middle_2\.conv_1\.weight_v"):
        load_networks(dict(states, spade_generator=generator), networks=pair[1])

    stitching = dict(states["stitching_retargeting_module"])
    stitching["retarget_eye"] = dict(stitching["retarget_eye"], **{"mlp.12.weight": torch.zeros(1)})
    with pytest.raises(FommError, match=r"stitching_retargeting_module\.pth holds a tensor .*retarget_eye/mlp\.12"):
        load_networks(dict(states, stitching_retargeting_module=stitching), networks=pair[1])

    # batch norms' counters are not needed (evaluation does not read them)
    uncounted = {k: v for k, v in states["appearance_feature_extractor"].items() if "num_batches" not in k}
    load_networks(dict(states, appearance_feature_extractor=uncounted), networks=pair[1])

    with pytest.raises(FommError, match="lacks base_models/warping_module.pth"):
        load_networks({k: v for k, v in states.items() if k != "warping_module"})
