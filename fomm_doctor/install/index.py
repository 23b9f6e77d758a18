"""Read package indexes: PEP 691 JSON and PEP 503 HTML simple pages, flat directory listings (pip's
find-links, e.g. Aliyun's pytorch-wheels), local `file://` indexes and plain folders of wheels.

Everything here returns plain data (`IndexFile`s); nothing decides which file to use (see choose).

An index is a server we do not control, so nothing it says is taken on trust:
  - a file name must be a plain base name (no "/", "\\", "..", ":", NUL or control characters, also after
    URL-decoding) that parses as a wheel or an sdist; any other entry is dropped;
  - a sha256 must be exactly 64 hex characters; anything else counts as "no hash published" (the file is kept,
    and a wheel from the network with no hash is refused later unless the user allows it), never as a hash;
  - a size must be a non-negative integer, else it is unknown (None);
  - a page read over http(s) may only link to http(s) files: a `file://` link from a remote page would make a
    path on this machine look like "the user's own local file";
  - a page that cannot be read at all (not JSON, not a list of files) is an `IndexUnavailable` sentence.
Pages come through `fomm_doctor.net.pages.read_page`: size-capped and with an overall deadline.
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

from packaging.utils import parse_wheel_filename
from packaging.version import Version

from fomm_doctor.net.digests import is_sha256
from fomm_doctor.errors import NetworkError
from fomm_doctor.net.pages import PAGE_LIMIT, PageError, read_page
from fomm_doctor.net.redact import redact

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
SDIST_EXTS = (".tar.gz", ".zip", ".tar.bz2", ".tgz")
# the characters of a wheel or sdist name: PEP 427/625 names, versions with local labels and epochs
_DIST_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*")
MAX_NAME = 255  # longer than any file system allows for one name


class IndexUnavailable(NetworkError):
    """An index could not be read (unreachable, not an index, gone)."""


def page_deadline(timeout: float) -> float:
    """Seconds a whole index page (all tries) may take: four stall timeouts. At the default 15 s that is a
    minute, enough for PyPI's torch page on a slow link, and a server that trickles bytes cannot hold us."""
    return 4.0 * timeout


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str  # absolute, without the #sha256= fragment
    sha256: Optional[str] = None  # 64 lowercase hex characters, or None (none published or not a valid one)
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
    def host(self) -> str:
        return host_of(self.url)


def host_of(url: str) -> str:
    """host[:port] of a URL without its credentials ('' for a local path or an unreadable URL)."""
    try:
        return urlsplit(url).netloc.rpartition("@")[2]
    except ValueError:
        return ""


@dataclass
class IndexPage:
    url: str  # the page (or folder) read
    format: str  # "json" | "html" | "flat" | "folder"
    files: list = field(default_factory=list)

    def foreign_hosts(self) -> set:
        """Hosts the file links point to other than the page's own: a 'mirror' whose downloads go upstream."""
        own = host_of(self.url)
        return {f.host for f in self.files if f.host and f.host != own}


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def clean_sha256(value) -> Optional[str]:
    """A published sha256 as 64 lowercase hex characters, or None when it is anything else."""
    return value.lower() if is_sha256(value) else None


def plain_filename(name) -> bool:
    """True for a name that can only mean a file inside its folder: no path separators, no "..", no drive
    (":"), no NUL or control characters, not empty, not too long, and only the characters of a distribution."""
    return (isinstance(name, str) and 0 < len(name) <= MAX_NAME and ".." not in name
            and _DIST_CHARS.fullmatch(name) is not None)


def filename_project(filename: str) -> Optional[str]:
    """The normalised project name of a valid wheel or sdist file name, or None for anything else."""
    if not plain_filename(filename):
        return None
    if filename.endswith(".whl"):
        try:
            name = parse_wheel_filename(filename)[0]
        except ValueError:  # InvalidWheelFilename, InvalidVersion
            return None
        return normalize(name)
    for ext in SDIST_EXTS:
        if filename.endswith(ext):
            stem = filename[: -len(ext)]
            name, sep, version = stem.rpartition("-")
            if not (sep and name and version):
                return None
            try:
                Version(version)
            except ValueError:
                return None
            return normalize(name)
    return None


def _sha_from_fragment(url: str):
    base, frag = urldefrag(url)
    m = re.fullmatch(r"(?:.*&)?sha256=([0-9a-fA-F]{64})(?:&.*)?", frag or "", re.S)
    return base, (m.group(1).lower() if m else None)


