"""What cloud drives and model hubs put in front of large files, read from the page they answer: pure functions
over HTML + URL (the caller does every request).

Google Drive answers a large file's download link with a "can't scan this file for viruses" page, and has served
several forms of it over the years:
  * a plain link carrying `confirm=XXXX` (until about 2022),
  * a form `method="post"` whose action URL already holds `id`, `confirm=t` and `uuid` (2022-2023),
  * a form `id="download-form"` `method="get"` whose hidden inputs (id, export, confirm=t, uuid) rebuild the
    download URL on drive.usercontent.google.com (since 2023).
`confirmation_request` reads any of them into a `Follow` (method, URL, fields); a quota, sign-in or error page
gives None. Yandex Disk public links are resolved through its public API, which answers JSON with the direct
`href`. Hugging Face URLs are rewritten to the `HF_ENDPOINT` mirror when one is set.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import parse_qs, parse_qsl, urlencode, urljoin, urlparse, urlsplit, urlunsplit

_FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.I | re.S)
_ATTR = re.compile(r"""([\w-]+)\s*=\s*("([^"]*)"|'([^']*)'|([^\s>]+))""", re.S)
_INPUT = re.compile(r"<input\b([^>]*)>", re.I | re.S)
_HREF = re.compile(r"""href\s*=\s*["']([^"']*confirm=[^"']*)["']""", re.I)
_DRIVE_ID = re.compile(r"(?:/file/d/|/folders/|[?&]id=)([\w-]{10,})")
_NAME_SIZE = re.compile(r"""class=["']uc-name-size["'][^>]*>\s*<a\b([^>]*)>([^<]+)</a>\s*(?:\(([^)]*)\))?""", re.I)
YANDEX_API = "https://cloud-api.yandex.net/v1/disk/public/resources/download"
HF_HOSTS = ("huggingface.co", "www.huggingface.co")


def _attrs(tag_inside: str) -> dict:
    """Attributes of one tag (already without '<name' and '>') -> {name: unescaped value}."""
    out = {}
    for m in _ATTR.finditer(tag_inside):
        value = next(v for v in (m.group(3), m.group(4), m.group(5)) if v is not None)
        out[m.group(1).lower()] = html.unescape(value)
    return out


@dataclass(frozen=True)
class Follow:
    """The request a confirmation page asks for: `method` "GET" or "POST", the form's action `url` (joined to
    the page's URL) and the `fields` it sends, in page order."""
    method: str
    url: str
    fields: tuple = ()

    def as_get_url(self) -> str:
        """The action URL with the fields merged into its query: what a GET form requests, and what Drive
        also accepts for its POST form (the fields are the same ones it puts in the action URL)."""
        parts = urlsplit(self.url)
        names = {k for k, _ in self.fields}
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in names]
        query += list(self.fields)
        return urlunsplit(parts._replace(query=urlencode(query)))


def confirmation_request(page: str, page_url: str) -> Optional[Follow]:
    """What a cloud drive's confirmation page asks to request next (any of Drive's forms, or its older link),
    or None when the page is no such page (a quota, sign-in or error page: following it would only give the
    same page again)."""
    for form_m in _FORM.finditer(page):
        form = _attrs(form_m.group(1))
        inputs = [_attrs(m.group(1)) for m in _INPUT.finditer(form_m.group(2))]
        fields = tuple((i["name"], i.get("value", "")) for i in inputs
                       if i.get("name") and i.get("type", "").lower() in ("hidden", ""))
        action = urljoin(page_url, form.get("action") or page_url)
        leads_to_file = (form.get("id") == "download-form" or any(k == "confirm" for k, _ in fields)
                         or query_param(action, "confirm") is not None)
        if not leads_to_file:
            continue  # a sign-in or search form
        method = (form.get("method") or "get").upper()
        return Follow("POST" if method == "POST" else "GET", action, fields)
    link = _HREF.search(page)
    if link:
        return Follow("GET", urljoin(page_url, html.unescape(link.group(1))))
    return None


def confirmation_url(page: str, page_url: str) -> Optional[str]:
    """The URL to GET after a confirmation page (see `confirmation_request`), or None."""
    follow = confirmation_request(page, page_url)
    return follow.as_get_url() if follow else None


def saved_page_facts(page: str) -> Optional[dict]:
    """What a saved Google Drive page says about the file it stands for: {"file": name or None, "drive_id": id
    or None, "size": the size it shows ("695M") or None}; None when the page names neither."""
    name = size = drive_id = None
    m = _NAME_SIZE.search(page)
    if m:
        name = html.unescape(m.group(2)).strip() or None
        size = (m.group(3) or "").strip() or None
        drive_id = query_param(urljoin("https://drive.google.com/", _attrs(m.group(1)).get("href", "")), "id")
    follow = confirmation_request(page, "https://drive.google.com/uc")
    if not drive_id and follow:
        drive_id = dict(follow.fields).get("id") or query_param(follow.url, "id")
    if not name and not drive_id:
        return None
    return {"file": name, "drive_id": drive_id, "size": size}


