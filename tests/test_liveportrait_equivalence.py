"""Our LivePortrait networks and keypoint maths against the original code (../shared/reference/liveportrait), on
the same seeded random weights, CPU float32.

The reference networks are built from the original's models.yaml and given random weights (see `randomise`),
saved as the published files hold them (M's keys under `detector.`, G's convs in spectral norm with converged
u and v) and loaded into ours through fomm_core.model.liveportrait.loading. The original's wrapper methods
(get_kp_info, transform_keypoint, stitching, warp_decode) are taken from its source alone, since its module
imports OpenCV and rich at the top, which these methods do not use; the per-frame steps of its pipeline for a
source image and a driving video are restated in `reference_keypoints`, with its defaults.
"""
import ast
import contextlib
import importlib
import math
import os
import sys
import types
from pathlib import Path
from typing import Union

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
np = pytest.importorskip("numpy", reason="numpy is not installed")

from fomm_core.errors import FommError  # noqa: E402
from fomm_core.model.liveportrait import motion  # noqa: E402
from fomm_core.model.liveportrait.config import model_params  # noqa: E402
from fomm_core.model.liveportrait.loading import load_networks  # noqa: E402

TOL = 1e-4
MODULES = ("appearance_feature_extractor", "motion_extractor", "warping_network", "spade_generator",
           "stitching_retargeting_network", "util")
WRAPPER_METHODS = ("inference_ctx", "extract_feature_3d", "get_kp_info", "transform_keypoint", "stitch",
                   "stitching", "warp_decode")
N_FRAMES = 8
RENDERED = (7,)  # the last of 8 driving frames rendered whole (256 px in, 512 out): the rest is the keypoints only


def reference_dir() -> Path:
    given = os.environ.get("FOMM_LIVEPORTRAIT_REFERENCE")
    return Path(given) if given else Path(__file__).resolve().parents[2] / "shared" / "reference" / "liveportrait"


def _import_reference(folder: Path) -> dict:
    """The original's modules, imported as the `src` package it is, then taken out of sys.modules again."""
    def src_modules():
        return [n for n in sys.modules if n == "src" or n.startswith("src.")]
    saved = {n: sys.modules.pop(n) for n in src_modules()}
    sys.path.insert(0, str(folder))
    try:
        found = {m: importlib.import_module(f"src.modules.{m}") for m in MODULES}
        found["camera"] = importlib.import_module("src.utils.camera")
    finally:
        sys.path.remove(str(folder))
        for n in src_modules():
            sys.modules.pop(n, None)
        sys.modules.update(saved)
    return found


def _functions(path: Path, names, namespace: dict) -> dict:
    """Top-level or method definitions called `names` in a source file, defined in `namespace`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name in names]
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(path), "exec"), namespace)
    return {name: namespace[name] for name in names}


def convex_hull():
    """scipy's ConvexHull, which the original's expression-friendly mode calls; without scipy, a stand-in that
    skips the test calling it."""
    try:
        from scipy.spatial import ConvexHull
    except ImportError:
        def ConvexHull(points):  # noqa: N802 - the name the original calls
            pytest.skip("scipy is not installed: the original measures keypoint hulls with it")
    return ConvexHull


@pytest.fixture(scope="module")
def ref():
    folder = reference_dir()
    if not (folder / "src" / "modules" / "spade_generator.py").is_file():
        pytest.skip(f"the original LivePortrait code is not at {folder} (set FOMM_LIVEPORTRAIT_REFERENCE)")
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the original's models.yaml")
    mods = _import_reference(folder)
    namespace = {"torch": torch, "np": np, "contextlib": contextlib, "Union": Union, "ConvexHull": convex_hull(),
                 "headpose_pred_to_degree": mods["camera"].headpose_pred_to_degree,
                 "get_rotation_matrix": mods["camera"].get_rotation_matrix}
    helpers = _functions(folder / "src" / "utils" / "helper.py",
                         ("tensor_to_numpy", "concat_feat", "calc_motion_multiplier"), namespace)
    wrapper = type("Wrapper", (), _functions(folder / "src" / "live_portrait_wrapper.py", WRAPPER_METHODS,
                                             namespace))
    params = yaml.safe_load((folder / "src" / "config" / "models.yaml").read_text())["model_params"]
    return types.SimpleNamespace(mods=mods, params=params, wrapper=wrapper, **helpers)


# ----------------------------------------------------------------------------------------------------------------
# Seeded random weights


def randomise(net, seed, heads=None):
    """Weights that keep activations at unit-ish variance, so that no output is flat or saturated.

    Each conv/linear weight (or spectral norm's weight_orig) ~ N(0, 2/fan_in) (He: variance kept through
    ReLUs), biases ~ N(0, 0.1^2); norms' weights ~ U(0.7, 1.3), biases ~ N(0, 0.1^2); batch norms' running means
    ~ N(0, 0.1^2) and variances ~ U(0.5, 1.5), so evaluation mode is not the identity; GRN's gamma and beta,
    zero at init (GRN would be the identity), ~ N(0, 0.3^2) and N(0, 0.1^2). heads: {parameter name: factor}
    rescales named parameters afterwards (M's heads, to outputs of a portrait's sizes).
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(net.named_parameters()) + list(net.named_buffers()):
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("weight_u", "weight_v", "num_batches_tracked"):
                continue
            if leaf == "running_var":
                value = 0.5 + torch.rand(tensor.shape, generator=gen)
            elif leaf == "weight" and tensor.dim() == 1:
                value = 0.7 + 0.6 * torch.rand(tensor.shape, generator=gen)
            elif leaf in ("weight", "weight_orig"):
                value = torch.randn(tensor.shape, generator=gen) * math.sqrt(2 / tensor[0].numel())
            else:
                value = torch.randn(tensor.shape, generator=gen) * (0.3 if leaf == "gamma" else 0.1)
            tensor.copy_(value)
        for name, factor in (heads or {}).items():
            tensor = dict(net.named_parameters())[name]
            tensor.copy_(tensor * factor[0] + factor[1])
    return net


