"""The published checkpoints: the shipped manifest (checkpoints/manifest.json) merged with a user manifest
(`manifest.json` beside the user's checkpoints: extra entries or preferred mirrors), and what each entry
publishes about its file (size, sha256, a source's own checksums) to judge a file by."""
from __future__ import annotations

from typing import Optional

from fomm_doctor.checkpoints import places

MANIFEST = "manifest.json"

# Configs of face models, best first: what `resolve_checkpoint(None)` looks for before the bundled model.
FACE_CONFIGS = ("vox-256", "vox-512", "nemo-256", "tpsmm-vox-256")


def _entries(folder) -> list[dict]:
    """The named entries of one manifest file (none when it does not exist)."""
    data = places.read_json(folder / MANIFEST, {"checkpoints": []}).get("checkpoints", [])
    return [e for e in data if isinstance(e, dict) and e.get("name")]


def _merge(entries: dict, order: list, extra: dict) -> None:
    """A user entry with a known name puts its sources first and overrides the other fields it sets."""
    base = entries.get(extra["name"])
    if base is None:
        entries[extra["name"]] = dict(extra)
        order.append(extra["name"])
        return
    sources = list(extra.get("sources", [])) + list(base.get("sources", []))
    base.update(extra)
    base["sources"] = sources


def load_manifest(override=None) -> list[dict]:
    """Known checkpoints: the shipped manifest's entries, with the user manifests' entries merged in
    (the --dir folder's manifest wins over the per-user one)."""
    shipped = _entries(places.project_dir())
    entries = {e["name"]: dict(e) for e in shipped}
    order = [e["name"] for e in shipped]
    folders = [places.store_dir(override)] + ([places.user_data_dir()] if override else [])
    for folder in reversed(folders):  # later merges put their sources first
        for extra in _entries(folder):
            _merge(entries, order, extra)
    return [entries[n] for n in order]


def find_entry(name: str, manifest=None) -> Optional[dict]:
    """Manifest entry by name or by file name."""
    manifest = load_manifest() if manifest is None else manifest
    for e in manifest:
        if e.get("name") == name:
            return e
    for e in manifest:
        if e.get("file") == name:
            return e
    return None


def published_checks(entry: Optional[dict]) -> dict:
    """What is published about an entry's file: {"size", "sha256"} of the original (None when unknown) plus
    "sha256s" and "md5s": every digest a source publishes for the copy it serves (some serve a smaller,
    inference-only copy with a checksum of its own). An empty set of facts for no entry."""
    if not entry:
        return {"size": None, "sha256": None, "sha256s": set(), "md5s": set()}
    sha256s = {entry["sha256"].lower()} if entry.get("sha256") else set()
    md5s = set()
    for s in entry.get("sources", []):
        if s.get("sha256"):
            sha256s.add(s["sha256"].lower())
        if s.get("md5"):
            md5s.add(s["md5"].lower())
    return {"size": entry.get("size"), "sha256": (entry.get("sha256") or "").lower() or None,
            "sha256s": sha256s, "md5s": md5s}


def face_rank(config: Optional[str], entry: Optional[dict]) -> Optional[tuple]:
    """How good a default a face model is (lower is better): its config's place in FACE_CONFIGS, then a
    published sha256 before none. None for a model that is not of faces."""
    if config not in FACE_CONFIGS:
        return None
    return FACE_CONFIGS.index(config), 0 if entry and entry.get("sha256") else 1
