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
"""
from __future__ import annotations

import hashlib
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

from fomm_doctor.errors import UserError

MANIFEST = "manifest.json"
REGISTRY = "registry.json"
SHA_CACHE = "sha256-cache.json"
CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar", ".ckpt")


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

def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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

def list_checkpoints(override_dir=None, hash_files=True) -> list[dict]:
    """Every known checkpoint (manifest entries, then registered files with other names) and where it is:
    [{name, file, config, size, sha256, description, sources, present: [{path, size, verified}]}]."""
    dirs = checkpoint_dirs(override_dir)
    rows, names = [], set()
    registry = {}
    for d in dirs:
        for r in load_registry(d):
            registry.setdefault(r.get("name"), (d, r))
    for e in load_manifest(override_dir):
        expected = e.get("sha256") or (registry.get(e["name"], (None, {}))[1].get("sha256"))
        present = []
        for d in dirs:
            p = Path(d) / e["file"]
            if p.is_file():
                size = p.stat().st_size
                ok = (False if e.get("size") and size != e["size"] else
                      verify(p, expected) if hash_files else None)
                present.append({"path": str(p), "size": size, "verified": ok})
        rows.append({"name": e["name"], "file": e["file"], "config": e.get("config"), "size": e.get("size"),
                     "sha256": e.get("sha256"), "description": e.get("description", ""),
                     "sources": len(e.get("sources", [])), "present": present})
        names.add(e["name"])
    for name, (d, r) in registry.items():
        if name in names or not name:
            continue
        p = Path(d) / r["file"]
        present = []
        if p.is_file():
            present.append({"path": str(p), "size": p.stat().st_size,
                            "verified": verify(p, r.get("sha256")) if hash_files else None})
        rows.append({"name": name, "file": r["file"], "config": r.get("config"), "size": r.get("size"),
                     "sha256": r.get("sha256"), "description": r.get("description", "added by hand"),
                     "sources": 0, "present": present})
    return rows


def checkpoint_facts(override_dir=None, hash_files=True) -> dict:
    """Plain data for `fomm-doctor check`: the folders searched and one row per known checkpoint."""
    return {"dirs": [str(d) for d in checkpoint_dirs(override_dir)], "store": str(store_dir(override_dir)),
            "checkpoints": list_checkpoints(override_dir, hash_files)}


# ---------------------------------------------------------------- reading and recognising a file

def _read(path):
    """fomm_core's weights-only reader; its FommError sentences become UserErrors here (one error type per layer)."""
    from fomm_core.checkpoint import read_checkpoint
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
    from fomm_core.config import build_models, detect_config, load_config, matching_configs

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
    from fomm_core.config import config_shapes, shipped_configs, state_shapes

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