def converge_spectral_norms(net, iterations=15):
    """Power iterations on every spectral norm's u and v, as training leaves them (random u, v could make the
    normalised weight anything)."""
    from torch.nn.utils.spectral_norm import SpectralNorm
    with torch.no_grad():
        for module in net.modules():
            for hook in module._forward_pre_hooks.values():
                if isinstance(hook, SpectralNorm):
                    for _ in range(iterations):
                        hook.compute_weight(module, do_power_iteration=True)
    return net


# M's heads -> a portrait's sizes: keypoints within the frame, a scale near 1, small expression and translation.
# (factor, offset) per parameter; the pose heads are set by `spread_poses`.
M_HEADS = {"detector.fc_kp.weight": (0.15, 0.0), "detector.fc_exp.weight": (0.02, 0.0),
           "detector.fc_exp.bias": (0.1, 0.0), "detector.fc_t.weight": (0.1, 0.0),
           "detector.fc_scale.weight": (0.05, 0.0), "detector.fc_scale.bias": (0.0, 1.0)}


def spread_poses(extractor, images, logit_std=1.0):
    """Pose heads that tell these images apart. M's pooled features of random weights are much the same for any
    picture, so random heads give every picture the same pose; here each head reads the features' deviation
    from their mean over `images`, scaled to logits of std `logit_std` across them (poses tens of degrees apart).
    """
    with torch.no_grad():
        features = extractor.detector.forward_features(images)                        # [N, 768]
        mean = features.mean(0)
        for angle in ("pitch", "yaw", "roll"):
            head = getattr(extractor.detector, f"fc_{angle}")
            head.weight.mul_(logit_std / ((features - mean) @ head.weight.t()).std())
            head.bias.copy_(-(mean @ head.weight.t()))
    return extractor


# G's last conv -> logits of about unit size into the sigmoid
G_HEADS = {"conv_img.0.weight": (0.1, 0.0)}


def reference_networks(ref, pictures, seed=0) -> dict:
    """The original's five networks with seeded random weights; M's poses spread over `pictures`."""
    m, p = ref.mods, ref.params
    stitching = {}
    for i, part in enumerate(("stitching", "lip", "eye")):
        net = m["stitching_retargeting_network"].StitchingRetargetingNetwork(
            **p["stitching_retargeting_module_params"][part])
        last = f"mlp.{len(net.mlp) - 1}"  # -> corrections of a few hundredths
        heads = {f"{last}.weight": (0.02, 0.0), f"{last}.bias": (0.1, 0.0)}
        stitching[part] = randomise(net, seed + 10 + i, heads).eval()
    return {
        "appearance_feature_extractor": randomise(m["appearance_feature_extractor"].AppearanceFeatureExtractor(
            **p["appearance_feature_extractor_params"]), seed).eval(),
        "motion_extractor": spread_poses(randomise(m["motion_extractor"].MotionExtractor(
            **p["motion_extractor_params"]), seed + 1, M_HEADS).eval(), pictures),
        "warping_module": randomise(m["warping_network"].WarpingNetwork(
            **p["warping_module_params"]), seed + 2).eval(),
        "spade_generator": converge_spectral_norms(randomise(m["spade_generator"].SPADEDecoder(
            **p["spade_generator_params"]), seed + 3, G_HEADS)).eval(),
        "stitching_retargeting_module": stitching,
    }


