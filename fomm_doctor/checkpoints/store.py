"""Where checkpoints live, what they are called, and how they get there (fetch, add, slim, verify).

Places, searched in this order:
  1. a folder given by the caller (`--dir`),
  2. the per-user data folder: $FOMM_CHECKPOINTS_DIR, else $FOMM_DOCTOR_HOME/checkpoints, else the platform's
     convention (%LOCALAPPDATA%\\fomm-doctor\\checkpoints, ~/Library/Application Support/fomm-doctor/checkpoints,
     $XDG_DATA_HOME or ~/.local/share, then fomm-doctor/checkpoints),
  3. the project's own `checkpoints/` (the bundled, self-trained checkpoint).
Names come from the shipped manifest (checkpoints/manifest.json), a user manifest beside the data folder's
checkpoints (`manifest.json` there: extra entries or preferred mirrors) and the registry of files the user
added (`registry.json` there). Nothing here prints: callers render.

A file on disk is judged against what is published about it (the manifest's size and sha256, or a checksum a
source publishes for its own copy): "ok" when it matches (or matched when it arrived), "wrong" when its size or
sha256 contradicts it, "loads, unverified" when nothing is published and it only proved to load strictly,
"unchecked" when nothing is known at all. Fetch and add refuse a file that contradicts the published checksum of
the name it would go by. Every URL this module returns, raises or stores has its credentials masked.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlparse

from fomm_doctor.net.download import file_digest, file_sha256
from fomm_doctor.errors import NetworkError, UserError
from fomm_doctor.net.redact import redact, redact_data

MANIFEST = "manifest.json"
REGISTRY = "registry.json"
SHA_CACHE = "sha256-cache.json"
CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar", ".ckpt")
PAGE_CAP = 4 * 1024 * 1024  # a Drive listing or confirmation page is ~10 KB, a Yandex API answer ~1 KB
PAGE_DEADLINE = 60.0  # seconds for a whole page, however slowly it trickles in

# What is known about a file present on disk (the `state` of a `present` item in list_checkpoints):
OK = "ok"  # its sha256 is a published one (or it was checked against a published checksum when it arrived)
WRONG = "wrong"  # its size or sha256 contradicts what is published or recorded
LOADS_UNVERIFIED = "loads, unverified"  # it loaded strictly when added or fetched; nothing published to compare
UNCHECKED = "unchecked"  # nothing published, never added: not even known to load


# ---------------------------------------------------------------- places

def user_data_dir() -> Path:
    """The per-user checkpoints folder (not created here)."""
    direct = os.environ.get("FOMM_CHECKPOINTS_DIR")
    if direct:
        return Path(direct).expanduser()
    home = os.environ.get("FOMM_DOCTOR_HOME")
    if home:
        return Path(home).expanduser() / "checkpoints"
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "fomm-doctor" / "checkpoints"


def project_dir() -> Path:
    from fomm_core.resources import checkpoints_dir
    return checkpoints_dir()


def store_dir(override=None) -> Path:
    """Where fetch/add/slim write: the --dir folder, else the per-user folder."""
    return Path(override).expanduser() if override else user_data_dir()


def checkpoint_dirs(override=None) -> list[Path]:
    """Folders searched for checkpoint files, first match wins (duplicates removed)."""
    dirs, seen = [], set()
    for d in ([Path(override).expanduser()] if override else []) + [user_data_dir(), project_dir()]:
        key = os.path.normcase(str(d.resolve() if d.exists() else d))
        if key not in seen:
            seen.add(key)
            dirs.append(d)
    return dirs


# ---------------------------------------------------------------- small JSON files, written atomically

def _read_json(path: Path, default):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable JSON ({type(exc).__name__}); fix or delete it.") from None


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- manifest and registry

def load_manifest(override=None) -> list[dict]:
    """Known checkpoints: the shipped manifest's entries, with the user manifest's entries merged in
    (a user entry with a known name puts its sources first and overrides the other fields it sets)."""
    shipped = _read_json(project_dir() / MANIFEST, {"checkpoints": []}).get("checkpoints", [])
    entries = {e["name"]: dict(e) for e in shipped if isinstance(e, dict) and e.get("name")}
    order = [e["name"] for e in shipped if isinstance(e, dict) and e.get("name")]
    folders = [store_dir(override)] + ([user_data_dir()] if override else [])  # --dir's manifest wins
    for folder in reversed(folders):  # later merges put their sources first
        for e in _read_json(folder / MANIFEST, {"checkpoints": []}).get("checkpoints", []):
            if not isinstance(e, dict) or not e.get("name"):
                continue
            if e["name"] in entries:
                base = entries[e["name"]]
                sources = list(e.get("sources", [])) + list(base.get("sources", []))
                base.update(e)
                base["sources"] = sources
            else:
                entries[e["name"]] = dict(e)
                order.append(e["name"])
    return [entries[n] for n in order]


def load_registry(folder: Path) -> list[dict]:
    return _read_json(Path(folder) / REGISTRY, {"checkpoints": []}).get("checkpoints", [])


def _register(folder: Path, record: dict) -> None:
    """Read-modify-write the folder's registry: one record per name."""
    path = Path(folder) / REGISTRY
    record = redact_data(record)  # a source URL's credentials are never stored
    data = _read_json(path, {"schema": 1, "checkpoints": []})
    data["checkpoints"] = [r for r in data.get("checkpoints", []) if r.get("name") != record["name"]] + [record]
    _write_json(path, data)


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


