"""Checkpoints published as a set of files in one folder (LivePortrait: five networks), where a single-file
entry has `file` a set entry has `files`: [{path, size, sha256, holds}] (see the manifest's notes).

A set lives in the store as a folder named after the entry, each file at its published path inside it; that
folder is what the loader takes. Each file is judged on its own (published size and sha256; where no sha256
is published, the one recorded when it arrived and the network it holds), the set by its worst file.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Optional

from fomm_doctor.checkpoints.files import OK, UNCHECKED, WRONG, sha256_cached
from fomm_doctor.errors import UserError
from fomm_doctor.net.sniff import looks_like_html

MISSING = "missing"  # a file of the set is not there
UNVERIFIED = "unverified"  # no sha256 is published for it: it holds the right network, unchanged since it arrived
PARTLY = "partly verified"  # a whole set where some files have no published sha256 (never shown as ok)

_SHA256 = re.compile(r"[0-9a-f]{64}")


# ---------------------------------------------------------------- the manifest's `files`

def is_set(entry: Optional[dict]) -> bool:
    return bool(entry) and "files" in entry


def _plain_text(text: str) -> bool:
    """No control character and nothing a file system cannot be given (JSON's "\\ud800" is a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(ord(c) < 32 or ord(c) == 127 for c in text)


def member_path(text, name: str = "a set") -> str:
    """A file's path inside its set folder, as the manifest gives it, or UserError: relative, with forward
    slashes, and no part that is empty, '.' or '..' (a path must never reach outside the set's folder)."""
    bad = (not isinstance(text, str) or not text or "\\" in text or ":" in text or not _plain_text(text)
           or text.startswith("/") or any(p in ("", ".", "..") for p in text.split("/")))
    if bad:
        raise UserError(f"the manifest entry {name} lists a file path {text!r} that is not a plain relative path "
                        "inside the set's folder (forward slashes, no '..'); fix or remove that entry.")
    return text


def _checked_number(value, what: str, name: str):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise UserError(f"the manifest entry {name} gives {what} {value!r}, not a positive whole number of bytes.")
    return value


def _checked_sha(value, path: str, name: str) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value.lower()):
        raise UserError(f"the manifest entry {name} gives {path} the sha256 {value!r}, not 64 hex digits.")
    return value.lower()


def set_files(entry: dict) -> list[dict]:
    """An entry's `files` checked -> [{path, size, sha256, holds}] (size and sha256 None where unpublished,
    holds: a key prefix the file's state dict has, None when unsaid). UserError for a malformed list."""
    name = entry.get("name", "?")
    files = entry.get("files")
    if not isinstance(files, list) or not files or not all(isinstance(f, dict) for f in files):
        raise UserError(f"the manifest entry {name} has a `files` list that is empty or not a list of objects.")
    out, seen = [], set()
    for f in files:
        path = member_path(f.get("path"), name)
        if path.lower() in seen:
            raise UserError(f"the manifest entry {name} lists {path} twice.")
        seen.add(path.lower())
        holds = f.get("holds")
        out.append({"path": path, "size": _checked_number(f.get("size"), f"{path} the size", name),
                    "sha256": _checked_sha(f.get("sha256"), path, name),
                    "holds": holds if isinstance(holds, str) and holds else None})
    return out


# ---------------------------------------------------------------- judging files on disk