def _file_url(page_url: str, href: str) -> Optional[tuple]:
    """(absolute URL without fragment, sha256 from the fragment) for a link on a page, or None when the link
    is unreadable or leads somewhere a page from that place may not send us (see the module docstring)."""
    try:
        url, sha = _sha_from_fragment(urljoin(page_url, href))
        parts, page = urlsplit(url), urlsplit(page_url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    allowed = ("http", "https") if page.scheme.lower() in ("http", "https") else ("http", "https", "file")
    if parts.scheme.lower() not in allowed or (parts.scheme.lower() != "file" and not parts.hostname):
        return None
    return url, sha


def _name_in(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.base = None
        self.anchors = []  # (attrs dict, text)
        self._open = None

    def handle_starttag(self, tag, attrs):
        if tag == "base" and self.base is None:
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

    def close(self):
        super().close()
        if self._open:  # an <a> never closed still names a file
            self.anchors.append((self._open[0], "".join(self._open[1]).strip()))
            self._open = None


def parse_html_page(text: str, page_url: str) -> list:
    """Files linked from a PEP 503 page or a directory listing (attribute values come html-unescaped)."""
    parser = _Anchors()
    try:
        parser.feed(text)
        parser.close()
    except Exception:  # html.parser is lenient, but any failure of it on hostile input is "not a page"
        raise IndexUnavailable(f"The index page {redact(page_url)} is not HTML that can be read.") from None
    base = page_url
    if isinstance(parser.base, str):
        try:
            base = urljoin(page_url, parser.base)
            urlsplit(base).port  # noqa: B018
        except ValueError:
            base = page_url
    files = []
    for attrs, _label in parser.anchors:
        href = attrs.get("href")
        link = _file_url(base, href) if isinstance(href, str) and href else None
        if link is None:
            continue
        url, sha = link
        name = _name_in(url)
        if not filename_project(name):
            continue  # "../", sub-folders, checksums, names that are paths
        yanked = "data-yanked" in attrs
        meta = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        files.append(IndexFile(name, url, sha, attrs.get("data-requires-python") or None, yanked,
                               (attrs.get("data-yanked") or None) if yanked else None, None,
                               meta is not None and meta != "false", _metadata_sha(meta)))
    return files


def _metadata_sha(attr: Optional[str]) -> Optional[str]:
    """'sha256=abc...' (PEP 714's data-core-metadata value) -> 'abc...'."""
    m = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", (attr or "").strip())
    return m.group(1).lower() if m else None


def parse_json_page(text: str, page_url: str) -> list:
    """Files of a PEP 691 project page; entries that are not a valid file are dropped."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deeper than the parser goes
        raise IndexUnavailable(f"The index page {redact(page_url)} is not valid JSON.") from None
    entries = data.get("files", []) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise IndexUnavailable(f"The index page {redact(page_url)} is JSON but not a PEP 691 project page "
                               f"(no list of files).")
    files = []
    for f in entries:
        parsed = _json_file(f, page_url) if isinstance(f, dict) else None
        if parsed is not None:
            files.append(parsed)
    return files


def _json_file(f: dict, page_url: str) -> Optional[IndexFile]:
    name, href = f.get("filename"), f.get("url")
    if not isinstance(href, str) or not href or not filename_project(name):
        return None
    link = _file_url(page_url, href)
    if link is None:
        return None
    url, frag_sha = link
    hashes = f.get("hashes")
    sha = (clean_sha256(hashes.get("sha256")) if isinstance(hashes, dict) else None) or frag_sha
    rp = f.get("requires-python")
    y = f.get("yanked", False)
    meta = f.get("core-metadata", f.get("dist-info-metadata", False))
    size = f.get("size")
    return IndexFile(name, url, sha, rp if isinstance(rp, str) and rp.strip() else None, bool(y),
                     y if isinstance(y, str) and y else None,
                     size if type(size) is int and size >= 0 else None,  # bool is an int subclass: not a size
                     meta is True or isinstance(meta, dict),
                     clean_sha256(meta.get("sha256")) if isinstance(meta, dict) else None)


def project_page_url(index_url: str, project: str) -> str:
    return index_url.rstrip("/") + "/" + normalize(project) + "/"


def _local_path(location: str) -> Optional[Path]:
    if location.startswith("file:"):
        try:
            return Path(url2pathname(urlsplit(location).path))
        except ValueError:
            raise IndexUnavailable(f"{redact(location)} is not a file:// URL that can be read.") from None
    if "://" not in location:
        return Path(location).expanduser()
    return None


def folder_files(folder: Path, project: Optional[str] = None) -> list:
    """Wheels and sdists in a local folder (pip's find-links directory); only regular files with valid names."""
    files = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    for name in names:
        proj = filename_project(name)
        if not proj or (project is not None and proj != normalize(project)):
            continue
        try:
            path = (Path(folder) / name).resolve()
            if not path.is_file():
                continue
            size = path.stat().st_size
        except (OSError, RuntimeError):  # a broken or looping link
            continue
        files.append(IndexFile(name, path.as_uri(), None, None, False, None, size))
    return files


def _header(headers: dict, name: str) -> str:
    return next((v for k, v in (headers or {}).items() if k.lower() == name.lower()), "") or ""


def _tries(n: int) -> str:
    return f"{n} tr{'y' if n == 1 else 'ies'}"


def _http_get(url: str, session, timeout: float, retries: int, accept: str, deadline: Optional[float] = None):
    """GET a page (size-capped, see pages.read_page) with a few retries on connection errors and 5xx (503 on an
    index page is common during syncs), all within one overall deadline. Returns a pages.Page."""
    shown = redact(url)
    if not _is_http_url(url):  # nothing a retry could fix
        raise IndexUnavailable(f"{shown} is not an http(s) URL that can be read.")
    deadline = page_deadline(timeout) if deadline is None else deadline
    start = time.monotonic()
    last, tries = None, 0
    for attempt in range(max(1, retries)):
        left = deadline - (time.monotonic() - start)
        if left <= 0:
            break
        tries += 1
        page, last = _try_page(url, session, accept, timeout, left, start, deadline)
        if page is not None:
            return page
        pause = min(4.0, 0.25 * 2 ** attempt)
        if attempt + 1 < retries and deadline - (time.monotonic() - start) > pause:
            time.sleep(pause)
        else:
            break
    raise _unavailable(shown, deadline, last, tries)


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def _try_page(url: str, session, accept: str, timeout: float, left: float, start: float, deadline: float) -> tuple:
    """One try -> (the page, None) when it is worth returning, else (None, ("exc"|"status", why))."""
    try:
        page = read_page(url, session=session, headers={"Accept": accept}, max_bytes=PAGE_LIMIT,
                         deadline_s=left, timeout=min(timeout, left))
    except PageError as exc:
        if time.monotonic() - start < deadline:
            return None, ("exc", str(exc).rstrip("."))
        shown = redact(url)  # each try gets what is left: name the whole deadline
        return None, ("exc", f"{shown} was still sending after {deadline:g} s, so it was cut off"
                      if exc.status is not None else f"{shown} could not be reached within {deadline:g} s")
    if page.status < 500 and page.status != 429:
        return page, None
    return None, ("status", f"HTTP {page.status}")


def _unavailable(shown: str, deadline: float, last: Optional[tuple], tries: int) -> IndexUnavailable:
    """The one sentence for a page that could not be read, from the last try's outcome."""
    if last is None:
        return IndexUnavailable(f"The index page {shown} could not be read within {deadline:g} s.")
    if last[0] == "status":
        return IndexUnavailable(f"The index page {shown} could not be read ({last[1]} after {_tries(tries)}).")
    reason = last[1] + (f" ({_tries(tries)})" if tries > 1 else "")
    return IndexUnavailable(f"The index page {reason}.")


def _read_local(path: Path) -> str:
    """A local index file, with the same size cap as a page from the network."""
    try:
        if path.stat().st_size > PAGE_LIMIT:
            raise IndexUnavailable(f"{path} is larger than the {PAGE_LIMIT:,} bytes an index page may have.")
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise IndexUnavailable(f"{path} could not be read ({exc.strerror or type(exc).__name__}).") from None


def read_project(index_url: str, project: str, *, session=None, timeout: float = 15.0, retries: int = 3,
                 deadline: Optional[float] = None) -> IndexPage:
    """The files an index offers for `project`: JSON when the server speaks PEP 691, HTML otherwise.

    `index_url` may be http(s), file:// or a plain path; a 404 means "no such project here" (empty page).
    `deadline`: seconds for the whole page, all tries (default `page_deadline(timeout)`).
    """
    page_url = project_page_url(index_url, project)
    local = _local_path(page_url)
    if local is not None:
        for candidate in (local / "index.json", local / "index.html"):
            if candidate.is_file():
                text = _read_local(candidate)
                uri = candidate.resolve().as_uri()
                if candidate.suffix == ".json":
                    return IndexPage(uri, "json", parse_json_page(text, uri))
                return IndexPage(uri, "html", parse_html_page(text, uri))
        return IndexPage(local.as_uri() if local.is_absolute() else str(local), "html", [])
    page = _http_get(page_url, session, timeout, retries, ACCEPT, deadline)
    if page.status == 404:
        return IndexPage(page_url, "html", [])
    if page.status >= 400:
        raise IndexUnavailable(f"The index page {redact(page_url)} answered HTTP {page.status}.")
    url = page.url or page_url
    ctype = _header(page.headers, "Content-Type")
    if JSON_TYPE in ctype or ctype.startswith("application/json"):
        return IndexPage(url, "json", parse_json_page(page.text, url))
    return IndexPage(url, "html", parse_html_page(page.text, url))


def read_find_links(location: str, project: Optional[str] = None, *, session=None, timeout: float = 15.0,
                    retries: int = 3, deadline: Optional[float] = None) -> IndexPage:
    """A find-links location: a local folder, or a page of links to files (a flat listing such as Aliyun's)."""
    local = _local_path(location)
    if local is not None:
        if local.is_dir():
            return IndexPage(local.resolve().as_uri(), "folder", folder_files(local, project))
        if local.is_file():  # an HTML file of links
            uri = local.resolve().as_uri()
            return IndexPage(uri, "flat", _only(parse_html_page(_read_local(local), uri), project))
        return IndexPage(str(location), "folder", [])
    page = _http_get(location, session, timeout, retries, "text/html", deadline)
    if page.status >= 400:
        raise IndexUnavailable(f"The find-links page {redact(location)} answered HTTP {page.status}.")
    url = page.url or location
    return IndexPage(url, "flat", _only(parse_html_page(page.text, url), project))


def _only(files: list, project: Optional[str]) -> list:
    return files if project is None else [f for f in files if filename_project(f.filename) == normalize(project)]
