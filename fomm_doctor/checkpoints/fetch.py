"""Fetching a published checkpoint: the download URLs each source leads to (cloud-drive folder listings, the
Yandex Disk API, Drive's confirmation pages), trying the sources in order, and accepting a file only when it
agrees with what is published (size and sha256, else a source's md5, else a strict load). Every URL this
module returns, raises or records has its credentials masked."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from fomm_doctor.checkpoints import places
from fomm_doctor.checkpoints.files import OK, judge_file, read, recognise, sha256_cached
from fomm_doctor.checkpoints.manifest import find_entry, load_manifest, published_checks
from fomm_doctor.checkpoints.sets import is_set
from fomm_doctor.checkpoints.sources import host as _host, mirror_sources as _mirror_sources, reason as _reason
from fomm_doctor.checkpoints.sources import source_url as _source_url
from fomm_doctor.checkpoints.store import load_registry, make_record, register
from fomm_doctor.errors import NetworkError, UserError
from fomm_core.cache import downloads_dir
from fomm_doctor.net.digests import file_digest
from fomm_doctor.net.redact import redact, redact_data

PAGE_CAP = 4 * 1024 * 1024  # a Drive listing or confirmation page is ~10 KB, a Yandex API answer ~1 KB
PAGE_DEADLINE = 60.0  # seconds for a whole page, however slowly it trickles in


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

    def sentence(self) -> str:
        """Where the file is and how it was verified: the line `checkpoints fetch` ends with (the page's too)."""
        how = {"sha256": "sha256 verified", "md5": "md5 verified",
               "load": "loads, unverified: no published sha256 to compare it with"}[self.verified_by]
        if self.already:
            how = "already present, " + how
        return (f"{self.name}: {self.path} ({how}; config {self.config or 'stored in the file'}; "
                f"sha256 {self.sha256})")


# ---------------------------------------------------------------- where a source leads

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
        return [_drive_folder_file(url, file_name, session, timeout, deadline)]
    if kind == "yandex" or cd.is_yandex(url):
        return [_yandex_href(url, source, file_name, session, timeout, deadline)]
    return [url]


def _drive_folder_file(url: str, file_name: str, session, timeout: float, deadline: float) -> str:
    """The download URL of `file_name` at the top of a Google Drive folder, read from its listing page."""
    from fomm_doctor.net import cloud_drive as cd
    listing = cd.google_drive_folder_listing_url(url)
    if not listing:
        raise LookupError("it is not a Google Drive folder link")
    page = _page(listing, session, timeout, deadline)
    if page.status != 200:
        raise LookupError(f"the folder listing answered HTTP {page.status}")
    share = cd.google_drive_file_in_listing(page.text, file_name)
    if not share:
        raise LookupError(f"{file_name} is not at the top of that folder")
    return cd.google_drive_file_url(share)


def _yandex_href(url: str, source: dict, file_name: str, session, timeout: float, deadline: float) -> str:
    """The download link the Yandex Disk API gives for a public link. The authors' links are folders holding
    every model; a source marks a single-file link `folder: false`."""
    from fomm_doctor.net import cloud_drive as cd
    api = cd.yandex_download_api_url(url, file_name if source.get("folder", True) else None, source.get("api"))
    page = _page(api, session, timeout, deadline)
    if page.status != 200:
        said = _yandex_error(page)
        raise LookupError(f"the Yandex Disk API answered HTTP {page.status}" + (f" ({said})" if said else ""))
    answer = page.json()
    href = answer.get("href") if isinstance(answer, dict) else None
    if not href:
        raise LookupError("the Yandex Disk API gave no download link")
    return href


def _yandex_error(page) -> str:
    try:
        return page.json().get("error") or ""
    except Exception:  # an error page that is not even JSON
        return ""


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


# ---------------------------------------------------------------- the job

def _known_entry(name: str, override_dir) -> dict:
    manifest = load_manifest(override_dir)
    entry = find_entry(name, manifest)
    if entry is None:
        known = ", ".join(e["name"] for e in manifest)
        raise UserError(f"'{name}' is not a known checkpoint (known: {known}); "
                        "for a file you have, use `fomm-doctor checkpoints add PATH`.")
    return entry


def fetch(name: str, mirror: Optional[str] = None, override_dir=None, progress: Optional[Callable] = None,
          retries: int = 6, timeout: float = 20.0, connections: int = 1, cache_dir=None, session=None,
          page_deadline: Optional[float] = None, **tuning) -> Fetched:
    """Download a known checkpoint into the store, trying its sources in order. Cloud-drive confirmation
    pages are followed (any of Drive's forms); an HTML page is never saved. Verified by the published sha256
    and size when the manifest has them (a file that contradicts them is refused), else by a source's md5, else
    by loading it strictly into its config ("loads, unverified"). -> Fetched; raises UserError naming the
    manual route when all fail. Every URL in what it returns, raises and records has its credentials masked.
    A file of unpublished size stops at `max_size` (in `tuning`; default the net layer's CHECKPOINT_CAP)."""
    import requests
    entry = _known_entry(name, override_dir)
    if is_set(entry):
        return _fetch_set(entry, mirror, override_dir, progress, retries, timeout, connections, cache_dir, session,
                          tuning)
    sources = _mirror_sources(entry, mirror)
    folder = places.store_dir(override_dir)
    dest = folder / entry["file"]
    already = _present_and_verified(dest, entry, folder)
    if already:
        return Fetched(entry["name"], dest, "", sha256_cached(dest), entry.get("config"), already, [],
                       already=True)
    folder.mkdir(parents=True, exist_ok=True)
    session = session or requests.Session()
    session.headers.setdefault("User-Agent", "fomm-doctor")
    from fomm_doctor.net.job import CHECKPOINT_CAP
    tuning.setdefault("max_size", CHECKPOINT_CAP)  # a file of unknown size stops at a checkpoint's size
    job = _FetchJob(entry, dest, session, timeout, PAGE_DEADLINE if page_deadline is None else page_deadline,
                    dict(retries=retries, timeout=timeout, connections=connections,
                         cache_dir=cache_dir or downloads_dir(), progress=progress, expect_binary=True,
                         session=session, **tuning))
    for source in sources:
        fetched = job.try_source(source)
        if fetched is not None:
            return fetched
    raise NetworkError(_nothing_fetched(entry, sources, job.attempts))
def _fetch_set(entry, mirror, override_dir, progress, retries, timeout, connections, cache_dir, session, tuning):
    """A set's files, each through the same downloader (see setfetch). progress(done, total) sums the files."""
    import requests
    from fomm_doctor.checkpoints.setfetch import fetch_set
    from fomm_doctor.net.job import CHECKPOINT_CAP
    session = session or requests.Session()
    session.headers.setdefault("User-Agent", "fomm-doctor")
    tuning.setdefault("max_size", CHECKPOINT_CAP)
    tick = (lambda _path, done, total: progress(done, total)) if progress else None
    return fetch_set(entry, mirror, override_dir, tick, retries=retries, timeout=timeout, connections=connections,
                     cache_dir=cache_dir or downloads_dir(), session=session, **tuning)


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
        from fomm_doctor.net.download import download
        from fomm_doctor.net.failures import DownloadError, HtmlInsteadOfFile
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
        register(self.dest.parent, make_record(self.entry["name"], self.entry["file"], config, digest,
                                                self.dest.stat().st_size, verified_by, shown, "download", md5))
        return Fetched(self.entry["name"], self.dest, redact(url), digest, config, verified_by,
                       redact_data(self.attempts))


def _nothing_fetched(entry: dict, sources: list, attempts: list) -> str:
    """The sentence when every source failed: what each said, and the manual route."""
    first = next((_source_url(s["url"]) for s in entry.get("sources", [])), None)
    tried = "; ".join(f"{_host(u)}: {why}" for u, why in attempts) or "no source listed"
    manual = (f"download {entry['file']} by hand" + (f" (e.g. from {first})" if first else "") +
              f" and run `fomm-doctor checkpoints add PATH --name {entry['name']}`")
    which = "its only source" if len(sources) == 1 else f"any of its {len(sources)} sources"
    return redact(f"could not fetch {entry['name']} from {which} ({tried}); {manual}.")


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
    checkpoint = read(path)
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