def network_problem(path: Path, spec: dict) -> Optional[str]:
    """Why a file is not the network its place in the set holds (a web page, not a PyTorch file, another
    network's tensors), or None. Read with the weights-only unpickler, memory-mapped where it can be."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if looks_like_html(head):
        return "it is a web page saved in its place"
    if not spec.get("holds"):
        return None
    keys = _state_keys(path)
    if keys is None:
        return "it is not a PyTorch weights file"
    if not any(k.startswith(spec["holds"]) for k in keys):
        shown = ", ".join(sorted(keys)[:3]) or "nothing"
        return f"it holds another network (its tensors start {shown}), not the one {spec['path']} holds"
    return None


def _state_keys(path: Path) -> Optional[list]:
    import torch
    for mmap in (True, False):  # mmap needs the zip format; older files are read whole
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception:  # torch raises many types for a file it cannot read; all mean "not weights"
            continue
        return [str(k) for k in data] if isinstance(data, dict) else []
    return None


def judge_member(path: Path, spec: dict, recorded: Optional[dict], hash_files: bool = True) -> dict:
    """{path (inside the set), size, state, why} for one file of a set: `recorded` is its line in the registry
    record written when the set arrived (sha256 and how it was verified then)."""
    if not path.is_file():
        return {"path": spec["path"], "size": None, "state": MISSING, "why": f"{spec['path']} is missing"}
    size = path.stat().st_size
    state, why = _member_state(path, size, spec, recorded, (lambda: sha256_cached(path)) if hash_files else None)
    return {"path": spec["path"], "size": size, "state": state, "why": why}


def _member_state(path: Path, size: int, spec: dict, recorded: Optional[dict], digest: Optional[Callable]) -> tuple:
    if spec["size"] and size != spec["size"]:
        return WRONG, f"{spec['path']} is {size:,} bytes, not the {spec['size']:,} published"
    if digest is None:
        return UNCHECKED, f"{spec['path']} was not hashed"
    if spec["sha256"]:
        if digest() == spec["sha256"]:
            return OK, f"{spec['path']}: its sha256 is the published one"
        return WRONG, f"{spec['path']}: its sha256 is not the published one"
    if recorded and recorded.get("sha256"):
        if digest() == recorded["sha256"]:
            return UNVERIFIED, f"{spec['path']}: no sha256 is published; unchanged since it arrived"
        return WRONG, f"{spec['path']}: its sha256 changed since it arrived"
    problem = network_problem(path, spec)
    if problem:
        return WRONG, f"{spec['path']}: {problem}"
    return UNVERIFIED, f"{spec['path']}: no sha256 is published or recorded"


def judge_set(folder: Path, entry: dict, record: Optional[dict], hash_files: bool = True) -> dict:
    """{path, size, state, verified, why, files} for a set's folder: its worst file decides. state is OK only
    when every file matches a published sha256; PARTLY when the rest have none published; WRONG (why naming the
    file) when any is missing or contradicts what is published or recorded."""
    recorded = {f.get("path"): f for f in (record or {}).get("files", []) if isinstance(f, dict)}
    files = [judge_member(folder / s["path"], s, recorded.get(s["path"]), hash_files) for s in set_files(entry)]
    state, why = _worst(files)
    return {"path": str(folder), "size": sum(f["size"] or 0 for f in files), "state": state,
            "verified": {OK: True, WRONG: False}.get(state), "why": why, "files": files}


def _worst(files: list) -> tuple:
    """(state, why) of a set from its files' judgements: the worst decides."""
    bad = [f for f in files if f["state"] in (WRONG, MISSING)]
    unverified = [f["path"] for f in files if f["state"] != OK]
    if bad:
        return WRONG, "; ".join(f["why"] for f in bad)
    if not unverified:
        return OK, f"all {len(files)} files have their published sha256"
    if any(f["state"] == UNCHECKED for f in files):
        return UNCHECKED, "its files were not hashed"
    return PARTLY, (f"{len(files) - len(unverified)} of {len(files)} files verified by sha256; no sha256 is "
                    f"published for {', '.join(unverified)}")


# ---------------------------------------------------------------- where a set is

def set_folder(entry: dict, folder) -> Path:
    """Where a set lives inside a checkpoint folder: a folder named after the entry."""
    return Path(folder) / entry["name"]


def present_set(entry: dict, dirs: list) -> Optional[Path]:
    """The first folder among `dirs` holding all of the set's files (a set with one missing is not present)."""
    specs = set_files(entry)
    for d in dirs:
        where = set_folder(entry, d)
        if all((where / s["path"]).is_file() for s in specs):
            return where
    return None


def partial_sets(entry: dict, dirs: list) -> list:
    """Set folders among `dirs` that hold some of its files: shown by `list` (with what is missing)."""
    return [set_folder(entry, d) for d in dirs if set_folder(entry, d).is_dir()]


