"""Judging a checkpoint file on disk: its sha256 (cached), what is known about it, and what it holds.

A file is judged against what is published about it (the manifest's size and sha256, or a checksum a source
publishes for its own copy): "ok" when it matches (or matched when it arrived), "wrong" when its size or
sha256 contradicts it, "loads, unverified" when nothing is published and it only proved to load strictly,
"unchecked" when nothing is known at all. Reading a file is fomm_core's weights-only reader; `recognise`
proves the config it fits by a strict load.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Optional

from fomm_doctor.checkpoints import places
from fomm_doctor.checkpoints.manifest import published_checks
from fomm_doctor.errors import UserError
from fomm_doctor.net.digests import file_sha256

SHA_CACHE = "sha256-cache.json"
CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar", ".ckpt")

# What is known about a file present on disk (the `state` of a `present` item in list_checkpoints):
OK = "ok"  # its sha256 is a published one (or it was checked against a published checksum when it arrived)
WRONG = "wrong"  # its size or sha256 contradicts what is published or recorded
LOADS_UNVERIFIED = "loads, unverified"  # it loaded strictly when added or fetched; nothing published to compare
UNCHECKED = "unchecked"  # nothing published, never added: not even known to load


# ---------------------------------------------------------------- hashing with a cache

def sha256_cached(path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so repeated `list`/`check` runs stay instant."""
    path = Path(path)
    st = path.stat()
    key = os.path.normcase(str(path.resolve()))
    stamp = [st.st_size, st.st_mtime_ns]
    cache_path = places.user_data_dir() / SHA_CACHE
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    hit = cache.get(key)
    if isinstance(hit, dict) and hit.get("stamp") == stamp and hit.get("sha256"):
        return hit["sha256"]
    digest = file_sha256(path)
    cache[key] = {"stamp": stamp, "sha256": digest}
    try:
        places.write_json(cache_path, cache)
    except OSError:
        pass  # a read-only home only costs speed
    return digest


def verify(path, sha256: Optional[str]) -> Optional[bool]:
    """True/False when there is a sha256 to compare with; None when there is none."""
    if not sha256:
        return None
    return sha256_cached(path) == sha256.lower()


# ---------------------------------------------------------------- what is known about a file

def judge_file(path: Path, entry: Optional[dict], record: Optional[dict], hash_files: bool = True) -> dict:
    """{path, size, state, verified, why} for a file on disk: `entry` is its manifest entry (None for a file
    known only from the registry), `record` the registry record written when it was fetched or added.
    verified is True (ok), False (wrong) or None (loads, unverified / unchecked)."""
    size = path.stat().st_size
    record = record if record and record.get("file") == path.name else None
    digest = (lambda: sha256_cached(path)) if hash_files else (lambda: None)
    state, why = _judgement(size, published_checks(entry), record, digest)
    return {"path": str(path), "size": size, "state": state, "verified": {OK: True, WRONG: False}.get(state),
            "why": why}


def _judgement(size: int, published: dict, record: Optional[dict], digest: Callable) -> tuple:
    """(state, why): a checksum that vouched for it on arrival, else the published facts, else its record."""
    if _verified_on_arrival(record, size, published):
        return _compare(digest, {(record.get("sha256") or "").lower()},
                        (OK, f"its {record['verified_by']} matched the published one when it arrived"),
                        (WRONG, "its sha256 changed since it was verified"))
    wrong_size = bool(published["size"]) and size != published["size"]
    size_why = (WRONG, f"it is {size:,} bytes, not the {published['size']:,} published") if wrong_size else None
    # a wrong size settles it without hashing, unless some source serves a copy of its own with another size
    if wrong_size and not (published["sha256s"] - {published["sha256"]}):
        return size_why
    if published["sha256s"]:
        return _compare(digest, published["sha256s"], (OK, "its sha256 is the published one"),
                        size_why or (WRONG, "its sha256 is not the published one"))
    if record and record.get("sha256"):
        return _compare(digest, {record["sha256"].lower()},
                        (LOADS_UNVERIFIED, "it loaded strictly when it arrived; no published checksum to compare"),
                        (WRONG, "its sha256 changed since it was added"))
    return UNCHECKED, "no sha256 is published or recorded for it"


