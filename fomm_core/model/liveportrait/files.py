"""A LivePortrait checkpoint set on disk: the folder of five files, found and read safely.

The set is the published folder (`base_models/...` and `retargeting_models/...`, as loading.PUBLISHED_FILES names
them) or the same five file names side by side in one folder. Each file is read by the reader the caller gives
(fomm_core.model.checkpoint's safe one: torch.load with weights_only=True; web pages, zips and refused pickles
each said in one sentence naming the file), then loaded strictly by `loading.load_networks`, which names the file
that does not fit.
"""
from __future__ import annotations

from pathlib import Path

from fomm_core.errors import FommError
from fomm_core.model.liveportrait.config import INPUT_SIZE, NETWORKS, model_params
from fomm_core.model.liveportrait.loading import DESCRIPTIONS, PUBLISHED_FILES, load_networks

CONFIG_NAME = "liveportrait"


def _candidates(folder: Path, name: str) -> list:
    published = folder / PUBLISHED_FILES[name]
    return [published, folder / published.name]


def set_files(folder) -> dict | None:
    """{network: the path its file would have} for a folder holding any of the five files; None for a folder
    holding none of them (not a LivePortrait set). A missing file's entry is its published path."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return None
    found = {}
    for name in NETWORKS:
        present = [p for p in _candidates(folder, name) if p.exists()]
        found[name] = present[0] if present else None
    if not any(found.values()):
        return None
    return {name: path or folder / PUBLISHED_FILES[name] for name, path in found.items()}


def read_set(folder, read_file) -> dict:
    """{network: what read_file(path) gives for its file} for a LivePortrait folder; one sentence for a missing
    file (read_file says its own for an unreadable one)."""
    files = set_files(folder)
    if files is None:
        raise FommError(f"{folder} holds none of LivePortrait's five files.")
    for name, path in files.items():
        if not path.exists():
            raise FommError(f"The LivePortrait set in {folder} lacks {PUBLISHED_FILES[name]} (its "
                            f"{DESCRIPTIONS[name]}); all five files are needed.")
    return {name: read_file(path) for name, path in files.items()}


def liveportrait_config() -> dict:
    """The config a LivePortrait model carries: its network sizes and the crop size the networks see."""
    return {"model_params": model_params(), "dataset_params": {"frame_shape": [INPUT_SIZE, INPUT_SIZE, 3]}}


def load_set(folder, read_file, device="cpu"):
    """A LivePortrait folder loaded strictly onto `device` -> (networks by name, in eval mode, config).

    read_file(path): one file's contents, read safely (the checkpoint reader's torch.load with weights_only)."""
    files = set_files(folder)
    states = read_set(folder, read_file)
    networks = load_networks(states, files={name: str(path) for name, path in files.items()})
    return {name: net.to(device).eval() for name, net in networks.items()}, liveportrait_config()