# ---------------------------------------------------------------- resolving a name or path

@dataclass
class ResolvedCheckpoint:
    """A checkpoint file on disk; usable wherever a path is (os.PathLike)."""
    path: Path
    config: Optional[str] = None  # the config it is known to fit; None: let the loader detect it
    entry: Optional[dict] = None  # its manifest or registry entry, when known by name

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith(CHECKPOINT_SUFFIXES) or text.startswith(("~", "."))


def _present(entry: dict, dirs: list) -> Optional[Path]:
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
    for e in load_manifest():
        if e.get("file") and (project_dir() / e["file"]).is_file():
            return ResolvedCheckpoint(project_dir() / e["file"], e.get("config"), e)
    return None


def resolve_checkpoint(name_or_path=None, override_dir=None) -> ResolvedCheckpoint:
    """A path (returned as is), a known name ('vox', or its file name) or None (the bundled checkpoint)
    -> ResolvedCheckpoint. Raises UserError with the command that gets a missing one."""
    if name_or_path is None:
        found = bundled_checkpoint()
        if found is None:
            raise UserError("no checkpoint given and none is bundled in this build; pass --checkpoint NAME or a "
                            "path (`fomm-doctor checkpoints list` shows the names).")
        return found
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return ResolvedCheckpoint(path)
    dirs = checkpoint_dirs(override_dir)
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
        raise UserError(f"checkpoint '{entry['name']}' ({entry['file']}) is not downloaded yet; run "
                        f"`fomm-doctor checkpoints fetch {entry['name']}`, or if you have the file, "
                        f"`fomm-doctor checkpoints add PATH --name {entry['name']}`.")
    if _looks_like_path(text):
        raise UserError(f"checkpoint file {path} does not exist; check the path, or run "
                        "`fomm-doctor checkpoints list` to see the known names.")
    known = ", ".join(e["name"] for e in manifest) or "none"
    raise UserError(f"'{text}' is neither a checkpoint file nor a known name (known: {known}); use "
                    "`fomm-doctor checkpoints fetch NAME` or `fomm-doctor checkpoints add PATH`.")


# ---------------------------------------------------------------- hashing with a cache