def _verified_on_arrival(record: Optional[dict], size: int, published: dict) -> bool:
    """It was checked against a published checksum when it arrived (a source's own md5 or sha256 included)."""
    if not record or record.get("size") != size:
        return False
    if record.get("verified_by") == "sha256":
        return (record.get("sha256") or "").lower() in published["sha256s"]
    if record.get("verified_by") == "md5":
        return (record.get("md5") or "").lower() in published["md5s"]
    return False


def _compare(digest: Callable, accepted: set, match: tuple, mismatch: tuple) -> tuple:
    got = digest()
    if got is None:
        return UNCHECKED, "not hashed"
    return match if got in accepted else mismatch


# ---------------------------------------------------------------- reading and recognising a file

def read(path):
    """fomm_core's weights-only reader; its FommError sentences become UserErrors here (one error type per layer)."""
    from fomm_core.model.checkpoint import read_checkpoint
    from fomm_core.errors import FommError
    try:
        return read_checkpoint(path)
    except FommError as exc:
        raise UserError(_truncated_zip(path) or str(exc)) from None


def _truncated_zip(path) -> Optional[str]:
    """torch.load reports some cut-short zip checkpoints as a bare OSError: a file that starts like a zip but
    has no central directory at its end is one whose download stopped early."""
    import zipfile
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return None
    if head == b"PK\x03\x04" and path.is_file() and not zipfile.is_zipfile(path):
        return (f"{path} is incomplete ({path.stat().st_size:,} bytes; the download was cut short); "
                "download it again and compare its size and sha256.")
    return None


def recognise(checkpoint: dict, path, hint: Optional[str] = None) -> Optional[str]:
    """The config a read checkpoint (FOMM or TPSMM) fits, proved by a strict load: `hint` (a manifest entry's
    config) when it fits, else None when it carries its own config (ours do; loaders use that), else the shipped
    config its shapes fit."""
    from fomm_core.model.config import (build_networks, checkpoint_family, detect_config, held_modules, load_config,
                                        matching_configs)

    family = checkpoint_family(checkpoint)
    fits = matching_configs(checkpoint)
    if hint and hint in fits:
        name = hint
    elif isinstance(checkpoint.get("config"), dict):
        name = "carried"
    else:
        name = detect_config(checkpoint)
    if name is None:
        raise UserError(f"{path} holds {family.upper()} weights that fit none of the shipped configs"
                        f"{_closest(checkpoint)}; it was trained with a config of its own (pass that YAML with "
                        "--config when you animate), or the file is damaged.")
    config = checkpoint["config"] if name == "carried" else load_config(name)
    if isinstance(config, dict) and "model_params" not in config:
        config = {"model_params": config}
    networks = build_networks(config)
    for label in held_modules(checkpoint):
        try:
            networks[label].load_state_dict(checkpoint[label], strict=True)
        except RuntimeError as exc:
            first = str(exc).split("\n\t", 2)[1] if "\n\t" in str(exc) else str(exc)[:200]
            raise UserError(f"{path} does not load strictly into its config {name} ({label}: {first.strip()}); "
                            "the file is damaged or from a modified model.") from None
    return None if name == "carried" else name


def _closest(checkpoint: dict) -> str:
    """' (closest: vox-256, where generator.final.bias is missing)': the shipped config of the checkpoint's family
    with the fewest differing entries and its first difference; '' when nothing is close."""
    from fomm_core.model.config import (FAMILIES, checkpoint_family, config_family, config_shapes, load_config,
                                        shipped_configs, state_shapes)

    family = checkpoint_family(checkpoint)
    have = {m: state_shapes(checkpoint[m]) for m in FAMILIES[family][0]}
    best = None
    for name in shipped_configs():
        if config_family(load_config(name)) != family:
            continue
        want = {m: shapes for m, shapes in config_shapes(name).items() if m in have}
        diffs = [f"{m}.{k}" + (" is missing" if k not in have[m] else " is unexpected" if k not in want[m]
                               else f" is {list(have[m][k])} instead of {list(want[m][k])}")
                 for m in want for k in sorted(set(want[m]) | set(have[m])) if have[m].get(k) != want[m].get(k)]
        if best is None or len(diffs) < len(best[1]):
            best = (name, diffs)
    if not best or len(best[1]) > 10:
        return ""
    return f" (closest: {best[0]}, where {best[1][0]})"
