"""Reading FOMM and TPSMM checkpoints safely, telling users in one sentence what is wrong with a file, and loading
models.

A published FOMM checkpoint (`vox-cpk.pth.tar`, ...) is `torch.save` of a dict with `generator` and `kp_detector`
state dicts, plus discriminator/optimizer states and `epoch` that inference ignores. A published TPSMM checkpoint
(`vox.pth.tar`, ...) holds `kp_detector`, `dense_motion_network`, `inpainting_network`, usually `bg_predictor` and
`avd_network`, and optimizer states. Ours also carry `config` (the config dict the model was built from), so they
load without naming a config.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fomm_core.model.config import (FAMILIES, build_networks, check_config, checkpoint_family, damage,
                                    damaged_copy_of, detect_config, frame_size, held_modules, load_config,
                                    matching_configs, state_shapes)
from fomm_core.errors import FommError
from fomm_core.device import resolve_device

MODULES = ("generator", "kp_detector")  # a FOMM checkpoint's state dicts
ALL_MODULES = tuple(dict.fromkeys(n for required, optional in FAMILIES.values() for n in required + optional))


def _looks_like_html(head: bytes) -> bool:
    text = head.lstrip().lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml", b"<!--")) or b"<html" in text[:512]


def _describe_folder(path: Path) -> str:
    # an extracted torch zip holds <name>/data.pkl, <name>/version, <name>/data/0...: look two levels deep only
    names = set()
    for child in path.iterdir():
        names.add(child.name)
        if child.is_dir():
            names.update(p.name for p in child.iterdir())
    if "data.pkl" in names or "version" in names:
        return (f"{path} is a folder holding an unpacked checkpoint (the .pth.tar was extracted as an archive); "
                "use the original .pth.tar file itself, it must not be unzipped.")
    return f"{path} is a folder, not a checkpoint file; give the path of the .pth.tar file."


def _describe_zip(path: Path) -> str | None:
    """None when the zip is a torch checkpoint; otherwise the sentence to say about it."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return None
    inner = [n for n in names if n.endswith((".pth.tar", ".pth", ".pt", ".tar"))]
    hint = f" (it contains {inner[0]}: extract that file)" if inner else ""
    return f"{path} is a zip archive, not a checkpoint{hint}; give the path of the .pth.tar file."


# How torch's weights_only unpickler names what it refuses, across versions (torch/_weights_only_unpickler.py):
# 'Unsupported global: GLOBAL argparse.Namespace was not an allowed global by default' (any class or function),
# 'Trying to load unsupported GLOBAL posix.system whose module posix is blocked' (2.6+: os, sys, posix, nt),
# 'Trying to call reduce for unrecognized function <built-in function print>' (older releases).
_REFUSED_OBJECT = (r"Unsupported global: GLOBAL (\S+)", r"unsupported GLOBAL (\S+) whose module",
                   r"reduce for unrecognized function (.+?)(?: which belongs|\n|$)")
# The refusals that name no object; torch wraps all of them in 'Weights only load failed'.
_REFUSED_OTHER = (r"Unsupported operand \d+", r"Can only (?:build|create new object|append|extend) [^\n]+",
                  r"\S+ must be imported to load [^\n]+", r"persistent_load id must be [^\n]+")


def _refusal(path: Path, message: str, looks_pickled: bool) -> FommError | None:
    """The sentence for a file torch's safe (weights_only) loader refused; None for other failures.

    looks_pickled: the file starts as a torch zip or a pickle does; garbage also fails with 'Unsupported operand',
    and must not be called a refused checkpoint.
    """
    for pattern in _REFUSED_OBJECT:
        found = re.search(pattern, message)
        if found:
            return FommError(f"{path} contains a Python object ({found.group(1).strip()}) beyond tensors and plain "
                             "data, so it is not loaded (unpickling it could run code); re-save only the state dicts.")
    if not looks_pickled or ("Weights only load failed" not in message and "WeightsUnpickler" not in message):
        return None
    found = (re.search(pattern, message) for pattern in _REFUSED_OTHER)
    detail = next((m.group(0) for m in found if m), "")
    detail = f" ({detail})" if detail else ""
    return FommError(f"{path} holds something PyTorch's safe loader refuses{detail}, so it is not loaded "
                     "(unpickling it could run code); re-save only the state dicts with plain torch.save.")


