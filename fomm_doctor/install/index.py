"""Read package indexes: PEP 691 JSON and PEP 503 HTML simple pages, flat directory listings (pip's
find-links, e.g. Aliyun's pytorch-wheels), local `file://` indexes and plain folders of wheels.

Everything here returns plain data (`IndexFile`s); nothing decides which file to use (see choose).
"""
import json
import os
import re
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urljoin, urlsplit, urldefrag
from urllib.request import url2pathname

from fomm_doctor.errors import UserError

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"


class IndexUnavailable(UserError):
    """An index could not be read (unreachable, not an index, gone)."""


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str  # absolute, without the #sha256= fragment
    sha256: Optional[str] = None
    requires_python: Optional[str] = None
    yanked: bool = False
    yanked_reason: Optional[str] = None
    size: Optional[int] = None
    # PEP 658/714: the index serves the wheel's METADATA at `url + ".metadata"`; its sha256 when published
    metadata: bool = False
    metadata_sha256: Optional[str] = None

    @property
    def metadata_url(self) -> Optional[str]:
        return self.url + ".metadata" if self.metadata else None

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc


@dataclass
class IndexPage:
    url: str  # the page (or folder) read
    format: str  # "json" | "html" | "flat" | "folder"
    files: list = field(default_factory=list)

    def foreign_hosts(self) -> set:
        """Hosts the file links point to other than the page's own: a 'mirror' whose downloads go upstream."""
        own = urlsplit(self.url).netloc
        return {f.host for f in self.files if f.host and f.host != own}


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def filename_project(filename: str) -> Optional[str]:
    """The normalised project name in a wheel or sdist file name, or None for something else."""
    if filename.endswith(".whl"):
        return normalize(filename.split("-", 1)[0])
    for ext in (".tar.gz", ".zip", ".tar.bz2", ".tgz"):
        if filename.endswith(ext):
            stem = filename[: -len(ext)]
            return normalize(stem.rsplit("-", 1)[0]) if "-" in stem else None
    return None


def _sha_from_fragment(url: str):
    base, frag = urldefrag(url)
    m = re.search(r"sha256=([0-9a-fA-F]{64})", frag or "")
    return base, (m.group(1).lower() if m else None)


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.base = None
        self.anchors = []  # (attrs dict, text)
        self._open = None

    def handle_starttag(self, tag, attrs):
        if tag == "base":
            self.base = dict(attrs).get("href")
        if tag == "a":
            self._open = (dict(attrs), [])

    def handle_data(self, data):
        if self._open:
            self._open[1].append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._open:
            self.anchors.append((self._open[0], "".join(self._open[1]).strip()))
            self._open = None


def parse_html_page(text: str, page_url: str) -> list:
    """Files linked from a PEP 503 page or a directory listing (attribute values come html-unescaped)."""
    parser = _Anchors()
    parser.feed(text)
    base = urljoin(page_url, parser.base) if parser.base else page_url
    files = []
    for attrs, label in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        url, sha = _sha_from_fragment(urljoin(base, href))
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        if not filename_project(name):
            continue  # "../", sub-folders, checksums
        yanked = "data-yanked" in attrs
        meta = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        files.append(IndexFile(name, url, sha, attrs.get("data-requires-python") or None, yanked,
                               (attrs.get("data-yanked") or None) if yanked else None, None,
                               meta is not None and meta != "false", _metadata_sha(meta)))
    return files


def _metadata_sha(attr: Optional[str]) -> Optional[str]:
    """'sha256=abc...' (PEP 714's data-core-metadata value) -> 'abc...'."""
    m = re.match(r"sha256=([0-9a-fA-F]{64})$", (attr or "").strip())
    return m.group(1).lower() if m else None


def parse_json_page(text: str, page_url: str) -> list:
    """Files of a PEP 691 project page."""
    data = json.loads(text)
    files = []
    for f in data.get("files", []):
        url, frag_sha = _sha_from_fragment(urljoin(page_url, f["url"]))
        y = f.get("yanked", False)
        meta = f.get("core-metadata", f.get("dist-info-metadata", False))
        size = f.get("size")
        files.append(IndexFile(f["filename"], url, (f.get("hashes") or {}).get("sha256") or frag_sha,
                               f.get("requires-python") or None, bool(y), y if isinstance(y, str) else None,
                               size if isinstance(size, int) and size >= 0 else None, bool(meta),
                               (meta.get("sha256") if isinstance(meta, dict) else None)))
    return files


