"""What cloud drives put in front of large files, read from the page they answer: pure functions over HTML + URL.

Google Drive answers a large file's download link with a "can't scan this file for viruses" page: a form
(id `download-form`) whose hidden inputs (id, export, confirm=t, uuid) rebuild the real download URL; older
pages carry a plain link with `confirm=XXXX` instead. Yandex Disk public links are resolved through its
public API, which answers JSON with the direct `href`.
"""
from __future__ import annotations

import html
import re
from typing import Optional
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

_FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.I | re.S)
_ATTR = re.compile(r"""([\w-]+)\s*=\s*("([^"]*)"|'([^']*)'|([^\s>]+))""", re.S)
_INPUT = re.compile(r"<input\b([^>]*)>", re.I | re.S)
_HREF = re.compile(r"""href\s*=\s*["']([^"']*confirm=[^"']*)["']""", re.I)
_DRIVE_ID = re.compile(r"(?:/file/d/|/folders/|[?&]id=)([\w-]{10,})")


def _attrs(tag_inside: str) -> dict:
    """Attributes of one tag (already without '<name' and '>') -> {name: unescaped value}."""
    out = {}
    for m in _ATTR.finditer(tag_inside):
        value = next(v for v in (m.group(3), m.group(4), m.group(5)) if v is not None)
        out[m.group(1).lower()] = html.unescape(value)
    return out


def confirmation_url(page: str, page_url: str) -> Optional[str]:
    """The URL a cloud drive's confirmation page leads to, or None when the page is no such page
    (a quota, sign-in or error page: following it would only give the same page again)."""
    for form_m in _FORM.finditer(page):
        form = _attrs(form_m.group(1))
        inputs = [_attrs(m.group(1)) for m in _INPUT.finditer(form_m.group(2))]
        fields = {i["name"]: i.get("value", "") for i in inputs if i.get("name") and i.get("type", "").lower()
                  in ("hidden", "")}
        if form.get("id") != "download-form" and "confirm" not in fields:
            continue
        action = urljoin(page_url, form.get("action") or page_url)
        if (form.get("method") or "get").lower() != "get":
            continue
        query = urlencode(fields)
        return f"{action}{'&' if '?' in action else '?'}{query}" if query else action
    link = _HREF.search(page)
    if link:
        return urljoin(page_url, html.unescape(link.group(1)))
    return None


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
    """A Google Drive folder link -> the plain HTML listing of its files (no JavaScript needed to read it)."""
    folder_id = google_drive_id(url)
    return f"https://drive.google.com/embeddedfolderview?id={folder_id}" if folder_id else None


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


def yandex_download_api_url(public_url: str, file_name: Optional[str] = None) -> str:
    """Yandex Disk public link (a file, or a folder plus the file's name in it) -> the public API request
    that answers {"href": direct URL}."""
    params = {"public_key": public_url}
    if file_name:
        params["path"] = "/" + file_name
    return "https://cloud-api.yandex.net/v1/disk/public/resources/download?" + urlencode(params)


def is_yandex(url: str) -> bool:
    host = urlparse(url).netloc.lower()
    return host.endswith(("yadi.sk", "disk.yandex.ru", "disk.yandex.com"))


def query_param(url: str, name: str) -> Optional[str]:
    values = parse_qs(urlparse(url).query).get(name)
    return values[0] if values else None
