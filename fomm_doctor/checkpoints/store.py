"""The user's checkpoints: the registry of files fetched or added (`registry.json` beside them), listing what
is where, and resolving a name or path to a file.

Names come from the manifest (see manifest.py) and the registry; folders are searched in the order places.py
gives. With no name, the best face model present is used (see manifest.FACE_CONFIGS), else the bundled
64-px model with a note saying so. Nothing here prints: callers render. Every URL this module returns or
stores has its credentials masked.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fomm_doctor.checkpoints import places
from fomm_doctor.checkpoints.files import CHECKPOINT_SUFFIXES, WRONG, judge_file, sha256_cached
from fomm_doctor.checkpoints.manifest import face_rank, find_entry, load_manifest
from fomm_doctor.checkpoints.sets import is_set, present_set, set_in_folder, set_row
from fomm_doctor.errors import UserError
from fomm_doctor.net.redact import redact, redact_data
from fomm_doctor.units import byte_size

REGISTRY = "registry.json"
BUNDLED = "synth-64"  # the name of the bundled, self-trained model: resolve_checkpoint(BUNDLED) asks for it
FACE_DEFAULT = "vox"  # the face model the note on the bundled fallback says to fetch


# ---------------------------------------------------------------- the registry

def load_registry(folder: Path) -> list[dict]:
    return places.read_json(Path(folder) / REGISTRY, {"checkpoints": []}).get("checkpoints", [])


def register(folder: Path, record: dict) -> None:
    """Read-modify-write the folder's registry: one record per name."""
    path = Path(folder) / REGISTRY
    record = redact_data(record)  # a source URL's credentials are never stored
    data = places.read_json(path, {"schema": 1, "checkpoints": []})
    data["checkpoints"] = [r for r in data.get("checkpoints", []) if r.get("name") != record["name"]] + [record]
    places.write_json(path, data)


