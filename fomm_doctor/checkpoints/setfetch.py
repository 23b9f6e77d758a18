"""Fetching a checkpoint published as a set of files (see sets.py): each file from the first source that
serves it (a source's URL is the set's folder; a file's path is appended), through the verified, resumable
downloader, each checked against its published size and sha256 (where none is published: the network it
holds). Files arrive in a staging folder that survives an interruption, so a rerun only fetches what is
missing; the set appears in the store, and is registered, only when every file is there and passes."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from fomm_doctor.checkpoints import places
from fomm_doctor.checkpoints.sets import OK, PARTLY, accept_member, judge_set, set_files, set_folder, set_record
from fomm_doctor.checkpoints.sets import swap_in
from fomm_doctor.checkpoints.sources import host, mirror_sources, reason, source_url
from fomm_doctor.checkpoints.store import load_registry, register
from fomm_doctor.errors import NetworkError
from fomm_doctor.net.redact import redact, redact_data

STAGING = ".incoming"


@dataclass
class FetchedSet:
    """What `fetch` gives for a set; the attributes `checkpoints fetch` shows match a single file's Fetched."""
    name: str
    path: Path
    url: str  # the first source that served a file, credentials masked
    files: list  # [{path, sha256, size, verified_by}]
    attempts: list = field(default_factory=list)  # [(url, outcome)], credentials masked
    already: bool = False
    sha256: str = ""
    config: Optional[str] = None

    @property
    def verified_by(self) -> str:
        return "sha256" if all(f["verified_by"] == "sha256" for f in self.files) else "partly"

    @property
    def state(self) -> str:
        return OK if self.verified_by == "sha256" else PARTLY

    def sentence(self) -> str:
        unverified = [f["path"] for f in self.files if f["verified_by"] != "sha256"]
        how = (f"all {len(self.files)} files sha256 verified" if not unverified else
               f"{len(self.files) - len(unverified)} of {len(self.files)} files sha256 verified; no sha256 is "
               f"published for {', '.join(unverified)}: checked for the network each holds")
        return f"{self.name}: {self.path} ({'already present, ' if self.already else ''}{how})"


def fetch_set(entry: dict, mirror: Optional[str] = None, override_dir=None, progress: Optional[Callable] = None,
              **download_args) -> FetchedSet:
    """Download every file of a set entry into the store (see the module's doc). download_args go to the
    net layer's download (retries, timeout, connections, cache_dir, session, max_size...). Raises NetworkError
    naming the file no source served, UserError for a file that contradicts what is published."""
    specs = set_files(entry)
    sources = mirror_sources(entry, mirror)
    store = places.store_dir(override_dir)
    final = set_folder(entry, store)
    record = next((r for r in load_registry(store) if r.get("name") == entry["name"]), None)
    if final.is_dir() and judge_set(final, entry, record)["state"] in (OK, PARTLY) and record:
        return FetchedSet(entry["name"], final, "", record.get("files", []), already=True)
    staging = store / STAGING / entry["name"]
    staging.mkdir(parents=True, exist_ok=True)
    attempts, files, used = [], [], ""
    for spec in specs:
        url, line = _one_file(entry, spec, sources, staging, attempts, progress, download_args)
        used = used or url
        files.append(line)
    swap_in(staging, final)
    register(store, set_record(entry, final, files, used, "download"))
    return FetchedSet(entry["name"], final, redact(used), files, redact_data(attempts))


def _one_file(entry, spec, sources, staging: Path, attempts: list, progress, download_args) -> tuple:
    """(url it came from, its registry line) for one file, fetched into staging unless it is there already."""
    dest = staging / spec["path"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        line, _why = accept_member(dest, spec)
        if line:
            return "", line
        dest.unlink()
    for source in sources:
        url = source_url(source["url"].rstrip("/") + "/" + spec["path"])
        try:
            _download(url, dest, spec, progress, download_args)
        except Exception as exc:  # a source that fails is reported and the next one tried
            if not _is_transport_failure(exc):
                raise
            attempts.append((redact(url), reason(exc)))
            continue
        line, why = accept_member(dest, spec)
        if line is None:
            dest.unlink(missing_ok=True)
            attempts.append((redact(url), f"{spec['path']}: {why}"))
            continue
        attempts.append((redact(url), "ok"))
        return url, line
    raise NetworkError(_not_fetched(entry, spec, attempts))


def _is_transport_failure(exc: Exception) -> bool:
    import requests
    from fomm_doctor.net.failures import DownloadError
    return isinstance(exc, (requests.RequestException, DownloadError, LookupError, ValueError))


def _download(url: str, dest: Path, spec: dict, progress, download_args: dict) -> None:
    from fomm_doctor.net.download import download
    tick = (lambda done, total: progress(spec["path"], done, total)) if progress else None
    download([url], dest, sha256=spec["sha256"], size=spec["size"], progress=tick, expect_binary=True,
             **download_args)


def _not_fetched(entry: dict, spec: dict, attempts: list) -> str:
    """The sentence when no source served one file: what each said, and the manual route."""
    mine = [(u, why) for u, why in attempts if u.endswith("/" + spec["path"])]
    tried = "; ".join(f"{host(u)}: {why}" for u, why in mine) or "no source listed"
    first = next((s["url"] for s in entry.get("sources", [])), None)
    manual = (f"download the {entry['name']} folder by hand" + (f" (from {first})" if first else "") +
              " and run `fomm-doctor checkpoints add FOLDER`")
    return redact(f"could not fetch {spec['path']} of {entry['name']} ({tried}); the files fetched so far are "
                  f"kept for the next try; or {manual}.")

