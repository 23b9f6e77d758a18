"""Model configs: the shipped YAML files (published FOMM and TPSMM configs, and our own), model building, config
detection.

A config is its original's YAML layout, and its family shows in `model_params`:
  FOMM:  common_params, kp_detector_params, generator_params (dense_motion_params inside the generator's)
  TPSMM: common_params (num_tps), generator_params, dense_motion_params, avd_network_params
plus `dataset_params.frame_shape`. A checkpoint's family shows in its state dicts: FOMM files hold `generator`,
TPSMM files `inpainting_network` (FAMILIES).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fomm_core.errors import FommError
from fomm_core.resources import configs_dir

# The published configs, in the order detection prefers them. vox/taichi/fashion/bair/nemo have identical
# shapes (only the training data differs), so shapes alone pick vox-256 for all five.
# TPSMM's four published configs have identical shapes too (only the data and the frame size differ).
PUBLISHED = ("vox-256", "taichi-256", "fashion-256", "bair-256", "nemo-256", "mgif-256", "vox-512",
             "tpsmm-vox-256", "tpsmm-taichi-256", "tpsmm-ted-384", "tpsmm-mgif-256")

# family -> (state dicts a checkpoint must hold, state dicts it may hold), as the original code saves them
FAMILIES = {
    "fomm": (("generator", "kp_detector"), ()),
    "tpsmm": (("kp_detector", "dense_motion_network", "inpainting_network"), ("bg_predictor", "avd_network")),
}
_SECTIONS = {"fomm": ("common_params", "kp_detector_params", "generator_params"),
             "tpsmm": ("common_params", "generator_params", "dense_motion_params")}


def config_family(config) -> str:
    """'tpsmm' for a TPSMM config (num_tps, a top-level dense_motion_params), else 'fomm'."""
    params = config.get("model_params") if isinstance(config, dict) else None
    common = params.get("common_params") if isinstance(params, dict) else None
    if isinstance(common, dict) and "num_tps" in common and "dense_motion_params" in params:
        return "tpsmm"
    return "fomm"


def checkpoint_family(data) -> str | None:
    """The family whose state dicts a loaded checkpoint holds (TPSMM's `inpainting_network`, FOMM's `generator`)."""
    if not isinstance(data, dict):
        return None
    for family, (required, _) in FAMILIES.items():
        if all(isinstance(data.get(name), dict) for name in required):
            return family
    return None


def held_modules(checkpoint: dict) -> list[str]:
    """The state dicts of a checkpoint's family that it holds: all the required ones, and the optional ones present."""
    required, optional = FAMILIES[checkpoint_family(checkpoint)]
    return list(required) + [n for n in optional if isinstance(checkpoint.get(n), dict)]


def shipped_configs(family=None) -> list[str]:
    """Names of the configs in checkpoints/configs/: the published ones first, then ours, alphabetically; only
    those of `family` ('fomm' or 'tpsmm') when one is given."""
    found = {p.stem for p in configs_dir().glob("*.yaml")}
    names = [n for n in PUBLISHED if n in found] + sorted(found - set(PUBLISHED))
    return names if family is None else [n for n in names if _shipped_family(n) == family]


def _shipped_family(name) -> str | None:
    try:
        return config_family(load_config(name))
    except FommError:
        return None


def config_path(name_or_path) -> Path:
    """A shipped config's name ('vox-256', also 'vox-256.yaml') or a path to a YAML file -> its path."""
    text = str(name_or_path)
    stem = text[:-5] if text.endswith(".yaml") else text
    shipped = configs_dir() / f"{stem}.yaml"
    if "/" not in text and "\\" not in text and shipped.is_file():
        return shipped
    path = Path(text).expanduser()
    if path.is_file():
        return path
    raise FommError(f"config '{text}' is neither a file nor a shipped config; "
                    f"use a YAML path or one of: {', '.join(shipped_configs())}.")