def _load_error(path: Path, err: Exception) -> FommError:
    """Turn torch.load's failure into one sentence about the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4096)
    message = str(err)
    if size == 0:
        return FommError(f"{path} is empty (0 bytes); download the checkpoint again.")
    if _looks_like_html(head):
        return FommError(f"{path} is a web page, not a checkpoint: the download link served HTML (a quota, login "
                         "or confirmation page) instead of the file; download it again from another mirror.")
    is_zip_magic = head.startswith(b"PK\x03\x04")
    is_pickle = head[:1] == b"\x80"  # legacy torch.save (torch < 1.6, as the published files): a pickle stream
    refused = _refusal(path, message, is_zip_magic or is_pickle)
    if refused:
        return refused
    truncated = (is_zip_magic and ("central directory" in message or "failed reading zip" in message
                                   or isinstance(err, (EOFError, zipfile.BadZipFile))))
    truncated = truncated or (is_pickle and isinstance(err, (EOFError, RuntimeError)))
    truncated = truncated or "unexpected EOF" in message or "Ran out of input" in message
    if truncated:
        return FommError(f"{path} is incomplete ({size:,} bytes; the download was cut short); "
                         "download it again and compare its size and sha256.")
    return FommError(f"{path} is not a PyTorch checkpoint ({type(err).__name__}); "
                     "give the path of a FOMM .pth.tar file.")


def _strip_prefix(state: dict) -> dict:
    """Drop the `module.` prefix DataParallel adds (sometimes twice) from every key."""
    out = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    return out


def _split_flat(state: dict) -> dict | None:
    """A single flat state dict with 'generator.' / 'kp_detector.' / 'inpainting_network.' ... prefixed keys ->
    the state dicts, when they make a whole checkpoint of one family."""
    parts = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        head, _, rest = key.partition(".")
        if head not in ALL_MODULES or not rest:
            return None
        parts.setdefault(head, {})[rest] = value
    return parts if checkpoint_family(parts) else None


def _check_file(path: Path) -> None:
    """Refuse, before torch reads anything, a path that is missing, a folder, or a zip that holds no checkpoint."""
    if not path.exists():
        raise FommError(f"checkpoint {path} does not exist; check the path or run `fomm-doctor checkpoints list`.")
    if path.is_dir():
        raise FommError(_describe_folder(path))
    if zipfile.is_zipfile(path):
        sentence = _describe_zip(path)
        if sentence:
            raise FommError(sentence)


def _safe_load(path: Path):
    """torch.load with the safe (weights_only) unpickler, on the CPU; every failure as one sentence."""
    import torch
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise FommError(f"{path} does not fit in memory; close other programs or use a smaller checkpoint.") from None
    except Exception as err:  # torch.load raises many types for a broken file; all mean "not loadable"
        raise _load_error(path, err) from None


def _read_file(path: Path):
    """One file's contents, read safely: refused before torch when it is no file, else torch.load(weights_only)."""
    _check_file(path)
    return _safe_load(path)


def _model_entries(path: Path, data) -> dict:
    """The loaded object as a dict with one family's state dicts (a flat one split), or why not."""
    if not isinstance(data, dict):
        raise FommError(f"{path} holds a {type(data).__name__}, not a FOMM or TPSMM checkpoint "
                        "(a dict with 'generator' and 'kp_detector', or 'inpainting_network' and the others).")
    if checkpoint_family(data):
        return data
    flat = _split_flat(data) if data and all(isinstance(k, str) for k in data) else None
    if flat is None:
        keys = ", ".join(sorted(map(str, data))[:6]) or "nothing"
        raise FommError(f"{path} holds no FOMM or TPSMM weights (no 'generator' and 'kp_detector', nor "
                        f"'inpainting_network' entries; it has {keys}); use a first-order-model checkpoint such "
                        "as vox-cpk.pth.tar or a Thin-Plate Spline Motion Model one such as vox.pth.tar.")
    return flat


def read_checkpoint(path) -> dict:
    """Read a checkpoint on the CPU -> {'generator': sd, 'kp_detector': sd, ...} or TPSMM's state dicts
    (prefix-free; extra keys kept); `checkpoint_family` tells which.

    Raises FommError with one sentence for a missing path, a folder, a zip, a web page, a truncated file or a
    file that holds no FOMM or TPSMM weights.
    """
    path = Path(path).expanduser()
    data = _model_entries(path, _read_file(path))
    out = dict(data)
    for m in ALL_MODULES:
        if isinstance(data.get(m), dict):
            out[m] = _strip_prefix(data[m])
    return out


def _config_from_checkpoint(checkpoint, where) -> dict | None:
    """The config a checkpoint carries (full config dict, or just its model_params), or None."""
    config = checkpoint.get("config")
    if config is None:
        return None
    if isinstance(config, dict) and "model_params" not in config and "generator_params" in config:
        config = {"model_params": config}
    check_config(config, f"the config stored in {where}", checkpoint_family(checkpoint))
    return config


