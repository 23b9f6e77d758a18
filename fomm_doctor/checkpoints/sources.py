"""Where a manifest source is asked for: a huggingface.co URL sent to $HF_ENDPOINT when that is set, the sources
--mirror picks, and a few words on why a source failed. Shared by single files (fetch) and sets (setfetch).
Every URL or sentence this module returns has its credentials masked."""
from __future__ import annotations

import os
from typing import Optional
from urllib.parse import urlparse

from fomm_doctor.errors import UserError
from fomm_doctor.net.redact import redact


def hf_endpoint() -> Optional[str]:
    return os.environ.get("HF_ENDPOINT") or None


def source_url(url: str) -> str:
    """A source URL as it is to be requested: a huggingface.co URL goes to $HF_ENDPOINT when that is set."""
    from fomm_doctor.net import cloud_drive as cd
    try:
        return cd.hf_endpoint_url(url, hf_endpoint())
    except ValueError:
        raise UserError(f"HF_ENDPOINT={redact(hf_endpoint())} is not an http(s) URL; set it to a Hugging Face "
                        "mirror such as https://hf-mirror.com, or unset it.") from None


def mirror_sources(entry: dict, mirror: Optional[str]) -> list:
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


def host(url: str) -> str:
    return urlparse(url).netloc.rsplit("@", 1)[-1] or url


def reason(exc: Exception) -> str:
    """A few words on why a source failed, credentials masked (the sentence names the host)."""
    import requests
    from fomm_doctor.net.failures import DownloadError, short_reason
    if isinstance(exc, requests.RequestException):
        return redact(short_reason(exc))
    if isinstance(exc, DownloadError):
        return redact(exc.reason[:300])
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return redact(text[:300])
