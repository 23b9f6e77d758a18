"""The original code of each family, for the bench and the equivalence tests to compare against.

FOMM: deep-animator's copy of the original code (`pip install --no-deps deep-animator`), run with grid_sample's
align_corners=True as torch 1.0 ran it, animated as the original demo does (`reference_animate`).
TPSMM: the original repository's code, imported from a folder:

    ref = load_tpsmm_reference()            # None when the folder is absent
    ref.KPDetector, ref.DenseMotionNetwork, ref.InpaintingNetwork, ref.AVDNetwork, ref.folder
    ref.make_animation, ref.relative_kp     # demo.py's own functions (its other imports are not needed)

The folder is the original repository's files (modules/*.py, demo.py): $FOMM_TPSMM_REFERENCE, else
`shared/reference/tpsmm` beside this checkout. Its code imports torchvision's resnet18, which has no build for
every torch; a stand-in module named `torchvision` provides `models.resnet18` while it is imported (ours, with
torchvision's parameter names, unless the caller gives another). Its `modules` package is removed from
sys.modules afterwards, so nothing of it leaks into other imports.
LivePortrait: the original repository's code, imported from a folder by fomm_core.bench.liveportrait_reference
($FOMM_LIVEPORTRAIT_REFERENCE, else `shared/reference/liveportrait` beside this checkout), its pipeline's steps for a
source image and a driving video restated there.
"""
from __future__ import annotations

import ast
import importlib
import sys
import time
import types
from contextlib import contextmanager
from pathlib import Path

from fomm_core.bench.folders import reference_folder
from fomm_core.bench.stages import REFERENCE_LIVEPORTRAIT_CALLS, time_calls
from fomm_core.bench.weights import SEED, family, our_models, our_tpsmm_networks

MODULES = ("util", "keypoint_detector", "dense_motion", "inpainting_network", "avd_network",
           "bg_motion_predictor")


def tpsmm_reference_dir() -> Path | None:
    """Where the original TPSMM code is looked for (it may not exist): $FOMM_TPSMM_REFERENCE, else, in a source
    checkout, shared/reference/tpsmm beside it; None for an installed package without the variable."""
    return reference_folder("FOMM_TPSMM_REFERENCE", "tpsmm")


def _our_resnet18(pretrained=False, **kwargs):
    from fomm_core.model.tpsmm.resnet import ResNet18
    return ResNet18(**kwargs)


def _torchvision_stand_in(resnet18) -> types.ModuleType:
    torchvision = types.ModuleType("torchvision")
    torchvision.models = types.SimpleNamespace(resnet18=resnet18)
    return torchvision


def load_tpsmm_reference(folder=None, resnet18=None):
    """The original TPSMM classes and demo functions as a namespace, or None when the folder has no modules/."""
    folder = Path(folder) if folder else tpsmm_reference_dir()
    if folder is None or not (folder / "modules" / "util.py").is_file():
        return None
    names = ["torchvision", "modules"] + [f"modules.{m}" for m in MODULES]
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    sys.modules["torchvision"] = _torchvision_stand_in(resnet18 or _our_resnet18)
    sys.path.insert(0, str(folder))
    try:
        loaded = {m: importlib.import_module(f"modules.{m}") for m in MODULES}
    finally:
        sys.path.remove(str(folder))
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)
    return types.SimpleNamespace(
        folder=folder, modules=loaded, KPDetector=loaded["keypoint_detector"].KPDetector,
        DenseMotionNetwork=loaded["dense_motion"].DenseMotionNetwork,
        InpaintingNetwork=loaded["inpainting_network"].InpaintingNetwork,
        AVDNetwork=loaded["avd_network"].AVDNetwork, BGMotionPredictor=loaded["bg_motion_predictor"].BGMotionPredictor,
        **_demo_functions(folder))


def _demo_functions(folder: Path) -> dict:
    """demo.py's relative_kp and make_animation, taken from its source alone: the demo imports matplotlib,
    imageio and scikit-image at the top, which animating does not use. scipy's ConvexHull when installed (what the
    demo calls), else a stand-in with the same `volume` (the hull's area) from fomm_core.inference.motion."""
    import numpy as np
    import torch
    tree = ast.parse((folder / "demo.py").read_text(encoding="utf-8"))
    wanted = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("relative_kp", "make_animation")]
    try:
        from scipy.spatial import ConvexHull
    except ImportError:
        from fomm_core.inference.motion import hull_area

        class ConvexHull:  # noqa: N801 - the name the demo's code calls
            def __init__(self, points):
                self.volume = hull_area(points)
    namespace = {"np": np, "torch": torch, "ConvexHull": ConvexHull, "tqdm": lambda iterable: iterable}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), str(folder / "demo.py"), "exec"), namespace)
    return {name: namespace[name] for name in ("relative_kp", "make_animation")}