def set_row(entry: dict, dirs: list, records: dict, hash_files: bool) -> dict:
    """The `checkpoints list` row of a set: like a single file's, `file` being its folder, plus `files`."""
    from fomm_doctor.net.redact import redact
    present = [judge_set(p, entry, records.get((str(p.parent), entry["name"])), hash_files)
               for p in partial_sets(entry, dirs)]
    specs = set_files(entry)
    sizes = [s["size"] for s in specs]
    return {"name": entry["name"], "file": entry.get("file") or entry["name"] + "/", "config": entry.get("config"),
            "family": entry.get("family"), "size": sum(sizes) if all(sizes) else None, "sha256": None,
            "description": entry.get("description", ""), "sources": len(entry.get("sources", [])),
            "urls": [redact(src.get("url", "")) for src in entry.get("sources", [])],
            "unverified": entry.get("unverified"), "files": specs, "present": present}


def swap_in(staging: Path, final: Path) -> None:
    """Put a complete set folder at `final` in place of whatever stood there (an older, damaged or partial
    copy), so the store never holds half a set under its name."""
    import os
    import shutil
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def set_record(entry: dict, folder: Path, files: list, source: str, placed: str) -> dict:
    """The registry record of a set: {name, file (the folder), set, files: [{path, sha256, size, verified_by}]}."""
    import time
    verified = all(f["verified_by"] == "sha256" for f in files)
    return {"name": entry["name"], "file": folder.name, "set": True, "config": entry.get("config"),
            "size": sum(f["size"] for f in files), "sha256": None,
            "verified_by": "sha256" if verified else "partly", "source": source, "placed": placed,
            "files": files, "added": time.strftime("%Y-%m-%dT%H:%M:%S")}


def accept_member(path: Path, spec: dict) -> tuple:
    """(its registry line {path, sha256, size, verified_by}, None) when a file is the one published at its
    place in the set (by size and sha256, else by the network it holds), else (None, why)."""
    size = path.stat().st_size
    if spec["size"] and size != spec["size"]:
        return None, network_problem(path, spec) or f"it is {size:,} bytes, not the {spec['size']:,} published"
    from fomm_doctor.net.digests import file_sha256
    digest = file_sha256(path)
    if spec["sha256"] and digest != spec["sha256"]:
        return None, network_problem(path, spec) or "its sha256 is not the published one"
    problem = None if spec["sha256"] else network_problem(path, spec)
    if problem:
        return None, problem
    how = "sha256" if spec["sha256"] else "unverified"
    return {"path": spec["path"], "sha256": digest, "size": size, "verified_by": how}, None


# ---------------------------------------------------------------- a folder the user downloaded by hand

def _layouts(folder: Path, entry: dict, specs: list) -> list:
    """Where each file could be in a folder the user has: the set's own layout in the folder, in a subfolder
    named after the set (the folder holding it was given), or every file flat in the folder."""
    canonical = {s["path"]: folder / s["path"] for s in specs}
    below = {s["path"]: folder / entry["name"] / s["path"] for s in specs}
    flat = {s["path"]: folder / Path(s["path"]).name for s in specs}
    return [canonical, below, flat]


def locate_members(folder: Path, entry: dict) -> dict:
    """{path in the set: the file in `folder` or None}, from the layout that finds the most of them."""
    specs = set_files(entry)
    best = max(_layouts(folder, entry, specs), key=lambda lay: sum(p.is_file() for p in lay.values()))
    return {k: (p if p.is_file() else None) for k, p in best.items()}


def set_in_folder(folder: Path, manifest: list) -> Optional[dict]:
    """The set entry whose files are all in `folder` in its own layout (a set's folder given by path)."""
    for e in manifest:
        if is_set(e) and all((folder / s["path"]).is_file() for s in set_files(e)):
            return e
    return None


def best_set_for(folder: Path, manifest: list) -> Optional[dict]:
    """The set entry most of whose files a hand-downloaded folder holds, or None when it holds none."""
    scored = [(sum(p is not None for p in locate_members(folder, e).values()), e) for e in manifest if is_set(e)]
    scored = [pair for pair in scored if pair[0]]
    return max(scored, key=lambda pair: pair[0])[1] if scored else None