def published_states(theirs: dict) -> dict:
    """The reference's weights as the five published files hold them."""
    states = {name: net.state_dict() for name, net in theirs.items() if name != "stitching_retargeting_module"}
    parts = theirs["stitching_retargeting_module"]
    states["stitching_retargeting_module"] = {
        "retarget_shoulder": parts["stitching"].state_dict(), "retarget_mouth": parts["lip"].state_dict(),
        "retarget_eye": parts["eye"].state_dict()}
    return states


@pytest.fixture(scope="module")
def pair(ref):
    torch.manual_seed(0)
    theirs = reference_networks(ref, torch.cat([source_picture(), driving_frames()]))
    states = published_states(theirs)
    assert "detector.fc_kp.weight" in states["motion_extractor"]
    assert "G_middle_0.conv_0.weight_orig" in states["spade_generator"]
    ours = load_networks(states)
    return theirs, ours, states


@pytest.fixture(scope="module")
def wrapper(ref, pair):
    theirs = pair[0]
    w = ref.wrapper()
    w.inference_cfg = types.SimpleNamespace(flag_use_half_precision=False)
    w.device, w.compile = "cpu", False
    w.appearance_feature_extractor = theirs["appearance_feature_extractor"]
    w.motion_extractor = theirs["motion_extractor"]
    w.warping_module = theirs["warping_module"]
    w.spade_generator = theirs["spade_generator"]
    w.stitching_retargeting_module = theirs["stitching_retargeting_module"]
    return w


def smooth_images(n, size, seed, cells=6):
    """Pictures with structure at several scales (random coarse grids, bilinearly enlarged, plus fine noise)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, cells, cells, generator=gen)
    out = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (0.85 * out + 0.15 * torch.rand(n, 3, size, size, generator=gen)).clamp(0, 1)


def source_picture(size=256):
    return smooth_images(1, size, seed=9)


def driving_frames(n=N_FRAMES, size=256, seed=10):
    """A driving 'video': one picture shifted and blended into another over n frames (M reads another head pose,
    expression and scale in each)."""
    a, b = smooth_images(2, size, seed)
    frames = [(1 - i / (n - 1)) * torch.roll(a, shifts=(3 * i, -2 * i), dims=(1, 2)) + (i / (n - 1)) * b
              for i in range(n)]
    return torch.stack(frames).clamp(0, 1)


def worst(a, b) -> float:
    return (a - b).abs().max().item()


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


def reference_template(ref, w, source, frames):
    """What the original pipeline reads before animating: the source's kp_info and x_s, and each driving frame's
    scale, R, exp and t, kept as float32 numpy in its motion template (here back as tensors)."""
    get_rotation_matrix = ref.mods["camera"].get_rotation_matrix
    x_s_info = w.get_kp_info(source)
    template = []
    for frame in frames:
        info = w.get_kp_info(frame[None])
        R = get_rotation_matrix(info["pitch"], info["yaw"], info["roll"])
        template.append({"scale": info["scale"], "R": R, "exp": info["exp"], "t": info["t"]})
    template = [{k: torch.tensor(v.cpu().numpy().astype(np.float32)) for k, v in d.items()} for d in template]
    return x_s_info, w.transform_keypoint(x_s_info), template


def reference_keypoints(ref, w, x_s_info, x_s, template, driving_option="expression-friendly", flag_stitching=True,
                        driving_multiplier=1.0):
    """The original pipeline's per-frame steps for a source image and a driving video: relative motion over all
    regions, no lip normalisation or retargeting; its defaults are the keyword arguments' defaults."""
    get_rotation_matrix = ref.mods["camera"].get_rotation_matrix
    x_c_s = x_s_info["kp"]
    R_s = get_rotation_matrix(x_s_info["pitch"], x_s_info["yaw"], x_s_info["roll"])
    out = []
    for i, x_d_i_info in enumerate(template):
        R_d_i = x_d_i_info["R"]
        if i == 0:
            R_d_0, x_d_0_info = R_d_i, x_d_i_info.copy()
        R_new = (R_d_i @ R_d_0.permute(0, 2, 1)) @ R_s
        delta_new = x_s_info["exp"] + (x_d_i_info["exp"] - x_d_0_info["exp"])
        scale_new = x_s_info["scale"] * (x_d_i_info["scale"] / x_d_0_info["scale"])
        t_new = x_s_info["t"] + (x_d_i_info["t"] - x_d_0_info["t"])
        t_new[..., 2].fill_(0)
        x_d_i_new = scale_new * (x_c_s @ R_new + delta_new) + t_new
        if driving_option == "expression-friendly":
            if i == 0:
                x_d_0_new = x_d_i_new
                motion_multiplier = ref.calc_motion_multiplier(x_s, x_d_0_new)
            x_d_i_new = (x_d_i_new - x_d_0_new) * motion_multiplier + x_s
        if flag_stitching:
            x_d_i_new = w.stitching(x_s, x_d_i_new)
        out.append(x_s + (x_d_i_new - x_s) * driving_multiplier)
    return out


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
