"""A LivePortrait set of our own networks with seeded random weights, saved as the published folder holds the
five files (the stitching file split into its three entries), and a home whose manifest accepts it: what a user's
hand-downloaded folder looks like to `checkpoints add`, without the published weights (they cannot be downloaded
here). Random weights give a flat grey picture; the plumbing, sizes and sentences are what such a set tests."""
import json
from pathlib import Path

import torch


def write_random_set(folder: Path, seed: int = 0) -> Path:
    """The five files under `folder` in the published layout (base_models/, retargeting_models/); -> folder."""
    from fomm_core.model.liveportrait.config import build_networks
    from fomm_core.model.liveportrait.loading import PUBLISHED_FILES, STITCHING_PARTS
    torch.manual_seed(seed)
    for name, net in build_networks().items():
        state = net.state_dict()
        if name == "stitching_retargeting_module":
            state = {entry: {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(part + ".")}
                     for entry, part in STITCHING_PARTS.items()}
        (folder / PUBLISHED_FILES[name]).parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, folder / PUBLISHED_FILES[name])
    return folder


def accept_unpublished_set(home: Path) -> None:
    """home/manifest.json with the shipped `liveportrait` entry, its sizes and hashes left out (random weights
    match nothing published) and no source to fetch from."""
    from fomm_doctor.checkpoints import manifest
    entry = dict(manifest.find_entry("liveportrait"), sources=[])
    entry["files"] = [dict(f, size=None, sha256=None) for f in entry["files"]]
    home.mkdir(parents=True, exist_ok=True)
    (home / "manifest.json").write_text(json.dumps({"schema": 1, "checkpoints": [entry]}))