def load_config(name_or_path) -> dict:
    """Load a config by shipped name or path (yaml.safe_load) and check it has the model sections."""
    import yaml
    path = config_path(name_or_path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as err:
        raise FommError(f"config {path} is not readable YAML ({type(err).__name__}); "
                        "check the file or use a shipped config.") from None
    check_config(config, str(path))
    return config


def check_config(config, where="config", family=None) -> None:
    """Raise FommError unless `config` has the model_params sections its family's networks are built from
    (and is of `family`, when one is given)."""
    params = config.get("model_params") if isinstance(config, dict) else None
    found = config_family(config)
    if family is not None and found != family:
        raise FommError(f"{where} is a {found.upper()} config, and the checkpoint is {family.upper()}; "
                        "give a config of the checkpoint's family, or none.")
    missing = [k for k in _SECTIONS[found] if not isinstance(params, dict) or not isinstance(params.get(k), dict)]
    if missing:
        raise FommError(f"{where} is not a FOMM or TPSMM config: model_params lacks {', '.join(missing)}.")


# generator_params of ours that the original code does not have (see fomm_core.model.generator.warp)
OUR_GENERATOR_OPTIONS = ("exact_flow_resize",)


def original_model_params(config) -> dict:
    """config's model_params without our own options: what the original code's module constructors accept."""
    params = dict(config["model_params"])
    params["generator_params"] = {k: v for k, v in params["generator_params"].items()
                                  if k not in OUR_GENERATOR_OPTIONS}
    return params


def names_frame_size(config) -> bool:
    """Whether the config says its frame size: the original TPSMM repository's configs leave frame_shape null
    (its demo takes the size as --img_shape, 256 unless told)."""
    return bool((config.get("dataset_params") or {}).get("frame_shape"))


def frame_size(config) -> tuple[int, int]:
    """(height, width) the model was trained at (dataset_params.frame_shape; 256x256 when absent)."""
    shape = (config.get("dataset_params") or {}).get("frame_shape") or [256, 256, 3]
    return int(shape[0]), int(shape[1])


def build_models(config, device=None):
    """(generator, kp_detector) built from a FOMM config dict, in training mode (call .eval() for inference)."""
    if config_family(config) != "fomm":
        raise FommError("this is a TPSMM config; its networks are built by build_networks.")
    networks = build_networks(config, device)
    return networks["generator"], networks["kp_detector"]


def _fomm_networks(params) -> dict:
    from fomm_core.model.generator import OcclusionAwareGenerator
    from fomm_core.model.keypoint_detector import KPDetector
    return {"generator": OcclusionAwareGenerator(**params["generator_params"], **params["common_params"]),
            "kp_detector": KPDetector(**params["kp_detector_params"], **params["common_params"])}


def _tpsmm_networks(params) -> dict:
    from fomm_core.model.tpsmm.avd_network import AVDNetwork
    from fomm_core.model.tpsmm.bg_motion_predictor import BGMotionPredictor
    from fomm_core.model.tpsmm.dense_motion import DenseMotionNetwork
    from fomm_core.model.tpsmm.inpainting_network import InpaintingNetwork
    from fomm_core.model.tpsmm.keypoint_detector import KPDetector
    common = params["common_params"]
    return {"kp_detector": KPDetector(**common),
            "dense_motion_network": DenseMotionNetwork(**common, **params["dense_motion_params"]),
            "inpainting_network": InpaintingNetwork(**params["generator_params"], **common),
            "bg_predictor": BGMotionPredictor(),
            "avd_network": AVDNetwork(num_tps=common["num_tps"], **(params.get("avd_network_params") or {}))}


def build_networks(config, device=None) -> dict:
    """{state dict name: network} for a config of either family, in training mode (the names of FAMILIES)."""
    import torch
    check_config(config)
    family = config_family(config)
    try:
        with torch.device(device) if device is not None else nullcontext():
            return (_tpsmm_networks if family == "tpsmm" else _fomm_networks)(config["model_params"])
    except TypeError as err:  # an unknown or missing parameter name
        raise FommError(f"the config's model_params do not fit the {family.upper()} networks ({err}).") from None


def state_shapes(module_state) -> dict:
    """{name: tuple(shape)} of a state dict or module."""
    if hasattr(module_state, "state_dict"):
        module_state = module_state.state_dict()
    return {k: tuple(getattr(v, "shape", ())) for k, v in module_state.items()}


@lru_cache(maxsize=None)
def _config_shapes(path: str, mtime: float) -> dict:
    """{state dict name: {parameter: shape}} of a config's networks, built on the meta device (no memory, fast)."""
    return {name: state_shapes(net) for name, net in build_networks(load_config(path), device="meta").items()}


def config_shapes(name_or_path) -> dict:
    path = config_path(name_or_path)
    return _config_shapes(str(path), path.stat().st_mtime)


def _fits(shapes: dict, checkpoint: dict) -> bool:
    """Every state dict the checkpoint holds (held_modules) has exactly these shapes."""
    return all(n in shapes and state_shapes(checkpoint[n]) == shapes[n] for n in held_modules(checkpoint))


def matching_configs(checkpoint: dict) -> list[str]:
    """Every shipped config of the checkpoint's family whose networks have exactly its names and shapes.

    checkpoint: {state dict name: state dict}, as `fomm_core.model.checkpoint.read_checkpoint` returns.
    """
    family = checkpoint_family(checkpoint)
    matches = []
    for name in shipped_configs():
        try:
            if _shipped_family(name) == family and _fits(config_shapes(name), checkpoint):
                matches.append(name)
        except FommError:  # a broken config file of someone else's must not stop detection
            continue
    return matches


@dataclass(frozen=True)
class Damage:
    """How a checkpoint differs from a config whose every tensor it has agrees in shape: tensors the config
    needs that the file lacks, and tensors it holds that the config has no place for ('module.name')."""
    config: str          # which config, in words: "config 'vox-256'"
    missing: tuple
    unexpected: tuple

    def sentence(self, path, config_given: bool = True) -> str:
        """One sentence. Without a config given, a model trained with another config (one without Jacobians,
        say) can look like a damaged copy of a shipped one, so that case is named too."""
        def some(names):
            return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        parts = ([f"it lacks {len(self.missing)} tensor{'s' if len(self.missing) > 1 else ''} of {self.config} "
                  f"({some(self.missing)})"] if self.missing else [])
        parts += ([f"it holds {len(self.unexpected)} tensor{'s' if len(self.unexpected) > 1 else ''} that "
                   f"{'config' if self.missing else self.config} has no place for ({some(self.unexpected)})"]
                  if self.unexpected else [])
        other = "" if config_given else " (a model trained with another config needs that config: --config)"
        return (f"checkpoint {path} is damaged: {'; '.join(parts)}; every tensor it has fits that config, so it "
                f"is an incomplete or altered copy: fetch it again (fomm-doctor checkpoints fetch) or use a whole "
                f"one{other}")


def damage(checkpoint: dict, shapes: dict, config: str) -> Damage | None:
    """The Damage of a checkpoint against a config's shapes ({module: {parameter: shape}}), or None when it fits
    them exactly or differs in some shape (then it is another model, not a damaged copy of this one)."""
    missing, unexpected = [], []
    for module in held_modules(checkpoint):
        want, got = shapes.get(module), state_shapes(checkpoint[module])
        if want is None:
            return None
        if any(want[k] != got[k] for k in set(want) & set(got)):
            return None
        missing += [f"{module}.{k}" for k in sorted(set(want) - set(got))]
        unexpected += [f"{module}.{k}" for k in sorted(set(got) - set(want))]
    return Damage(config, tuple(missing), tuple(unexpected)) if missing or unexpected else None


def damaged_copy_of(checkpoint: dict) -> Damage | None:
    """The Damage against the shipped config of the checkpoint's family it differs least from, where all the
    tensors it has fit that config (a published file with tensors lost); None when none is that close."""
    family, found = checkpoint_family(checkpoint), []
    for name in shipped_configs(family):
        try:
            hurt = damage(checkpoint, config_shapes(name), f"config '{name}'")
        except FommError:
            continue
        if hurt is not None:
            found.append(hurt)
    return min(found, key=lambda d: len(d.missing) + len(d.unexpected), default=None)


def detect_config(checkpoint: dict) -> str | None:
    """The shipped config a checkpoint's state dicts fit (vox-256, tpsmm-vox-256 when several published ones do)."""
    matches = matching_configs(checkpoint)
    return matches[0] if matches else None