def _mismatch(path, config_name, checkpoint, module_name, expected: dict) -> FommError:
    """One sentence: which entry differs, and which shipped config the checkpoint fits instead."""
    got = state_shapes(checkpoint[module_name])
    detail = ""
    for key in sorted(set(got) | set(expected)):
        if got.get(key) != expected.get(key):
            have = list(got[key]) if key in got else "missing"
            want = list(expected[key]) if key in expected else "absent"
            detail = f" ({module_name}.{key}: {have} in the checkpoint, {want} in the config)"
            break
    fits = matching_configs(checkpoint)
    advice = (f"it fits the shipped config '{fits[0]}', use that one" if fits
              else "no shipped config fits it; use the config it was trained with")
    return FommError(f"checkpoint {path} does not fit config {config_name}{detail}; {advice}.")


@dataclass
class Model:
    """A loaded checkpoint: its family ('fomm', 'tpsmm' or 'liveportrait'), networks in eval mode by state dict
    name (LivePortrait's by its published file's name), config."""
    family: str
    networks: dict
    config: dict
    config_name: str

    @property
    def size(self) -> int:
        """The frame size the model was trained at (its config's frame_shape): the size of the frames it takes."""
        return frame_size(self.config)[0]


def _choose_config(config_path, checkpoint, checkpoint_path, family):
    """(config, how to name it) for a checkpoint: the one given, the one it carries, or the shipped one it fits."""
    if config_path is not None:
        config = load_config(config_path)
        check_config(config, f"config '{config_path}'", family)
        return config, f"'{config_path}'"
    config = _config_from_checkpoint(checkpoint, checkpoint_path)
    if config is not None:
        return config, "stored in the checkpoint"
    name = detect_config(checkpoint)
    hurt = damaged_copy_of(checkpoint) if name is None else None
    if hurt is not None:
        raise FommError(hurt.sentence(checkpoint_path, config_given=False) + ".")
    if name is None:
        raise FommError(f"checkpoint {checkpoint_path} fits no shipped config and carries none; "
                        "give the config it was trained with.")
    return load_config(name), f"'{name}'"


def load_model(checkpoint, config=None, device="cpu") -> Model:
    """A FOMM or TPSMM checkpoint file (told apart by its state dicts), or a LivePortrait set (a folder of its five
    files, fomm_core.model.liveportrait.files), loaded strictly onto `device`, in eval mode.

    config: a shipped config's name ('vox-256', 'tpsmm-ted-384'), a YAML path, or None to use the config the
    checkpoint carries (ours do) or else the shipped config its shapes fit. Optional state dicts (TPSMM's
    avd_network) are loaded when the file holds them; the background predictor, used only in training, is
    checked by a strict load and then dropped.
    """
    device = resolve_device(device)
    from fomm_core.model.liveportrait.files import CONFIG_NAME, load_set, set_files
    if set_files(checkpoint) is not None:  # a folder holding LivePortrait's files
        networks, lp_config = load_set(checkpoint, _read_file, device)
        return Model("liveportrait", networks, lp_config, CONFIG_NAME)
    states = read_checkpoint(checkpoint)
    family = checkpoint_family(states)
    config, config_name = _choose_config(config, states, checkpoint, family)
    networks = build_networks(config)
    names = held_modules(states)
    for name in names:
        try:
            networks[name].load_state_dict(states[name], strict=True)
        except RuntimeError:
            shapes = {n: state_shapes(net) for n, net in networks.items()}
            given = f"config {config_name}" if config_name.startswith("'") else f"the config {config_name}"
            hurt = damage(states, shapes, given) or damaged_copy_of(states)
            if hurt is not None:   # a copy with tensors lost or added, whatever config was named
                raise FommError(hurt.sentence(checkpoint, config_given=hurt.config == given) + ".") from None
            raise _mismatch(checkpoint, config_name, states, name, state_shapes(networks[name])) from None
    loaded = {n: networks[n].to(device).eval() for n in names if n != "bg_predictor"}
    return Model(family, loaded, config, config_name)


def load_checkpoints(config_path, checkpoint_path, device="cpu"):
    """Drop-in for the original FOMM demo's function: -> (generator, kp_detector) on `device`, in eval mode.

    config_path: a shipped config's name ('vox-256'), a YAML path, or None to use the config the checkpoint
    carries (ours do) or else the shipped config its shapes fit. A TPSMM checkpoint is refused with a sentence
    (`load_model` loads either family).
    """
    model = load_model(checkpoint_path, config_path, device)
    if model.family != "fomm":
        raise FommError(f"{checkpoint_path} is a Thin-Plate Spline Motion Model checkpoint, not FOMM; "
                        "load it with fomm_core.model.checkpoint.load_model.")
    return model.networks["generator"], model.networks["kp_detector"]