def add(path, name: Optional[str] = None, link: bool = False, override_dir=None) -> Added:
    """Register a checkpoint file the user has: read it safely, recognise its config by a strict load,
    hash it, place it in the store by copy (atomic) or link, and record it in the store's registry."""
    src = Path(path).expanduser()
    checkpoint = _read(src)
    manifest = load_manifest(override_dir)
    digest = sha256_cached(src)
    size = src.stat().st_size
    entry = next((e for e in manifest if e.get("sha256") and e["sha256"].lower() == digest), None)
    entry = entry or (find_entry(name, manifest) if name else None) or find_entry(src.name, manifest)
    config = recognise(checkpoint, src, hint=entry.get("config") if entry else None)
    del checkpoint
    notes = []
    if entry and entry.get("sha256") and entry["sha256"].lower() != digest:
        notes.append(f"its sha256 differs from the published {entry['name']} file; registered anyway as "
                     "it loads strictly")
    name = name or (entry["name"] if entry else _name_from_file(src.name))
    file_name = entry["file"] if entry and entry.get("name") == name else src.name
    folder = store_dir(override_dir)
    dest = folder / file_name
    if dest.exists() and dest.resolve() == src.resolve():
        placed = "in place"
    elif link:
        placed = _link(src, dest)
    else:
        _copy_atomic(src, dest)
        placed = "copy"
    record = {"name": name, "file": file_name, "config": config, "sha256": digest, "size": size,
              "source": str(src.resolve()), "placed": placed, "added": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _register(folder, record)
    return Added(name, dest, config, digest, size, placed, entry, notes)


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
    url: str
    sha256: str
    config: Optional[str]
    verified_by: str  # "sha256", "md5" (a source's published md5) or "load"
    attempts: list  # [(url, outcome)] in the order tried
    already: bool = False  # it was present and verified: nothing downloaded


def _candidate_urls(source: dict, file_name: str, session, timeout: float) -> list:
    """The direct URL(s) a manifest source leads to; cloud-drive links are turned into download links."""
    from fomm_doctor import cloud_drive as cd
    url, kind = source["url"], source.get("kind", "mirror")
    if kind == "gdrive-file" or (cd.google_drive_id(url) and "/folders/" not in url and kind != "gdrive-folder"):
        return [cd.google_drive_file_url(url)]
    if kind == "gdrive-folder":
        listing = cd.google_drive_folder_listing_url(url)
        resp = session.get(listing, timeout=timeout)
        resp.raise_for_status()
        share = cd.google_drive_file_in_listing(resp.text, file_name)
        if not share:
            raise LookupError(f"{file_name} is not at the top of that folder")
        return [cd.google_drive_file_url(share)]
    if kind == "yandex" or cd.is_yandex(url):
        # the authors' links are folders holding every model; a source marks a single-file link folder: false
        api = cd.yandex_download_api_url(url, file_name if source.get("folder", True) else None)
        resp = session.get(api, timeout=timeout)
        resp.raise_for_status()
        href = resp.json().get("href")
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
        raise UserError(f"no source of {entry['name']} matches '{mirror}' (its kinds: {kinds}); give a URL or "
                        "one of those kinds.")
    return chosen


def fetch(name: str, mirror: Optional[str] = None, override_dir=None, progress: Optional[Callable] = None,
          retries: int = 6, timeout: float = 20.0, connections: int = 1, cache_dir=None, session=None,
          **tuning) -> Fetched:
    """Download a known checkpoint into the store, trying its sources in order. Cloud-drive confirmation
    pages are followed; an HTML page is never saved. Verified by sha256 when the manifest has one, else by
    loading it strictly into its config. -> Fetched; raises UserError naming the manual route when all fail."""
    import requests
    from fomm_doctor import cloud_drive as cd
    from fomm_doctor.download import DownloadError, HtmlInsteadOfFile, download

    entry = find_entry(name, load_manifest(override_dir))
    if entry is None:
        known = ", ".join(e["name"] for e in load_manifest(override_dir))
        raise UserError(f"'{name}' is not a known checkpoint (known: {known}); "
                        "for a file you have, use `fomm-doctor checkpoints add PATH`.")
    sources = _mirror_sources(entry, mirror)
    folder = store_dir(override_dir)
    dest = folder / entry["file"]
    if dest.is_file() and entry.get("sha256") and verify(dest, entry["sha256"]):
        return Fetched(entry["name"], dest, "", entry["sha256"].lower(), entry.get("config"), "sha256", [],
                       already=True)
    folder.mkdir(parents=True, exist_ok=True)
    session = session or requests.Session()
    session.headers.setdefault("User-Agent", "fomm-doctor")
    attempts = []
    for source in sources:
        try:
            urls = _candidate_urls(source, entry["file"], session, timeout)
        except (requests.RequestException, LookupError, ValueError) as exc:
            attempts.append((source["url"], _reason(exc)))
            continue
        url = urls[0]
        for _hop in range(3):  # a confirmation page, then the file (one spare hop for a second page)
            try:
                # download into a side folder: a file that fails the load check must never sit at `dest`
                tmp = folder / ".incoming" / dest.name
                result = download([url], tmp, sha256=entry.get("sha256"), size=entry.get("size"),
                                  retries=retries, timeout=timeout, connections=connections, cache_dir=cache_dir,
                                  progress=progress, expect_binary=True, session=session, **tuning)
            except HtmlInsteadOfFile as exc:
                page = _full_page(session, exc, timeout)
                follow = cd.confirmation_url(page, exc.url)
                if follow and follow != url:
                    url = follow
                    continue
                attempts.append((source["url"], cd.page_reason(page)))
                break
            except DownloadError as exc:
                attempts.append((source["url"], _reason(exc)))
                break
            try:
                verified_by, config, digest = _accept(tmp, entry, result.sha256, source)
            except UserError as exc:
                tmp.unlink(missing_ok=True)
                attempts.append((source["url"], str(exc)))
                break
            os.replace(tmp, dest)
            _register(folder, {"name": entry["name"], "file": entry["file"], "config": config, "sha256": digest,
                               "size": dest.stat().st_size, "source": source["url"], "placed": "download",
                               "added": time.strftime("%Y-%m-%dT%H:%M:%S")})
            attempts.append((source["url"], "ok"))
            return Fetched(entry["name"], dest, url, digest, config, verified_by, attempts)
        else:
            attempts.append((source["url"], "it kept answering confirmation pages"))
    first = next((s["url"] for s in entry.get("sources", [])), None)
    tried = "; ".join(f"{urlparse(u).netloc or u}: {why}" for u, why in attempts) or "no source listed"
    manual = (f"download {entry['file']} by hand" + (f" (e.g. from {first})" if first else "") +
              f" and run `fomm-doctor checkpoints add PATH --name {entry['name']}`")
    which = "its only source" if len(sources) == 1 else f"any of its {len(sources)} sources"
    raise UserError(f"could not fetch {entry['name']} from {which} ({tried}); {manual}.")


def _reason(exc: Exception) -> str:
    """A few words on why a source failed, without the URL (the sentence names the host)."""
    import requests
    from fomm_doctor.download import DownloadError, _short
    if isinstance(exc, requests.RequestException):
        return _short(exc)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, DownloadError):  # "Could not download F: REASON (tried ...); run ..." -> REASON
        m = re.match(r"Could not download [^:]+: (.*?) \(tried \d+ source", text)
        text = m.group(1) if m else text
    return text[:200]


