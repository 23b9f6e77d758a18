"""Loading the five published state dicts into our networks, strictly, with one sentence for what does not fit.

What the published files hold (folder liveportrait/ of the model repository):
    base_models/appearance_feature_extractor.pth    F's state dict
    base_models/motion_extractor.pth                M's, every key under `detector.` (our M has that submodule)
    base_models/warping_module.pth                  W's
    base_models/spade_generator.pth                 G's, its residual convs in spectral norm: weight_orig,
                                                    weight_u, weight_v (folded here into a plain `weight`)
    retargeting_models/stitching_retargeting_module.pth
                                                    {'retarget_shoulder', 'retarget_mouth', 'retarget_eye'}:
                                                    the stitching, lip and eye MLPs (keys may carry `module.`)
Reading the files from disk is the caller's part (torch.load with weights_only=True): this module takes the dicts.
"""
from __future__ import annotations

from fomm_core.errors import FommError
from fomm_core.model.liveportrait.config import NETWORKS, build_networks

PUBLISHED_FILES = {
    "appearance_feature_extractor": "base_models/appearance_feature_extractor.pth",
    "motion_extractor": "base_models/motion_extractor.pth",
    "warping_module": "base_models/warping_module.pth",
    "spade_generator": "base_models/spade_generator.pth",
    "stitching_retargeting_module": "retargeting_models/stitching_retargeting_module.pth",
}
# the stitching file's entries -> our StitchingRetargeting's submodules
STITCHING_PARTS = {"retarget_shoulder": "stitching", "retarget_mouth": "lip", "retarget_eye": "eye"}
DESCRIPTIONS = {
    "appearance_feature_extractor": "appearance feature extractor", "motion_extractor": "motion extractor",
    "warping_module": "warping module", "spade_generator": "SPADE generator",
    "stitching_retargeting_module": "stitching and retargeting module",
}


def fold_spectral_norm(state: dict, file: str = PUBLISHED_FILES["spade_generator"]) -> dict:
    """Replace every spectral-norm triple (X.weight_orig, X.weight_u, X.weight_v) by X.weight, the weight torch's
    spectral_norm uses in evaluation: weight_orig / (u . (W v)), W being weight_orig as an [out, -1] matrix."""
    import torch  # here, not above: the file names are read by option checks that should not wait for torch
    out = dict(state)
    for key in [k for k in state if k.endswith(".weight_orig")]:
        base = key[:-len("_orig")]
        for vector in (base + "_u", base + "_v"):
            if vector not in state:
                raise FommError(f"{file} lacks the tensor {vector} that LivePortrait's SPADE generator needs, "
                                "so it is incomplete or another model's file; download it again.")
        weight, u, v = (out.pop(k).float() for k in (key, base + "_u", base + "_v"))
        sigma = torch.dot(u, torch.mv(weight.reshape(weight.shape[0], -1), v))
        out[base] = weight / sigma
    return out


def _stitching_state(state: dict, file: str) -> dict:
    """The stitching file's three state dicts as one, keyed like our StitchingRetargeting."""
    merged = {}
    for entry, part in STITCHING_PARTS.items():
        sub = state.get(entry)
        if not isinstance(sub, dict):
            raise FommError(f"{file} lacks its '{entry}' entry, so it is not LivePortrait's stitching and "
                            "retargeting file; download it again.")
        merged.update({f"{part}.{key.replace('module.', '')}": value for key, value in sub.items()})
    return merged


def _published_key(name: str, key: str) -> str:
    """Our key as the published file spells it, for messages."""
    if name == "stitching_retargeting_module":
        part, rest = key.split(".", 1)
        entry = next(e for e, p in STITCHING_PARTS.items() if p == part)
        return f"{entry}/{rest}"
    return key


def _check_keys(name: str, module, state: dict, file: str) -> None:
    want = module.state_dict()
    # running-batch counters are not used in evaluation and older files lack them; torch fills them in
    missing = [k for k in want if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in want]
    what = f"LivePortrait's {DESCRIPTIONS[name]}"
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FommError(f"{file} lacks the tensor {_published_key(name, missing[0])}{more} that {what} needs, "
                        "so it is incomplete or another model's file; download it again.")
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise FommError(f"{file} holds a tensor {what} does not have, {_published_key(name, unexpected[0])}{more}, "
                        "so it is another model's file; use the published LivePortrait one.")
    import torch
    for key, value in state.items():
        if not torch.is_tensor(value):
            raise FommError(f"{file} holds {_published_key(name, key)} as a {type(value).__name__}, not a tensor, "
                            "so it is not a published LivePortrait file; download it again.")
        if tuple(value.shape) != tuple(want[key].shape):
            raise FommError(f"{file} holds {_published_key(name, key)} with shape {tuple(value.shape)} where "
                            f"{what} has {tuple(want[key].shape)}, so it is another model's file; use the "
                            "published LivePortrait one.")


def load_state(name: str, module, state: dict, file: str | None = None):
    """Load one published state dict (as torch.load gives it) into our network `name` strictly; -> the module in
    eval mode. `file` names it in messages (default: its published path)."""
    file = file or PUBLISHED_FILES[name]
    if not isinstance(state, dict):
        raise FommError(f"{file} holds a {type(state).__name__}, not a state dict, so it is not LivePortrait's "
                        f"{DESCRIPTIONS[name]}; download it again.")
    if name == "stitching_retargeting_module":
        state = _stitching_state(state, file)
    elif name == "spade_generator":
        state = fold_spectral_norm(state, file)
    _check_keys(name, module, state, file)
    module.load_state_dict(state, strict=True)
    return module.eval()


def load_networks(states: dict, files: dict | None = None, networks: dict | None = None) -> dict:
    """The five state dicts, keyed as config.NETWORKS, loaded strictly into fresh networks (or into `networks`).

    files: the paths to name in messages, keyed the same way (default: the published paths).
    """
    files = {**PUBLISHED_FILES, **(files or {})}
    for name in NETWORKS:
        if name not in states:
            raise FommError(f"The LivePortrait set lacks {files[name]} (its {DESCRIPTIONS[name]}); "
                            "all five files are needed.")
    networks = networks or build_networks()
    return {name: load_state(name, networks[name], states[name], files[name]) for name in NETWORKS}