def page_reason(page: str) -> str:
    """A few words on what a web page served instead of a file says (for the error sentence)."""
    text = page.lower()
    if "quota" in text or "too many users" in text:
        return "the cloud drive's download quota for this file is exhausted (try again in 24 hours)"
    if "sign in" in text or "signin" in text or "login" in text:
        return "the cloud drive asks to sign in"
    if "virus" in text or "confirm" in text:
        return "the cloud drive's confirmation page could not be followed"
    return "the server answered a web page instead of the file"


def google_drive_id(url: str) -> Optional[str]:
    """The file or folder id in a Google Drive link (`/file/d/ID`, `/folders/ID`, `?id=ID`), else None."""
    if "google.com" not in urlparse(url).netloc:
        return None
    m = _DRIVE_ID.search(url)
    return m.group(1) if m else None


def google_drive_file_url(url: str) -> str:
    """A Google Drive file's share link -> its direct download link (which may answer a confirmation page)."""
    file_id = google_drive_id(url)
    return f"https://drive.google.com/uc?export=download&id={file_id}" if file_id else url


def google_drive_folder_listing_url(url: str) -> Optional[str]:
    """A Google Drive folder link -> the plain HTML listing of its files (no JavaScript needed to read it).
    A link on another host is taken to be such a listing already (a saved or mirrored copy of it)."""
    folder_id = google_drive_id(url)
    if folder_id:
        return f"https://drive.google.com/embeddedfolderview?id={folder_id}"
    return url if urlparse(url).scheme in ("http", "https") and "google.com" not in urlparse(url).netloc else None


def google_drive_file_in_listing(page: str, file_name: str) -> Optional[str]:
    """In a folder listing page (`<div class="flip-entry" id="entry-ID">...<div class="flip-entry-title">NAME`),
    the share link of the file called `file_name`, or None (subfolders are not entered)."""
    blocks = re.split(r'(?=id="entry-)', page)
    for block in blocks[1:]:
        entry_id = re.match(r'id="entry-([\w-]+)"', block)
        title = re.search(r'flip-entry-title[^>]*>([^<]*)<', block)
        if "/folders/" in block.split("flip-entry-title", 1)[0]:
            continue  # a subfolder, not a file
        if entry_id and title and html.unescape(title.group(1)).strip() == file_name:
            return f"https://drive.google.com/file/d/{entry_id.group(1)}/view"
    for m in re.finditer(r"<a\b([^>]*)>(.*?)</a>", page, re.I | re.S):  # a plain list of links
        label = html.unescape(re.sub(r"<[^>]+>", "", m.group(2))).strip()
        href = _attrs(m.group(1)).get("href", "")
        if label == file_name and "/file/d/" in href:
            return href
    return None


def yandex_download_api_url(public_url: str, file_name: Optional[str] = None, api: Optional[str] = None) -> str:
    """Yandex Disk public link (a file, or a folder plus the file's name in it) -> the public API request
    that answers {"href": direct URL}. `api`: another endpoint speaking the same API (default Yandex's own)."""
    params = {"public_key": public_url}
    if file_name:
        params["path"] = "/" + file_name
    base = api or YANDEX_API
    return f"{base}{'&' if '?' in base else '?'}{urlencode(params)}"


def is_yandex(url: str) -> bool:
    host = urlparse(url).netloc.lower()
    return host.endswith(("yadi.sk", "disk.yandex.ru", "disk.yandex.com"))


def query_param(url: str, name: str) -> Optional[str]:
    values = parse_qs(urlparse(url).query).get(name)
    return values[0] if values else None


def is_huggingface(url: str) -> bool:
    return (urlparse(url).hostname or "").lower() in HF_HOSTS


def hf_endpoint_url(url: str, endpoint: Optional[str]) -> str:
    """A huggingface.co URL served from `endpoint` instead (the HF_ENDPOINT convention of huggingface_hub, e.g.
    https://hf-mirror.com); any other URL, or no endpoint, unchanged. Raises ValueError for an endpoint that
    is not an http(s) URL."""
    if not endpoint or not is_huggingface(url):
        return url
    base = urlsplit(endpoint.strip())
    if base.scheme not in ("http", "https") or not base.netloc:
        raise ValueError(endpoint)
    parts = urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, ""))