def make_record(name, file_name, config, digest, size, verified_by, source, placed, md5=None) -> dict:
    """One registry record: what the file is, how it was verified, where it came from (masked)."""
    record = {"name": name, "file": file_name, "config": config, "sha256": digest, "size": size,
              "verified_by": verified_by, "source": redact(source), "placed": placed,
              "added": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if md5:
        record["md5"] = md5
    return record


# ---------------------------------------------------------------- resolving a name or path

@dataclass
class ResolvedCheckpoint:
    """A checkpoint file on disk; usable wherever a path is (os.PathLike)."""
    path: Path
    config: Optional[str] = None  # the config it is known to fit; None: let the loader detect it
    entry: Optional[dict] = None  # its manifest or registry entry, when known by name
    note: Optional[str] = None  # one sentence for the user when this is a fallback (the bundled 64-px model)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


def _published_copy(path: Path, manifest) -> Optional[dict]:
    """The manifest entry a file given by path is a byte-exact copy of (same size, same sha256), or None.

    TPSMM's vox, taichi and ted files have the same shapes (and taichi and ted the same size): only the sha256
    tells a downloaded ted.pth.tar from the others, and with it its 384-px config. Hashed once (cached).
    """
    if not path.is_file():
        return None
    size = path.stat().st_size
    same_size = [e for e in manifest if e.get("size") == size and e.get("sha256")]
    if not same_size:
        return None
    digest = sha256_cached(path)
    return next((e for e in same_size if e["sha256"].lower() == digest), None)


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith(CHECKPOINT_SUFFIXES) or text.startswith(("~", "."))


def _present(entry: dict, dirs: list) -> Optional[Path]:
    """Where an entry's file is; for a set, its folder holding every file (what the loader takes)."""
    if is_set(entry):
        return present_set(entry, dirs)
    for d in dirs:
        p = Path(d) / entry["file"]
        if p.is_file():
            return p
    return None


def _registered(name: str, dirs: list) -> Optional[tuple]:
    for d in dirs:
        for r in load_registry(d):
            if r.get("name") == name or r.get("file") == name:
                p = Path(d) / r["file"]
                if p.is_file():
                    return p, r
    return None


def bundled_checkpoint() -> Optional[ResolvedCheckpoint]:
    """The manifest's first entry whose file is in the project's own folder (our self-trained model)."""
    project = places.project_dir()
    for e in load_manifest():
        if e.get("file") and (project / e["file"]).is_file():
            return ResolvedCheckpoint(project / e["file"], e.get("config"), e)
    return None


def _face_models(dirs: list, manifest: list):
    """(rank, ResolvedCheckpoint) for every published face model present whose size does not contradict the
    published one (a cut-short download is passed over; nothing is hashed here). Only the manifest says what
    a model shows: a model of one's own has the shapes of vox-256 whatever it was trained on."""
    for i, e in enumerate(manifest):
        rank = face_rank(e.get("config"), e)
        p = _present(e, dirs) if rank is not None else None
        if p is not None and judge_file(p, e, None, hash_files=False)["state"] != WRONG:
            yield rank + (i,), ResolvedCheckpoint(p, e.get("config"), e)


def _bundled_note(manifest: list) -> str:
    face = find_entry(FACE_DEFAULT, manifest) or {}
    size = f" ({byte_size(face['size'])})" if face.get("size") else ""
    return (f"only the bundled 64-px synthetic model is here, so the result is 64x64; "
            f"`fomm-doctor checkpoints fetch {FACE_DEFAULT}` gets the face model{size}.")


def default_checkpoint(override_dir=None) -> ResolvedCheckpoint:
    """The best published face model present (manifest.FACE_CONFIGS order, a published sha256 first, then the
    manifest's order); else the bundled model, with a note that says how to get a face model."""
    manifest = load_manifest(override_dir)
    faces = sorted(_face_models(places.checkpoint_dirs(override_dir), manifest), key=lambda pair: pair[0])
    if faces:
        return faces[0][1]
    found = bundled_checkpoint()
    if found is None:
        raise UserError("no checkpoint given and none is bundled in this build; pass --checkpoint NAME or a "
                        "path (`fomm-doctor checkpoints list` shows the names).")
    found.note = _bundled_note(manifest)
    return found


def resolve_checkpoint(name_or_path=None, override_dir=None) -> ResolvedCheckpoint:
    """A path (returned as is), a known name ('vox', or its file name; BUNDLED for the bundled model) or None
    (see default_checkpoint) -> ResolvedCheckpoint. Raises UserError with the command that gets a missing one."""
    if name_or_path is None:
        return default_checkpoint(override_dir)
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():  # a set's folder (the loader takes the folder); the entry when it holds a known set
        return ResolvedCheckpoint(path, None, set_in_folder(path, load_manifest(override_dir)))
    if path.exists():
        entry = _published_copy(path, load_manifest(override_dir))
        return ResolvedCheckpoint(path, entry.get("config"), entry) if entry else ResolvedCheckpoint(path)
    dirs = places.checkpoint_dirs(override_dir)
    manifest = load_manifest(override_dir)
    hit = _registered(text, dirs)
    if hit:
        p, record = hit
        return ResolvedCheckpoint(p, record.get("config"), record)
    entry = find_entry(text, manifest)
    if entry is not None:
        p = _present(entry, dirs)
        if p is not None:
            return ResolvedCheckpoint(p, entry.get("config"), entry)
        if is_set(entry):
            raise UserError(f"checkpoint '{entry['name']}' (a set of files) is not downloaded yet, or some of "
                            f"its files are missing; run `fomm-doctor checkpoints fetch {entry['name']}`, or if "
                            f"you have its folder, `fomm-doctor checkpoints add FOLDER`.")
        raise UserError(f"checkpoint '{entry['name']}' ({entry['file']}) is not downloaded yet; run "
                        f"`fomm-doctor checkpoints fetch {entry['name']}`, or if you have the file, "
                        f"`fomm-doctor checkpoints add PATH --name {entry['name']}`.")
    if _looks_like_path(text):
        raise UserError(f"checkpoint file {path} does not exist; check the path, or run "
                        "`fomm-doctor checkpoints list` to see the known names.")
    known = ", ".join(e["name"] for e in manifest) or "none"
    raise UserError(f"'{text}' is neither a checkpoint file nor a known name (known: {known}); use "
                    "`fomm-doctor checkpoints fetch NAME` or `fomm-doctor checkpoints add PATH`.")


# ---------------------------------------------------------------- listing

def _manifest_row(e: dict, dirs: list, records: dict, hash_files: bool) -> dict:
    if is_set(e):
        return set_row(e, dirs, records, hash_files)
    present = [judge_file(Path(d) / e["file"], e, records.get((str(d), e["name"])), hash_files)
               for d in dirs if (Path(d) / e["file"]).is_file()]
    return {"name": e["name"], "file": e["file"], "config": e.get("config"), "size": e.get("size"),
            "sha256": e.get("sha256"), "description": e.get("description", ""),
            "sources": len(e.get("sources", [])),
            "urls": [redact(src.get("url", "")) for src in e.get("sources", [])],
            "unverified": e.get("unverified"), "present": present}


def _registered_row(name: str, folder: Path, r: dict, manifest: list, hash_files: bool) -> dict:
    p = Path(folder) / r["file"]
    published = next((e for e in manifest if e.get("file") == r["file"]), None)  # a published file, renamed
    present = [judge_file(p, published, r, hash_files)] if p.is_file() else []
    return {"name": name, "file": r["file"], "config": r.get("config"), "size": r.get("size"),
            "sha256": r.get("sha256"), "description": r.get("description", "added by hand"),
            "sources": 0, "urls": [], "unverified": None, "present": present}


def list_checkpoints(override_dir=None, hash_files=True) -> list[dict]:
    """Every known checkpoint (manifest entries, then registered files with other names) and where it is:
    [{name, file, config, size, sha256, description, sources, urls, unverified,
      present: [{path, size, state, verified, why}]}] (see files.judge_file for state and verified)."""
    dirs = places.checkpoint_dirs(override_dir)
    registry, records = {}, {}  # name -> (folder, record) of its first folder; (folder, name) -> record
    for d in dirs:
        for r in load_registry(d):
            registry.setdefault(r.get("name"), (d, r))
            records.setdefault((str(d), r.get("name")), r)
    manifest = load_manifest(override_dir)
    rows = [_manifest_row(e, dirs, records, hash_files) for e in manifest]
    names = {e["name"] for e in manifest}
    rows += [_registered_row(name, d, r, manifest, hash_files)
             for name, (d, r) in registry.items() if name and name not in names]
    return redact_data(rows)


def checkpoint_facts(override_dir=None, hash_files=True) -> dict:
    """Plain data for `fomm-doctor check`: the folders searched and one row per known checkpoint."""
    return {"dirs": [str(d) for d in places.checkpoint_dirs(override_dir)],
            "store": str(places.store_dir(override_dir)),
            "checkpoints": list_checkpoints(override_dir, hash_files)}