def tpsmm_reference_networks(ref, config) -> dict:
    """The original's networks for one of our TPSMM configs, named as the checkpoints name them (training mode)."""
    params = config["model_params"]
    common = params["common_params"]
    return {"kp_detector": ref.KPDetector(**common),
            "dense_motion_network": ref.DenseMotionNetwork(**common, **params["dense_motion_params"]),
            "inpainting_network": ref.InpaintingNetwork(**params["generator_params"], **common),
            "bg_predictor": ref.BGMotionPredictor(),
            "avd_network": ref.AVDNetwork(num_tps=common["num_tps"], **params["avd_network_params"])}


# ----------------------------------------------------------------------------------------------------------------
# How each original animates, and with what


def reference_available(config_name="vox-256") -> bool:
    if family(config_name) == "tpsmm":
        return load_tpsmm_reference() is not None
    if family(config_name) == "liveportrait":
        from fomm_core.bench.folders import holds_the_code, liveportrait_reference_dir
        return holds_the_code(liveportrait_reference_dir())
    import importlib
    try:
        for name in ("deep_animator.modules.generator", "deep_animator.modules.kp_detector"):
            importlib.import_module(name)
        return True
    except Exception:
        return False


def reference_models(config_name="vox-256", seed=SEED, weights="random"):
    """The original code's modules holding exactly our weights (strict load)."""
    from deep_animator.modules.generator import OcclusionAwareGenerator
    from deep_animator.modules.kp_detector import KPDetector
    from fomm_core.model.config import load_config, original_model_params
    params = original_model_params(load_config(config_name))
    generator = OcclusionAwareGenerator(**params["generator_params"], **params["common_params"])
    kp_detector = KPDetector(**params["kp_detector_params"], **params["common_params"])
    ours_g, ours_k = our_models(config_name, seed, weights)
    generator.load_state_dict(ours_g.state_dict(), strict=True)
    kp_detector.load_state_dict(ours_k.state_dict(), strict=True)
    return generator.eval(), kp_detector.eval()


@contextmanager
def training_time_grid_sample():
    """Patch the reference modules' `F` so grid_sample defaults to align_corners=True (torch 1.0's behaviour)."""
    import torch.nn.functional as F
    import deep_animator.modules.dense_motion as dm
    import deep_animator.modules.generator as gen

    def grid_sample(*args, **kwargs):
        kwargs.setdefault("align_corners", True)
        return F.grid_sample(*args, **kwargs)

    proxy = types.SimpleNamespace(**{n: getattr(F, n) for n in dir(F) if not n.startswith("__")})
    proxy.grid_sample = grid_sample
    saved = {m: m.F for m in (dm, gen)}
    try:
        for m in saved:
            m.F = proxy
        yield
    finally:
        for m, f in saved.items():
            m.F = f


def reference_normalize_kp(kp_source, kp_driving, kp_initial):
    """The original demo's normalize_kp with relative movement and Jacobians (adapt scale off), torch.inverse."""
    import torch
    value = kp_driving["value"] - kp_initial["value"] + kp_source["value"]
    jacobian = torch.matmul(torch.matmul(kp_driving["jacobian"], torch.inverse(kp_initial["jacobian"])),
                            kp_source["jacobian"])
    return {"value": value, "jacobian": jacobian}


def reference_animate(generator, kp_detector, source, frames, timings=None):
    """The original demo's loop: per frame keypoints, normalize_kp, the whole generator (source re-encoded)."""
    import torch
    outs = []
    with torch.no_grad(), training_time_grid_sample():
        kp_source = kp_detector(source)
        kp_initial = kp_detector(frames[:1])
        for i in range(frames.shape[0]):
            t0 = time.perf_counter()
            kp = kp_detector(frames[i:i + 1])
            t1 = time.perf_counter()
            kp_norm = reference_normalize_kp(kp_source, kp, kp_initial)
            if timings is not None:  # dense motion alone, timed separately (the generator runs it again inside)
                generator.dense_motion_network(source_image=source, kp_driving=kp_norm, kp_source=kp_source)
            t2 = time.perf_counter()
            outs.append(generator(source, kp_source=kp_source, kp_driving=kp_norm)["prediction"])
            t3 = time.perf_counter()
            if timings is not None:
                timings["keypoints"] += t1 - t0
                timings["dense motion"] += t2 - t1
                timings["generator"] += (t3 - t2) - (t2 - t1)
    return torch.cat(outs)


