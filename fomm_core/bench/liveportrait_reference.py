"""The original LivePortrait code, for the bench and the equivalence tests to compare against: imported from a
folder, its networks given seeded random weights and saved as the published files hold them, and the per-frame
steps of its pipeline for a source image and a driving video.

    ref = load_liveportrait_reference()                  # None when the folder is absent
    theirs = reference_networks(ref, pictures)           # the five networks, seeded, M's poses spread over pictures
    published_states(theirs)                             # as the five published files hold them
    w = make_wrapper(ref, theirs)                        # the original wrapper's methods around them
    reference_frames(ref, w, source, frames)             # [N, 3, 512, 512]: relative motion, stitching on

The folder is the original repository's files (src/...): $FOMM_LIVEPORTRAIT_REFERENCE, else
shared/reference/liveportrait beside this checkout. Its modules are imported as the `src` package they are, then
taken out of sys.modules again. The wrapper's methods (get_kp_info, transform_keypoint, stitching, warp_decode),
its helpers (calc_motion_multiplier, load_model) are taken from their files' source alone: those modules import
OpenCV and rich at the top, which these functions do not use. The pipeline's per-frame steps are restated in
`reference_template` and `reference_keypoints`, with its command-line defaults.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import math
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Union

import numpy as np
import torch

from fomm_core.bench.folders import holds_the_code, liveportrait_reference_dir

MODULES = ("appearance_feature_extractor", "motion_extractor", "warping_network", "spade_generator",
           "stitching_retargeting_network", "util")
WRAPPER_METHODS = ("inference_ctx", "extract_feature_3d", "get_kp_info", "transform_keypoint", "stitch",
                   "stitching", "warp_decode")
HELPERS = ("tensor_to_numpy", "concat_feat", "calc_motion_multiplier", "remove_ddp_dumplicate_key", "load_model")
NETWORKS = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator",
            "stitching_retargeting_module")
N_FRAMES = 8  # the driving video M's poses are spread over


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
    """scipy's ConvexHull, which the original's expression-friendly mode calls; without scipy, a stand-in with the
    same `volume` from our keypoint maths."""
    try:
        from scipy.spatial import ConvexHull
    except ImportError:
        from fomm_core.model.liveportrait.motion import hull_volume

        class ConvexHull:  # noqa: N801 - the name the original calls
            def __init__(self, points):
                self.volume = hull_volume(points)
    return ConvexHull


def load_liveportrait_reference(folder=None, hull=None):
    """The original's modules, sizes (models.yaml's model_params), wrapper methods and helpers as a namespace, or
    None when the folder lacks its code. hull: what stands for scipy's ConvexHull (default: `convex_hull()`)."""
    import yaml
    folder = Path(folder) if folder else liveportrait_reference_dir()
    if not holds_the_code(folder):
        return None
    mods = _import_reference(folder)
    namespace = {"torch": torch, "np": np, "contextlib": contextlib, "Union": Union, "OrderedDict": OrderedDict,
                 "ConvexHull": hull or convex_hull(),
                 "headpose_pred_to_degree": mods["camera"].headpose_pred_to_degree,
                 "get_rotation_matrix": mods["camera"].get_rotation_matrix,
                 "AppearanceFeatureExtractor": mods["appearance_feature_extractor"].AppearanceFeatureExtractor,
                 "MotionExtractor": mods["motion_extractor"].MotionExtractor,
                 "WarpingNetwork": mods["warping_network"].WarpingNetwork,
                 "SPADEDecoder": mods["spade_generator"].SPADEDecoder,
                 "StitchingRetargetingNetwork": mods["stitching_retargeting_network"].StitchingRetargetingNetwork}
    helpers = _functions(folder / "src" / "utils" / "helper.py", HELPERS, namespace)
    wrapper = type("Wrapper", (), _functions(folder / "src" / "live_portrait_wrapper.py", WRAPPER_METHODS,
                                             namespace))
    params = yaml.safe_load((folder / "src" / "config" / "models.yaml").read_text())["model_params"]
    return types.SimpleNamespace(folder=folder, mods=mods, params=params, wrapper=wrapper, **helpers)


def make_wrapper(ref, theirs, device="cpu"):
    """The original's wrapper methods around the reference networks `theirs` (moved to `device`), float32."""
    w = ref.wrapper()
    w.inference_cfg = types.SimpleNamespace(flag_use_half_precision=False)
    w.device, w.compile = str(device), False
    for name in NETWORKS[:-1]:
        setattr(w, name, theirs[name].to(device))
    w.stitching_retargeting_module = {k: v.to(device) for k, v in theirs["stitching_retargeting_module"].items()}
    return w


def load_published(ref, files: dict, device="cpu") -> dict:
    """The original's networks loaded from the five published files ({network: path}) by its own load_model."""
    config = {"model_params": ref.params}
    return {name: ref.load_model(str(files[name]), config, device, name) for name in NETWORKS}


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
    """The original's five networks with seeded random weights; M's poses spread over `pictures`. (Spectral
    norms' u and v start from torch's global generator: seed it first for the same weights every time.)"""
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


def save_stress_set(folder, ref=None, seed=0) -> Path:
    """The bench's 'stress' weights: the reference networks seeded (torch's generator too, for the spectral
    norms), M's poses spread over the test pictures, saved in the published layout under `folder`."""
    from fomm_core.model.liveportrait.loading import PUBLISHED_FILES
    ref = ref or load_liveportrait_reference()
    torch.manual_seed(seed)
    states = published_states(reference_networks(ref, torch.cat([source_picture(), driving_frames()]), seed))
    folder = Path(folder)
    for name, state in states.items():
        path = folder / PUBLISHED_FILES[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
    return folder


# ----------------------------------------------------------------------------------------------------------------
# Test pictures


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
    frames = [(1 - i / max(n - 1, 1)) * torch.roll(a, shifts=(3 * i, -2 * i), dims=(1, 2)) + (i / max(n - 1, 1)) * b
              for i in range(n)]
    return torch.stack(frames).clamp(0, 1)


# ----------------------------------------------------------------------------------------------------------------
# The pipeline's per-frame steps


def reference_template(ref, w, source, frames):
    """What the original pipeline reads before animating: the source's kp_info and x_s, and each driving frame's
    scale, R, exp and t, kept as float32 numpy in its motion template (here back as tensors, on the source's
    device)."""
    get_rotation_matrix = ref.mods["camera"].get_rotation_matrix
    x_s_info = w.get_kp_info(source)
    template = []
    for frame in frames:
        info = w.get_kp_info(frame[None])
        R = get_rotation_matrix(info["pitch"], info["yaw"], info["roll"])
        template.append({"scale": info["scale"], "R": R, "exp": info["exp"], "t": info["t"]})
    template = [{k: torch.tensor(v.cpu().numpy().astype(np.float32), device=source.device) for k, v in d.items()}
                for d in template]
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


def reference_frames(ref, w, source, frames):
    """The original pipeline for a source image [1, 3, 256, 256] and driving frames [N, 3, 256, 256], its
    defaults (relative motion, expression-friendly, stitching): -> [N, 3, 512, 512], frame 0 the reference."""
    x_s_info, x_s, template = reference_template(ref, w, source, frames)
    kps = reference_keypoints(ref, w, x_s_info, x_s, template)
    f_s = w.extract_feature_3d(source)
    return torch.cat([w.warp_decode(f_s, x_s, kp)["out"] for kp in kps])