def sha256_cached(path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so repeated `list`/`check` runs stay instant."""
    path = Path(path)
    st = path.stat()
    key = os.path.normcase(str(path.resolve()))
    stamp = [st.st_size, st.st_mtime_ns]
    cache_path = user_data_dir() / SHA_CACHE
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
        _write_json(cache_path, cache)
    except OSError:
        pass  # a read-only home only costs speed
    return digest


def verify(path, sha256: Optional[str]) -> Optional[bool]:
    """True/False when there is a sha256 to compare with; None when there is none."""
    if not sha256:
        return None
    return sha256_cached(path) == sha256.lower()


# ---------------------------------------------------------------- listing

def published_checks(entry: dict) -> dict:
    """What is published about an entry's file: {"size", "sha256"} of the original (None when unknown) plus
    "sha256s" and "md5s": every digest a source publishes for the copy it serves (some serve a smaller,
    inference-only copy with a checksum of its own)."""
    sha256s = {entry["sha256"].lower()} if entry.get("sha256") else set()
    md5s = set()
    for s in entry.get("sources", []):
        if s.get("sha256"):
            sha256s.add(s["sha256"].lower())
        if s.get("md5"):
            md5s.add(s["md5"].lower())
    return {"size": entry.get("size"), "sha256": (entry.get("sha256") or "").lower() or None,
            "sha256s": sha256s, "md5s": md5s}


def judge_file(path: Path, entry: Optional[dict], record: Optional[dict], hash_files: bool = True) -> dict:
    """{path, size, state, verified, why} for a file on disk: `entry` is its manifest entry (None for a file
    known only from the registry), `record` the registry record written when it was fetched or added.
    verified is True (ok), False (wrong) or None (loads, unverified / unchecked)."""
    size = path.stat().st_size
    published = published_checks(entry) if entry else {"size": None, "sha256": None, "sha256s": set(),
                                                          "md5s": set()}
    record = record if record and record.get("file") == path.name else None

    def out(state, why):
        return {"path": str(path), "size": size, "state": state,
                "verified": {OK: True, WRONG: False}.get(state), "why": why}

    digest = (lambda: sha256_cached(path)) if hash_files else (lambda: None)
    # checked against a published checksum when it arrived (a source's own md5 or sha256 included)
    if record and record.get("verified_by") in ("sha256", "md5") and record.get("size") == size and \
            ((record.get("verified_by") == "sha256" and (record.get("sha256") or "").lower() in published["sha256s"])
             or (record.get("verified_by") == "md5" and (record.get("md5") or "").lower() in published["md5s"])):
        got = digest()
        if got is None:
            return out(UNCHECKED, "not hashed")
        if got == (record.get("sha256") or "").lower():
            return out(OK, f"its {record['verified_by']} matched the published one when it arrived")
        return out(WRONG, "its sha256 changed since it was verified")
    # a wrong size settles it without hashing, unless some source serves a copy of its own with another size
    if published["size"] and size != published["size"] and not (published["sha256s"] - {published["sha256"]}):
        return out(WRONG, f"it is {size:,} bytes, not the {published['size']:,} published")
    if published["sha256s"]:
        got = digest()
        if got is None:
            return out(UNCHECKED, "not hashed")
        if got in published["sha256s"]:
            return out(OK, "its sha256 is the published one")
        if published["size"] and size != published["size"]:
            return out(WRONG, f"it is {size:,} bytes, not the {published['size']:,} published")
        return out(WRONG, "its sha256 is not the published one")
    if record and record.get("sha256"):
        got = digest()
        if got is None:
            return out(UNCHECKED, "not hashed")
        if got == record["sha256"].lower():
            return out(LOADS_UNVERIFIED, "it loaded strictly when it arrived; no published checksum to compare")
        return out(WRONG, "its sha256 changed since it was added")
    return out(UNCHECKED, "no sha256 is published or recorded for it")


def list_checkpoints(override_dir=None, hash_files=True) -> list[dict]:
    """Every known checkpoint (manifest entries, then registered files with other names) and where it is:
    [{name, file, config, size, sha256, description, sources, urls, unverified,
      present: [{path, size, state, verified, why}]}] (see judge_file for state and verified)."""
    dirs = checkpoint_dirs(override_dir)
    rows, names = [], set()
    registry = {}
    records = {}  # (folder, name) -> record
    for d in dirs:
        for r in load_registry(d):
            registry.setdefault(r.get("name"), (d, r))
            records.setdefault((str(d), r.get("name")), r)
    manifest = load_manifest(override_dir)
    for e in manifest:
        present = []
        for d in dirs:
            p = Path(d) / e["file"]
            if p.is_file():
                present.append(judge_file(p, e, records.get((str(d), e["name"])), hash_files))
        rows.append({"name": e["name"], "file": e["file"], "config": e.get("config"), "size": e.get("size"),
                     "sha256": e.get("sha256"), "description": e.get("description", ""),
                     "sources": len(e.get("sources", [])),
                     "urls": [redact(src.get("url", "")) for src in e.get("sources", [])],
                     "unverified": e.get("unverified"), "present": present})
        names.add(e["name"])
    for name, (d, r) in registry.items():
        if name in names or not name:
            continue
        p = Path(d) / r["file"]
        published = next((e for e in manifest if e.get("file") == r["file"]), None)  # a published file, renamed
        present = [judge_file(p, published, r, hash_files)] if p.is_file() else []
        rows.append({"name": name, "file": r["file"], "config": r.get("config"), "size": r.get("size"),
                     "sha256": r.get("sha256"), "description": r.get("description", "added by hand"),
                     "sources": 0, "urls": [], "unverified": None, "present": present})
    return redact_data(rows)


def checkpoint_facts(override_dir=None, hash_files=True) -> dict:
    """Plain data for `fomm-doctor check`: the folders searched and one row per known checkpoint."""
    return {"dirs": [str(d) for d in checkpoint_dirs(override_dir)], "store": str(store_dir(override_dir)),
            "checkpoints": list_checkpoints(override_dir, hash_files)}


# ---------------------------------------------------------------- reading and recognising a file

def _read(path):
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
    """The config a read checkpoint fits, proved by a strict load: `hint` (a manifest entry's config) when it
    fits, else None when it carries its own config (ours do; loaders use that), else the shipped config its
    shapes fit."""
    from fomm_core.model.config import build_models, detect_config, load_config, matching_configs

    gen, kp = checkpoint["generator"], checkpoint["kp_detector"]
    fits = matching_configs(gen, kp)
    if hint and hint in fits:
        name = hint
    elif isinstance(checkpoint.get("config"), dict):
        name = "carried"
    else:
        name = detect_config(gen, kp)
    if name is None:
        raise UserError(f"{path} holds FOMM weights that fit none of the shipped configs{_closest(gen, kp)}; "
                        "it was trained with a config of its own (pass that YAML with --config when you "
                        "animate), or the file is damaged.")
    config = checkpoint["config"] if name == "carried" else load_config(name)
    if isinstance(config, dict) and "model_params" not in config:
        config = {"model_params": config}
    generator, kp_detector = build_models(config)
    for label, module, state in (("generator", generator, gen), ("kp_detector", kp_detector, kp)):
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).split("\n\t", 2)[1] if "\n\t" in str(exc) else str(exc)[:200]
            raise UserError(f"{path} does not load strictly into its config {name} ({label}: {first.strip()}); "
                            "the file is damaged or from a modified model.") from None
    return None if name == "carried" else name


def _closest(gen: dict, kp: dict) -> str:
    """' (closest: vox-256, where generator.final.bias is missing)': the shipped config with the fewest
    differing entries and its first difference; '' when nothing is close."""
    from fomm_core.model.config import config_shapes, shipped_configs, state_shapes

    have = {"generator": state_shapes(gen), "kp_detector": state_shapes(kp)}
    best = None
    for name in shipped_configs():
        want = dict(zip(("generator", "kp_detector"), config_shapes(name)))
        diffs = [f"{m}.{k}" + (" is missing" if k not in have[m] else " is unexpected" if k not in want[m]
                               else f" is {list(have[m][k])} instead of {list(want[m][k])}")
                 for m in want for k in sorted(set(want[m]) | set(have[m])) if have[m].get(k) != want[m].get(k)]
        if best is None or len(diffs) < len(best[1]):
            best = (name, diffs)
    if not best or len(best[1]) > 10:
        return ""
    return f" (closest: {best[0]}, where {best[1][0]})"


# ---------------------------------------------------------------- placing files

def _copy_atomic(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _link(src: Path, dest: Path) -> str:
    """Symlink, else hardlink (Windows without developer mode; same volume only). -> which one."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".link-tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(src.resolve(), tmp)
        kind = "symlink"
    except (OSError, NotImplementedError):
        try:
            os.link(src, tmp)
            kind = "hardlink"
        except OSError as exc:
            raise UserError(f"cannot link {src} into {dest.parent} ({exc.strerror or exc}); "
                            "run `fomm-doctor checkpoints add` without --link to copy it instead.") from None
    os.replace(tmp, dest)
    return kind


@dataclass
class Added:
    name: str
    path: Path
    config: Optional[str]  # None: the config stored in the file
    sha256: str
    size: int
    placed: str  # "copy", "symlink", "hardlink" or "in place"
    entry: Optional[dict] = None
    notes: list = field(default_factory=list)
    verified_by: str = "load"  # "sha256" or "md5" (a published checksum matched), else "load"


def _saved_page_error(src: Path, manifest: list) -> Optional[str]:
    """The sentence for a cloud drive's web page saved in place of a checkpoint, naming the file it stands for
    and the command that gets it; None when the file is no such page (or names nothing)."""
    from fomm_doctor.net import cloud_drive as cd
    try:
        with open(src, "rb") as f:
            head = f.read(1 << 20)
    except OSError:
        return None
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:15].lower()
    if not (start.startswith((b"<!doctype", b"<html", b"<head")) or b"<html" in head[:512].lower()):
        return None
    facts = cd.saved_page_facts(head.decode("utf-8", "replace"))
    if not facts:
        return None
    entry = find_entry(facts["file"], manifest) if facts["file"] else None
    if entry is None and facts["drive_id"]:
        entry = next((e for e in manifest if any(facts["drive_id"] in s.get("url", "") for s in e.get("sources", []))),
                     None)
    what = " and ".join(x for x in (facts["file"] and f"{facts['file']}" + (f" ({facts['size']})" if facts["size"] else ""),
                                    facts["drive_id"] and f"Drive id {facts['drive_id']}") if x)
    first = f"{src} is not a checkpoint but a Google Drive download page saved in its place, for {what}"
    if entry is not None:
        return f"{first}; run `fomm-doctor checkpoints fetch {entry['name']}` to download {entry['file']} itself."
    if facts["drive_id"]:
        return (f"{first}; download the file itself from https://drive.google.com/uc?export=download&id="
                f"{facts['drive_id']} (answer the virus-scan page with \"Download anyway\") and add that file.")
    return f"{first}; download {facts['file']} itself and add that file."


def add(path, name: Optional[str] = None, link: bool = False, override_dir=None) -> Added:
    """Register a checkpoint file the user has: read it safely, recognise its config by a strict load,
    hash it, check it against what is published under its name, place it in the store by copy (atomic) or
    link, and record it in the store's registry. A file that contradicts the published checksum of the name
    it would go by is refused (a model of one's own goes under another name)."""
    src = Path(path).expanduser()
    manifest = load_manifest(override_dir)
    if src.is_file():
        page = _saved_page_error(src, manifest)
        if page:
            raise UserError(page)
    checkpoint = _read(src)
    digest = sha256_cached(src)
    size = src.stat().st_size
    entry = _entry_for(src, digest, name, manifest)
    config = recognise(checkpoint, src, hint=entry.get("config") if entry else None)
    del checkpoint
    verified_by, md5 = _check_published(src, entry, digest, size, config)
    name = name or (entry["name"] if entry else _name_from_file(src.name))
    if entry is not None:
        file_name = entry["file"]
    else:
        taken = {e.get("file") for e in manifest}  # a published name must never hold another file
        file_name = src.name if src.name not in taken else name + ".pth.tar"
    folder = store_dir(override_dir)
    dest = folder / file_name
    if dest.exists() and dest.resolve() == src.resolve():
        placed = "in place"
    elif link:
        placed = _link(src, dest)
    else:
        _copy_atomic(src, dest)
        placed = "copy"
    _register(folder, _record(name, file_name, config, digest, size, verified_by, str(src.resolve()), placed, md5))
    notes = ["no published checksum to compare it with: it loads, but is unverified"] if verified_by == "load" else []
    return Added(name, dest, config, digest, size, placed, entry, notes, verified_by)


def _entry_for(src: Path, digest: str, name: Optional[str], manifest: list) -> Optional[dict]:
    """The published checkpoint a file is: by its sha256 first, then by --name, then by its file name. None for a
    model of the user's own. A --name that contradicts the file's published identity is refused."""
    by_digest = next((e for e in manifest if digest in published_checks(e)["sha256s"]), None)
    named = find_entry(name, manifest) if name else None
    if by_digest is not None:
        if named is not None and named is not by_digest:
            raise UserError(f"{src} is the published {by_digest['name']} checkpoint, not {named['name']}; add it "
                            f"without --name, or with --name {by_digest['name']}.")
        return by_digest
    if name:
        return named  # None: a name of the user's own, whatever the file is called
    return find_entry(src.name, manifest)


def _check_published(src: Path, entry: Optional[dict], digest: str, size: int, config) -> tuple:
    """(how the file is verified: "sha256", "md5" or "load"; its md5 when that vouched for it). A file that
    contradicts what is published for its entry is refused in one sentence."""
    if entry is None:
        return "load", None
    published = published_checks(entry)
    if digest in published["sha256s"]:
        return "sha256", None
    if published["md5s"]:
        md5 = file_digest(src, "md5")
        if md5 in published["md5s"]:
            return "md5", md5
    if published["sha256s"] or published["size"]:
        why = (f"it is {size:,} bytes, not the {published['size']:,} published"
               if published["size"] and size != published["size"] else "its sha256 is not the published one")
        raise UserError(f"{src} loads strictly ({config or 'its own config'}) but is not the published "
                        f"{entry['name']} checkpoint ({why}); if it is a model of your own, add it under another "
                        f"name: `fomm-doctor checkpoints add {src} --name {entry['name']}-mine`.")
    return "load", None


def _name_from_file(file_name: str) -> str:
    stem = file_name
    for suffix in CHECKPOINT_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem[:-4] if stem.endswith("-cpk") else stem


# ---------------------------------------------------------------- fetching

@dataclass
class Fetched:
    name: str
    path: Path
    url: str  # credentials masked
    sha256: str
    config: Optional[str]
    verified_by: str  # "sha256", "md5" (a source's published md5) or "load"
    attempts: list  # [(url, outcome)] in the order tried, credentials masked
    already: bool = False  # it was present and verified: nothing downloaded


def _hf_endpoint() -> Optional[str]:
    return os.environ.get("HF_ENDPOINT") or None


def _source_url(url: str) -> str:
    """A source URL as it is to be requested: a huggingface.co URL goes to $HF_ENDPOINT when that is set."""
    from fomm_doctor.net import cloud_drive as cd
    try:
        return cd.hf_endpoint_url(url, _hf_endpoint())
    except ValueError:
        raise UserError(f"HF_ENDPOINT={redact(_hf_endpoint())} is not an http(s) URL; set it to a Hugging Face "
                        "mirror such as https://hf-mirror.com, or unset it.") from None


def _page(url: str, session, timeout: float, deadline: float):
    from fomm_doctor.net.pages import read_page
    return read_page(url, session=session, max_bytes=PAGE_CAP, deadline_s=deadline, timeout=timeout)


def _candidate_urls(source: dict, file_name: str, session, timeout: float, deadline: float = PAGE_DEADLINE) -> list:
    """The direct URL(s) a manifest source leads to; cloud-drive links are turned into download links. Every
    page read on the way (a folder listing, the Yandex API's answer) is capped in size and time."""
    from fomm_doctor.net import cloud_drive as cd
    url, kind = _source_url(source["url"]), source.get("kind", "mirror")
    if kind == "gdrive-file" or (cd.google_drive_id(url) and "/folders/" not in url and kind != "gdrive-folder"):
        return [cd.google_drive_file_url(url)]
    if kind == "gdrive-folder":
        listing = cd.google_drive_folder_listing_url(url)
        if not listing:
            raise LookupError("it is not a Google Drive folder link")
        page = _page(listing, session, timeout, deadline)
        if page.status != 200:
            raise LookupError(f"the folder listing answered HTTP {page.status}")
        share = cd.google_drive_file_in_listing(page.text, file_name)
        if not share:
            raise LookupError(f"{file_name} is not at the top of that folder")
        return [cd.google_drive_file_url(share)]
    if kind == "yandex" or cd.is_yandex(url):
        # the authors' links are folders holding every model; a source marks a single-file link folder: false
        api = cd.yandex_download_api_url(url, file_name if source.get("folder", True) else None, source.get("api"))
        page = _page(api, session, timeout, deadline)
        if page.status != 200:
            try:
                said = page.json().get("error") or ""
            except Exception:  # an error page that is not even JSON
                said = ""
            raise LookupError(f"the Yandex Disk API answered HTTP {page.status}" + (f" ({said})" if said else ""))
        answer = page.json()
        href = answer.get("href") if isinstance(answer, dict) else None
        if not href:
            raise LookupError("the Yandex Disk API gave no download link")
        return [href]
    return [url]


def _mirror_sources(entry: dict, mirror: Optional[str]) -> list:
    """Sources to try: with --mirror URL only that URL; with --mirror KIND/TEXT the sources matching it."""
    sources = list(entry.get("sources", []))
    if not mirror:
        return sources
    if "://" in mirror:
        return [{"url": mirror, "kind": "mirror", "note": "given with --mirror"}]
    chosen = [s for s in sources if s.get("kind") == mirror or mirror in s.get("url", "")]
    if not chosen:
        kinds = ", ".join(sorted({s.get("kind", "mirror") for s in sources})) or "none"
        raise UserError(redact(f"no source of {entry['name']} matches '{mirror}' (its kinds: {kinds}); give a URL "
                               "or one of those kinds."))
    return chosen


def _expected(entry: dict, source: dict) -> tuple:
    """(size, sha256) a source's file must have: the published original's, unless the source says it serves a
    copy of its own (its own "size"/"sha256" keys, null when it publishes only an md5)."""
    size = source["size"] if "size" in source else entry.get("size")
    sha = source["sha256"] if "sha256" in source else entry.get("sha256")
    return size, (sha.lower() if sha else None)


def _present_and_verified(dest: Path, entry: dict, folder: Path) -> Optional[str]:
    """How a file already at `dest` was verified ("sha256" or "md5") when it is the published one, else None."""
    if not dest.is_file():
        return None
    record = next((r for r in load_registry(folder) if r.get("name") == entry["name"]), None)
    if judge_file(dest, entry, record)["state"] != OK:
        return None
    if sha256_cached(dest) in published_checks(entry)["sha256s"]:
        return "sha256"
    return (record or {}).get("verified_by") or "sha256"


def fetch(name: str, mirror: Optional[str] = None, override_dir=None, progress: Optional[Callable] = None,
          retries: int = 6, timeout: float = 20.0, connections: int = 1, cache_dir=None, session=None,
          page_deadline: Optional[float] = None, **tuning) -> Fetched:
    """Download a known checkpoint into the store, trying its sources in order. Cloud-drive confirmation
    pages are followed (any of Drive's forms); an HTML page is never saved. Verified by the published sha256
    and size when the manifest has them (a file that contradicts them is refused), else by a source's md5, else
    by loading it strictly into its config ("loads, unverified"). -> Fetched; raises UserError naming the
    manual route when all fail. Every URL in what it returns, raises and records has its credentials masked."""
    import requests
    entry = find_entry(name, load_manifest(override_dir))
    if entry is None:
        known = ", ".join(e["name"] for e in load_manifest(override_dir))
        raise UserError(f"'{name}' is not a known checkpoint (known: {known}); "
                        "for a file you have, use `fomm-doctor checkpoints add PATH`.")
    sources = _mirror_sources(entry, mirror)
    folder = store_dir(override_dir)
    dest = folder / entry["file"]
    already = _present_and_verified(dest, entry, folder)
    if already:
        return Fetched(entry["name"], dest, "", sha256_cached(dest), entry.get("config"), already, [],
                       already=True)
    folder.mkdir(parents=True, exist_ok=True)
    session = session or requests.Session()
    session.headers.setdefault("User-Agent", "fomm-doctor")
    job = _FetchJob(entry, dest, session, timeout, PAGE_DEADLINE if page_deadline is None else page_deadline,
                    dict(retries=retries, timeout=timeout, connections=connections, cache_dir=cache_dir,
                         progress=progress, expect_binary=True, session=session, **tuning))
    for source in sources:
        fetched = job.try_source(source)
        if fetched is not None:
            return fetched
    raise NetworkError(_nothing_fetched(entry, sources, job.attempts))


@dataclass
class _Hop:
    """What one request for a checkpoint gave: the file (in `tmp`), a page leading to `follow`, or `failed`."""
    tmp: Optional[Path] = None
    result: object = None
    follow: Optional[str] = None
    failed: Optional[str] = None


@dataclass
class _FetchJob:
    """One `fetch`: what it is after, how it asks, and what each source answered (`attempts`, URLs masked)."""
    entry: dict
    dest: Path
    session: object
    timeout: float
    deadline: float
    download_args: dict
    attempts: list = field(default_factory=list)

    def try_source(self, source: dict) -> Optional[Fetched]:
        """The checkpoint from this source, verified and registered; None (and a line in attempts) when not."""
        import requests
        from fomm_doctor.net.pages import PageError
        shown = redact(_source_url(source["url"]))  # where it is really asked for (HF_ENDPOINT applied)
        try:
            urls = _candidate_urls(source, self.entry["file"], self.session, self.timeout, self.deadline)
        except (requests.RequestException, LookupError, ValueError, PageError) as exc:
            self.attempts.append((shown, _reason(exc)))
            return None
        url, seen = urls[0], set()
        for _hop in range(4):  # confirmation page(s), then the file
            seen.add(url)
            hop = self._ask(url, source, seen)
            if hop.follow:
                url = hop.follow
                continue
            if hop.failed:
                self.attempts.append((shown, hop.failed))
                return None
            self.attempts.append((shown, "ok"))
            return self._keep(hop, url, source, shown)
        self.attempts.append((shown, "it kept answering confirmation pages"))
        return None

    def _ask(self, url: str, source: dict, seen: set) -> "_Hop":
        """One request for the file: the file, a confirmation page that leads somewhere new, or why not."""
        from fomm_doctor.net import cloud_drive as cd
        from fomm_doctor.net.download import DownloadError, HtmlInsteadOfFile, download
        size, sha = _expected(self.entry, source)
        # download into a side folder: a file that fails the checks must never sit at `dest`
        tmp = self.dest.parent / ".incoming" / self.dest.name
        try:
            return _Hop(tmp=tmp, result=download([url], tmp, sha256=sha, size=size, **self.download_args))
        except HtmlInsteadOfFile as exc:
            page = _full_page(self.session, exc, self.timeout, self.deadline)
            follow = cd.confirmation_request(page, exc.url)
            # a POST form is asked for with GET and its fields in the query, as Drive accepts: the download
            # then resumes with Range requests like any other (a POST body cannot be resumed)
            nxt = follow.as_get_url() if follow else None
            return _Hop(follow=nxt) if nxt and nxt not in seen else _Hop(failed=cd.page_reason(page))
        except DownloadError as exc:
            return _Hop(failed=_reason(exc))

    def _keep(self, hop: "_Hop", url: str, source: dict, shown: str) -> Optional[Fetched]:
        """Check the downloaded file against what is published, move it into place and register it."""
        tmp, result = hop.tmp, hop.result
        size, sha = _expected(self.entry, source)
        try:
            verified_by, config, digest, md5 = _accept(tmp, self.entry, result.sha256, source, size, sha)
        except UserError as exc:
            tmp.unlink(missing_ok=True)
            self.attempts[-1] = (shown, str(exc))
            return None
        os.replace(tmp, self.dest)
        _register(self.dest.parent, _record(self.entry["name"], self.entry["file"], config, digest,
                                            self.dest.stat().st_size, verified_by, shown, "download", md5))
        return Fetched(self.entry["name"], self.dest, redact(url), digest, config, verified_by,
                       redact_data(self.attempts))


def _record(name, file_name, config, digest, size, verified_by, source, placed, md5=None) -> dict:
    """One registry record: what the file is, how it was verified, where it came from (masked)."""
    record = {"name": name, "file": file_name, "config": config, "sha256": digest, "size": size,
              "verified_by": verified_by, "source": redact(source), "placed": placed,
              "added": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if md5:
        record["md5"] = md5
    return record


def _nothing_fetched(entry: dict, sources: list, attempts: list) -> str:
    """The sentence when every source failed: what each said, and the manual route."""
    first = next((_source_url(s["url"]) for s in entry.get("sources", [])), None)
    tried = "; ".join(f"{_host(u)}: {why}" for u, why in attempts) or "no source listed"
    manual = (f"download {entry['file']} by hand" + (f" (e.g. from {first})" if first else "") +
              f" and run `fomm-doctor checkpoints add PATH --name {entry['name']}`")
    which = "its only source" if len(sources) == 1 else f"any of its {len(sources)} sources"
    return redact(f"could not fetch {entry['name']} from {which} ({tried}); {manual}.")


def _host(url: str) -> str:
    return urlparse(url).netloc.rsplit("@", 1)[-1] or url


def _reason(exc: Exception) -> str:
    """A few words on why a source failed, credentials masked (the sentence names the host)."""
    import requests
    from fomm_doctor.net.download import DownloadError, _short
    if isinstance(exc, requests.RequestException):
        return redact(_short(exc))
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, DownloadError):  # "Could not download F: REASON (tried ...); run ..." -> REASON
        m = re.match(r"Could not download [^:]+: (.*?) \(tried \d+ source", text)
        text = m.group(1) if m else text
    return redact(text[:300])


def _full_page(session, exc, timeout: float, deadline: float) -> str:
    """The confirmation page: the downloader keeps only its first 4 KiB, which holds a whole small page;
    a page cut short there is asked for again, read whole within PAGE_CAP and the page deadline."""
    from fomm_doctor.net.pages import PageError
    head = exc.response_text_head
    if "</html>" in head.lower():
        return head
    try:
        page = _page(exc.url, session, timeout, deadline)
    except PageError:  # the head we have is still worth parsing
        return head
    if page.status != 200 or "text/html" not in (page.headers.get("Content-Type") or "").lower():
        return head
    return page.text


def _accept(path: Path, entry: dict, digest: str, source: dict, size: Optional[int], sha: Optional[str]) -> tuple:
    """(how it was verified, config, sha256, md5 or None) for a downloaded file, or UserError: the published
    size and sha256 (the downloader compared them already; checked again here, as what gets registered must
    never contradict them), else an md5 the source publishes, else a strict load."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise UserError(f"the file is {actual:,} bytes, not the {size:,} published, so it was refused")
    if sha and digest.lower() != sha:
        raise UserError(f"the file's sha256 {digest[:16]}... is not the published {sha[:16]}..., so it was refused")
    checkpoint = _read(path)
    config = recognise(checkpoint, path, hint=entry.get("config"))
    del checkpoint
    if sha:
        return "sha256", config, digest, None
    if source.get("md5"):
        got = file_digest(path, "md5")
        if got != source["md5"].lower():
            raise UserError(f"the file's md5 {got} is not the {source['md5']} this source publishes")
        return "md5", config, digest, got
    return "load", config, digest, None


# ---------------------------------------------------------------- slimming

@dataclass
class Slimmed:
    path: Path
    size: int
    original_size: int
    config: Optional[str]
    half: bool


def slim(name_or_path, half: bool = False, out=None, override_dir=None) -> Slimmed:
    """An inference-only copy: {'generator', 'kp_detector'} state dicts (what the original demo loads),
    optionally float16 for storage (loading copies them into float32 modules). Written atomically."""
    import torch

    resolved = resolve_checkpoint(name_or_path, override_dir)
    src = Path(resolved.path)
    checkpoint = _read(src)
    config = recognise(checkpoint, src, hint=resolved.config)
    slimmed = {}
    for key in ("generator", "kp_detector"):
        state = {}
        for k, v in checkpoint[key].items():
            # float buffers and weights only; num_batches_tracked (int64) must stay an integer
            state[k] = v.half() if half and v.is_floating_point() else v
        slimmed[key] = state
    if isinstance(checkpoint.get("config"), dict):
        slimmed["config"] = checkpoint["config"]
    if out is None:
        stem = src.name[:-8] if src.name.endswith(".pth.tar") else src.stem
        out = src.with_name(f"{stem}-slim{'-fp16' if half else ''}.pth.tar")
        if not os.access(src.parent, os.W_OK):
            out = store_dir(override_dir) / out.name
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".part", dir=out.parent)
    os.close(fd)
    try:
        # the legacy (pre-1.6) format: the original code's pinned torch (1.0) cannot read the zip format
        torch.save(slimmed, tmp, _use_new_zipfile_serialization=False)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Slimmed(out, out.stat().st_size, src.stat().st_size, config, half)