def _tpsmm_reference_runner(config_name, source, driving, weights, device="cpu"):
    """The original TPSMM demo's make_animation (relative mode) on the original modules holding our weights."""
    import numpy as np
    import torch
    from fomm_core.model.config import load_config
    ref = load_tpsmm_reference()
    theirs = tpsmm_reference_networks(ref, load_config(config_name))
    for name, net in our_tpsmm_networks(config_name, weights=weights).items():
        theirs[name].load_state_dict(net.state_dict(), strict=True)
    nets = {k: v.to(device).eval() for k, v in theirs.items()}
    source_hwc = source[0].permute(1, 2, 0).numpy()
    driving_hwc = [frame.permute(1, 2, 0).numpy() for frame in driving]

    def run(timings=None):
        predictions = ref.make_animation(source_hwc, driving_hwc, nets["inpainting_network"], nets["kp_detector"],
                                         nets["dense_motion_network"], nets["avd_network"], device, mode="relative")
        return torch.from_numpy(np.stack(predictions)).permute(0, 3, 1, 2)
    return "original TPSMM code (its demo's make_animation), frame by frame", run


def _liveportrait_reference_runner(source, driving, weights, device="cpu"):
    """The original LivePortrait pipeline's steps (relative motion, expression-friendly, stitching) on the original
    networks, loaded by its own load_model from the folder of five files `weights` (the stress set is one)."""
    import torch
    from fomm_core.bench import liveportrait_reference as lp
    from fomm_core.model.liveportrait.files import set_files
    ref = lp.load_liveportrait_reference()
    w = lp.make_wrapper(ref, lp.load_published(ref, set_files(weights), device), device)
    source, driving = source.to(device), driving.to(device)
    timed = []

    def run(timings=None):  # .cpu(): on a GPU, also waits for the work to finish before the clock stops
        if timings is not None and not timed:
            timed.extend(time_calls(w, REFERENCE_LIVEPORTRAIT_CALLS, timings))
        with torch.no_grad():
            return lp.reference_frames(ref, w, source, driving).cpu()
    return "original LivePortrait code (its pipeline's steps: relative motion, stitching), frame by frame", run


def reference_runner(config_name, source, driving, weights, device="cpu"):
    if family(config_name) == "tpsmm":
        return _tpsmm_reference_runner(config_name, source, driving, weights, device)
    if family(config_name) == "liveportrait":
        return _liveportrait_reference_runner(source, driving, weights, device)
    generator, kp_detector = reference_models(config_name, weights=weights)
    generator, kp_detector = generator.to(device), kp_detector.to(device)
    source, driving = source.to(device), driving.to(device)

    def run(timings=None):  # .cpu(): on a GPU, also waits for the work to finish before the clock stops
        return reference_animate(generator, kp_detector, source, driving, timings).cpu()
    return "original code, frame by frame, align_corners=True", run


def missing_reference(config_name) -> str:
    """Where the original code of a config's family was looked for and not found, in words (no full stop)."""
    if family(config_name) == "fomm":
        return "the reference (original code) is not installed"
    if family(config_name) == "tpsmm":
        name, where = "TPSMM", tpsmm_reference_dir()
    else:
        from fomm_core.bench.folders import liveportrait_reference_dir
        name, where = "LivePortrait", liveportrait_reference_dir()
    return f"the original {name} code {f'is not at {where}' if where else 'was not found'}"


def how_to_add_reference(config_name) -> str:
    """What gives the bench a config's original code, in words (no full stop)."""
    variable = {"tpsmm": "FOMM_TPSMM_REFERENCE", "liveportrait": "FOMM_LIVEPORTRAIT_REFERENCE"}.get(family(config_name))
    if variable is None:
        return "pip install --no-deps deep-animator"
    return f"set {variable} to a copy of its repository"
