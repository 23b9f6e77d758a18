"""The original TPSMM code, imported from a folder for the bench and the equivalence tests to compare against.

    ref = load_tpsmm_reference()            # None when the folder is absent
    ref.KPDetector, ref.DenseMotionNetwork, ref.InpaintingNetwork, ref.AVDNetwork, ref.folder
    ref.make_animation, ref.relative_kp     # demo.py's own functions (its other imports are not needed)

The folder is the original repository's files (modules/*.py, demo.py): $FOMM_TPSMM_REFERENCE, else
`shared/reference/tpsmm` beside this checkout. Its code imports torchvision's resnet18, which has no build for
every torch; a stand-in module named `torchvision` provides `models.resnet18` while it is imported (ours, with
torchvision's parameter names, unless the caller gives another). Its `modules` package is removed from
sys.modules afterwards, so nothing of it leaks into other imports.
"""
from __future__ import annotations

import ast
import importlib
import os
import sys
import types
from pathlib import Path

MODULES = ("util", "keypoint_detector", "dense_motion", "inpainting_network", "avd_network",
           "bg_motion_predictor")


def tpsmm_reference_dir() -> Path | None:
    """Where the original TPSMM code is looked for (it may not exist): $FOMM_TPSMM_REFERENCE, else, in a source
    checkout, shared/reference/tpsmm beside it; None for an installed package without the variable."""
    given = os.environ.get("FOMM_TPSMM_REFERENCE")
    if given:
        return Path(given).expanduser()
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / "pyproject.toml").is_file():
        return None
    return checkout.parent / "shared" / "reference" / "tpsmm"


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