def _full_page(session, exc, timeout: float) -> str:
    """The confirmation page: the downloader keeps only its first 4 KiB, which holds a whole small page;
    a longer one is asked for again (streamed, HTML only, at most 1 MB)."""
    head = exc.response_text_head
    if "</html>" in head.lower() or len(head) < 4000:
        return head
    try:
        with session.get(exc.url, timeout=timeout, stream=True) as resp:
            if "text/html" not in resp.headers.get("Content-Type", "").lower():
                return head
            body = b""
            for block in resp.iter_content(64 * 1024):
                body += block
                if len(body) > 1_000_000:
                    break
            return body.decode(resp.encoding or "utf-8", "replace")
    except Exception:  # the head we have is still worth parsing
        return head


def _accept(path: Path, entry: dict, digest: str, source: dict) -> tuple:
    """(how it was verified, config, sha256) for a downloaded file, or UserError: sha256 when published
    (the downloader already compared it), else an md5 the source lists, else a strict load."""
    checkpoint = _read(path)
    config = recognise(checkpoint, path, hint=entry.get("config"))
    if entry.get("sha256"):
        return "sha256", config, digest
    if source.get("md5"):
        h = hashlib.md5()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != source["md5"].lower():
            raise UserError(f"the file's md5 {h.hexdigest()} is not the {source['md5']} this source publishes")
        return "md5", config, digest
    return "load", config, digest


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