def project_page_url(index_url: str, project: str) -> str:
    return index_url.rstrip("/") + "/" + normalize(project) + "/"


def _local_path(location: str) -> Optional[Path]:
    if location.startswith("file:"):
        return Path(url2pathname(urlsplit(location).path))
    if "://" not in location:
        return Path(location).expanduser()
    return None


def folder_files(folder: Path, project: Optional[str] = None) -> list:
    """Wheels and sdists in a local folder (pip's find-links directory)."""
    files = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    for name in names:
        proj = filename_project(name)
        if proj and (project is None or proj == normalize(project)):
            path = (folder / name).resolve()
            files.append(IndexFile(name, path.as_uri(), None, None, False, None, path.stat().st_size))
    return files


def _http_get(url: str, session, timeout: float, retries: int, accept: str):
    """GET with a few retries on connection errors and 5xx (503 on an index page is common during syncs)."""
    import requests
    session = session or requests.Session()
    last = None
    for attempt in range(retries):
        try:
            resp = session.get(url, headers={"Accept": accept}, timeout=timeout)
        except requests.RequestException as exc:
            last = f"{type(exc).__name__}"
        else:
            if resp.status_code < 500 and resp.status_code != 429:
                return resp
            last = f"HTTP {resp.status_code}"
        if attempt + 1 < retries:
            time.sleep(min(4.0, 0.25 * 2 ** attempt))
    raise IndexUnavailable(f"The index page {url} could not be read ({last} after {retries} tries).")


def read_project(index_url: str, project: str, *, session=None, timeout: float = 15.0, retries: int = 3) -> IndexPage:
    """The files an index offers for `project`: JSON when the server speaks PEP 691, HTML otherwise.

    `index_url` may be http(s), file:// or a plain path; a 404 means "no such project here" (empty page).
    """
    page_url = project_page_url(index_url, project)
    local = _local_path(page_url)
    if local is not None:
        for candidate in (local / "index.json", local / "index.html"):
            if candidate.is_file():
                text = candidate.read_text(encoding="utf-8", errors="replace")
                uri = candidate.resolve().as_uri()
                if candidate.suffix == ".json":
                    return IndexPage(uri, "json", parse_json_page(text, uri))
                return IndexPage(uri, "html", parse_html_page(text, uri))
        return IndexPage(local.as_uri() if local.is_absolute() else str(local), "html", [])
    resp = _http_get(page_url, session, timeout, retries, ACCEPT)
    if resp.status_code == 404:
        return IndexPage(page_url, "html", [])
    if resp.status_code >= 400:
        raise IndexUnavailable(f"The index page {page_url} answered HTTP {resp.status_code}.")
    url = resp.url or page_url
    ctype = resp.headers.get("Content-Type", "")
    if JSON_TYPE in ctype or ctype.startswith("application/json"):
        return IndexPage(url, "json", parse_json_page(resp.text, url))
    return IndexPage(url, "html", parse_html_page(resp.text, url))


def read_find_links(location: str, project: Optional[str] = None, *, session=None, timeout: float = 15.0,
                    retries: int = 3) -> IndexPage:
    """A find-links location: a local folder, or a page of links to files (a flat listing such as Aliyun's)."""
    local = _local_path(location)
    if local is not None:
        if local.is_dir():
            return IndexPage(local.resolve().as_uri(), "folder", folder_files(local, project))
        if local.is_file():  # an HTML file of links
            uri = local.resolve().as_uri()
            files = parse_html_page(local.read_text(encoding="utf-8", errors="replace"), uri)
            return IndexPage(uri, "flat", _only(files, project))
        return IndexPage(str(location), "folder", [])
    resp = _http_get(location, session, timeout, retries, "text/html")
    if resp.status_code >= 400:
        raise IndexUnavailable(f"The find-links page {location} answered HTTP {resp.status_code}.")
    url = resp.url or location
    return IndexPage(url, "flat", _only(parse_html_page(resp.text, url), project))


def _only(files: list, project: Optional[str]) -> list:
    return files if project is None else [f for f in files if filename_project(f.filename) == normalize(project)]
