"""Model configs: the shipped YAML files (published FOMM configs and our own), model building, config detection.

A config is the original's YAML layout: `model_params.{common_params, kp_detector_params, generator_params}`,
`dataset_params.frame_shape` and `animate_params.normalization_params`.
"""
from __future__ import annotations

from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

from fomm_core.errors import FommError
from fomm_core.resources import configs_dir

# The published configs, in the order detection prefers them. vox/taichi/fashion/bair/nemo have identical
# shapes (only the training data differs), so shapes alone pick vox-256 for all five.
PUBLISHED = ("vox-256", "taichi-256", "fashion-256", "bair-256", "nemo-256", "mgif-256", "vox-512")


def shipped_configs() -> list[str]:
    """Names of the configs in checkpoints/configs/: the published ones first, then ours, alphabetically."""
    found = {p.stem for p in configs_dir().glob("*.yaml")}
    return [n for n in PUBLISHED if n in found] + sorted(found - set(PUBLISHED))


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


def check_config(config, where="config") -> None:
    """Raise FommError unless `config` has the model_params sections the networks are built from."""
    params = config.get("model_params") if isinstance(config, dict) else None
    missing = [k for k in ("common_params", "kp_detector_params", "generator_params")
               if not isinstance(params, dict) or not isinstance(params.get(k), dict)]
    if missing:
        raise FommError(f"{where} is not a FOMM config: model_params lacks {', '.join(missing)}.")


# generator_params of ours that the original code does not have (see fomm_core.model.generator.warp)
OUR_GENERATOR_OPTIONS = ("exact_flow_resize",)


def original_model_params(config) -> dict:
    """config's model_params without our own options: what the original code's module constructors accept."""
    params = dict(config["model_params"])
    params["generator_params"] = {k: v for k, v in params["generator_params"].items()
                                  if k not in OUR_GENERATOR_OPTIONS}
    return params


def frame_size(config) -> tuple[int, int]:
    """(height, width) the model was trained at (dataset_params.frame_shape; 256x256 when absent)."""
    shape = (config.get("dataset_params") or {}).get("frame_shape") or [256, 256, 3]
    return int(shape[0]), int(shape[1])


def build_models(config, device=None):
    """(generator, kp_detector) built from a config dict, in training mode (call .eval() for inference)."""
    import torch
    from fomm_core.model.generator import OcclusionAwareGenerator
    from fomm_core.model.keypoint_detector import KPDetector

    check_config(config)
    params = config["model_params"]
    try:
        with torch.device(device) if device is not None else nullcontext():
            generator = OcclusionAwareGenerator(**params["generator_params"], **params["common_params"])
            kp_detector = KPDetector(**params["kp_detector_params"], **params["common_params"])
    except TypeError as err:  # an unknown or missing parameter name
        raise FommError(f"the config's model_params do not fit the FOMM networks ({err}).") from None
    return generator, kp_detector


def state_shapes(module_state) -> dict:
    """{name: tuple(shape)} of a state dict or module."""
    if hasattr(module_state, "state_dict"):
        module_state = module_state.state_dict()
    return {k: tuple(getattr(v, "shape", ())) for k, v in module_state.items()}


@lru_cache(maxsize=None)
def _config_shapes(path: str, mtime: float):
    """Name->shape maps of a config's generator and kp detector, built on the meta device (no memory, fast)."""
    generator, kp_detector = build_models(load_config(path), device="meta")
    return state_shapes(generator), state_shapes(kp_detector)


def config_shapes(name_or_path):
    path = config_path(name_or_path)
    return _config_shapes(str(path), path.stat().st_mtime)


def matching_configs(generator_state, kp_state) -> list[str]:
    """Every shipped config whose networks have exactly these parameter names and shapes."""
    want = (state_shapes(generator_state), state_shapes(kp_state))
    matches = []
    for name in shipped_configs():
        try:
            if config_shapes(name) == want:
                matches.append(name)
        except FommError:  # a broken config file of someone else's must not stop detection
            continue
    return matches


def detect_config(generator_state, kp_state) -> str | None:
    """The shipped config a checkpoint's state dicts fit (vox-256 when several published ones do), or None."""
    matches = matching_configs(generator_state, kp_state)
    return matches[0] if matches else None
