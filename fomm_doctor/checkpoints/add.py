"""Adding a checkpoint file the user has: recognise it, check it against what is published under its name,
place it in the store (copy or link) and register it. A cloud drive's web page saved in place of a checkpoint
is named for what it is, with the command that gets the real file."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from fomm_doctor.checkpoints import places
from fomm_doctor.checkpoints.files import CHECKPOINT_SUFFIXES, read, recognise, sha256_cached
from fomm_doctor.checkpoints.manifest import find_entry, load_manifest, published_checks
from fomm_doctor.checkpoints.sets import accept_member, best_set_for, is_set, locate_members, set_files, set_folder
from fomm_doctor.checkpoints.sets import set_record, swap_in
from fomm_doctor.checkpoints.store import make_record, register
from fomm_doctor.errors import UserError
from fomm_doctor.net.digests import file_digest
from fomm_doctor.net.sniff import looks_like_html


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


def add(path, name: Optional[str] = None, link: bool = False, override_dir=None) -> Added:
    """Register a checkpoint file the user has: read it safely, recognise its config by a strict load,
    hash it, check it against what is published under its name, place it in the store by copy (atomic) or
    link, and record it in the store's registry. A file that contradicts the published checksum of the name
    it would go by is refused (a model of one's own goes under another name)."""
    src = Path(path).expanduser()
    manifest = load_manifest(override_dir)
    if src.is_dir() and (is_set(find_entry(name, manifest) if name else None) or best_set_for(src, manifest)):
        return _add_set(src, name, manifest, override_dir)
    page = _saved_page_error(src, manifest) if src.is_file() else None
    if page:
        raise UserError(page)
    checkpoint = read(src)
    digest = sha256_cached(src)
    size = src.stat().st_size
    entry = _entry_for(src, digest, name, manifest)
    config = recognise(checkpoint, src, hint=entry.get("config") if entry else None)
    del checkpoint
    verified_by, md5 = _check_published(src, entry, digest, size, config)
    name = name or (entry["name"] if entry else _name_from_file(src.name))
    folder = places.store_dir(override_dir)
    dest = folder / _file_name(src, name, entry, manifest)
    placed = _place(src, dest, link)
    register(folder, make_record(name, dest.name, config, digest, size, verified_by, str(src.resolve()), placed, md5))
    notes = ["no published checksum to compare it with: it loads, but is unverified"] if verified_by == "load" else []
    return Added(name, dest, config, digest, size, placed, entry, notes, verified_by)


def _add_set(src: Path, name: Optional[str], manifest: list, override_dir) -> Added:
    """A folder the user downloaded by hand holding a set's files (in the set's layout, one level down, or flat):
    each file checked, then the set copied into the store in its own layout and registered. Nothing is placed
    when a file is missing or wrong; the sentence names every such file."""
    entry = find_entry(name, manifest) if name else best_set_for(src, manifest)
    found = locate_members(src, entry)
    lines = _checked_set(src, entry, found)
    store = places.store_dir(override_dir)
    final = set_folder(entry, store)
    _copy_set(found, final)
    register(store, set_record(entry, final, lines, str(src.resolve()), "copy"))
    unverified = [ln["path"] for ln in lines if ln["verified_by"] != "sha256"]
    notes = [f"no sha256 is published for {', '.join(unverified)}: checked only for the network it holds"] \
        if unverified else []
    return Added(entry["name"], final, None, "", sum(ln["size"] for ln in lines), "copy", entry, notes,
                 "sha256" if not unverified else "partly")


def _checked_set(src: Path, entry: dict, found: dict) -> list:
    """Each file's registry line, or UserError naming every file that is missing or wrong."""
    lines, problems = [], []
    for spec in set_files(entry):
        where = found[spec["path"]]
        if where is None:
            problems.append(f"{spec['path']} is missing")
            continue
        line, why = accept_member(where, spec)
        lines.append(line)
        if line is None:
            problems.append(f"{where} is wrong ({why})")
    if problems:
        raise UserError(f"{src} is not a complete {entry['name']} set: {'; '.join(problems)}; nothing was added.")
    return lines


def _copy_set(found: dict, final: Path) -> None:
    """Copy the files into a fresh folder beside `final`, then swap it in: a set is there whole or not at all."""
    staging = Path(tempfile.mkdtemp(prefix=final.name + ".", suffix=".part", dir=_made(final.parent)))
    try:
        for rel, src in found.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, staging / rel)
        swap_in(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _file_name(src: Path, name: str, entry: Optional[dict], manifest: list) -> str:
    """The name it gets in the store: its published file name, else its own unless a published one."""
    if entry is not None:
        return entry["file"]
    taken = {e.get("file") for e in manifest}  # a published name must never hold another file
    return src.name if src.name not in taken else name + ".pth.tar"


def _place(src: Path, dest: Path, link: bool) -> str:
    """Put the file at `dest` -> how: "in place", "symlink", "hardlink" or "copy"."""
    if dest.exists() and dest.resolve() == src.resolve():
        return "in place"
    if link:
        return _link(src, dest)
    _copy_atomic(src, dest)
    return "copy"
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



def _saved_page_error(src: Path, manifest: list) -> Optional[str]:
    """The sentence for a cloud drive's web page saved in place of a checkpoint, naming the file it stands for
    and the command that gets it; None when the file is no such page (or names nothing)."""
    from fomm_doctor.net import cloud_drive as cd
    try:
        with open(src, "rb") as f:
            head = f.read(1 << 20)
    except OSError:
        return None
    facts = cd.saved_page_facts(head.decode("utf-8", "replace")) if looks_like_html(head) else None
    if not facts:
        return None
    first = f"{src} is not a checkpoint but a Google Drive download page saved in its place, for {_page_names(facts)}"
    entry = _entry_of_page(facts, manifest)
    if entry is not None:
        return f"{first}; run `fomm-doctor checkpoints fetch {entry['name']}` to download {entry['file']} itself."
    if facts["drive_id"]:
        return (f"{first}; download the file itself from https://drive.google.com/uc?export=download&id="
                f"{facts['drive_id']} (answer the virus-scan page with \"Download anyway\") and add that file.")
    return f"{first}; download {facts['file']} itself and add that file."


def _page_names(facts: dict) -> str:
    """'vox-cpk.pth.tar (695M) and Drive id ID': what a saved page says it stands for."""
    named = facts["file"] and facts["file"] + (f" ({facts['size']})" if facts["size"] else "")
    drive = facts["drive_id"] and f"Drive id {facts['drive_id']}"
    return " and ".join(x for x in (named, drive) if x)


def _entry_of_page(facts: dict, manifest: list) -> Optional[dict]:
    """The published checkpoint a saved page stands for: by the file name it shows, else by its Drive id."""
    entry = find_entry(facts["file"], manifest) if facts["file"] else None
    if entry is None and facts["drive_id"]:
        entry = next((e for e in manifest if any(facts["drive_id"] in s.get("url", "") for s in e.get("sources", []))),
                     None)
    return entry

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

