"""An inference-only copy of a checkpoint: the generator and keypoint detector, optionally in float16."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fomm_doctor.checkpoints import places
from fomm_doctor.checkpoints.files import read, recognise
from fomm_doctor.checkpoints.store import resolve_checkpoint


@dataclass
class Slimmed:
    path: Path
    size: int
    original_size: int
    config: Optional[str]
    half: bool


def _slimmed(checkpoint: dict, half: bool) -> dict:
    """The state dicts the original demo loads (FOMM's two; TPSMM's three and avd_network) and the config the file
    carries, float weights halved when asked."""
    from fomm_core.model.config import held_modules
    slimmed = {}
    for key in [n for n in held_modules(checkpoint) if n != "bg_predictor"]:  # training only
        # float buffers and weights only; num_batches_tracked (int64) must stay an integer
        slimmed[key] = {k: v.half() if half and v.is_floating_point() else v for k, v in checkpoint[key].items()}
    if isinstance(checkpoint.get("config"), dict):
        slimmed["config"] = checkpoint["config"]
    return slimmed


def _default_out(src: Path, half: bool, override_dir) -> Path:
    """Beside the original (`NAME-slim[-fp16].pth.tar`), or in the store when that folder is read-only."""
    stem = src.name[:-8] if src.name.endswith(".pth.tar") else src.stem
    out = src.with_name(f"{stem}-slim{'-fp16' if half else ''}.pth.tar")
    if not os.access(src.parent, os.W_OK):
        out = places.store_dir(override_dir) / out.name
    return out


def _save_atomic(data: dict, out: Path) -> None:
    import torch
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".part", dir=out.parent)
    os.close(fd)
    try:
        # the legacy (pre-1.6) format: the original code's pinned torch (1.0) cannot read the zip format
        torch.save(data, tmp, _use_new_zipfile_serialization=False)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def slim(name_or_path, half: bool = False, out=None, override_dir=None) -> Slimmed:
    """An inference-only copy: the state dicts the original demo loads ({'generator', 'kp_detector'} for FOMM),
    optionally float16 for storage (loading copies them into float32 modules). Written atomically."""
    resolved = resolve_checkpoint(name_or_path, override_dir)
    src = Path(resolved.path)
    checkpoint = read(src)
    config = recognise(checkpoint, src, hint=resolved.config)
    out = Path(out).expanduser() if out is not None else _default_out(src, half, override_dir)
    _save_atomic(_slimmed(checkpoint, half), out)
    return Slimmed(out, out.stat().st_size, src.stat().st_size, config, half)
