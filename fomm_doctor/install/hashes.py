"""Where the chosen wheel comes from, and which sha256 vouches for it: every listing of its file name, the
official index's second opinion when only a mirror lists it, and the hash the download is checked against.

A mirror that publishes a different sha256 than the official index for the same file name is refused
(`HashMismatch`); a mirror that publishes none is checked against the official one.
"""
from dataclasses import dataclass
from typing import Optional

from fomm_doctor.errors import NetworkError, UserError
from fomm_doctor.install import index as pypi_index
from fomm_doctor.install import sources as mirrors

OFFICIAL_DEADLINE = 10.0  # the official page is a second opinion: it may not hold the plan up for long

# How a wheel is (or will be) checked, in words: "sha256" against a published hash, "local" a file on this
# machine (the user's own: no hash to check), "none" from the network with no published hash.
VERIFIED_WORDS = {"sha256": "sha256 verified", "local": "local file, no hash to check",
                  "none": "not verified: no sha256 was published for it"}


class HashMismatch(NetworkError):
    """A mirror publishes a different sha256 than the official index for the same file name."""


@dataclass(frozen=True)
class Listing:
    """One listing of the chosen file name by one source."""
    source: str  # the source's name
    source_url: str
    url: str
    sha256: Optional[str]
    size: Optional[int]
    kind: str  # "local" (a file on this machine), "official" (listed by an official index) or "mirror"
    best: bool  # the listing the choice picked


def file_listings(best, cands: list, official: dict) -> list:
    """Every listing (a Listing) of the chosen file name, in source order."""
    return [Listing(getattr(c.source, "name", "?"), getattr(c.source, "url", ""), c.file.url, c.file.sha256,
                    c.file.size, _listing_kind(c, official), c is best)
            for c in sorted((c for c in cands if c.filename == best.filename), key=lambda c: c.source_rank)]


def _listing_kind(c, official: dict) -> str:
    if mirrors.is_local(c.file.url):
        return "local"
    if c.source is not None and mirrors.is_official(c.source.url, official):
        return "official"
    return "mirror"


def official_lookup(listings: list, official: dict, version: str) -> Optional[str]:
    """The official index to read for a second opinion on the file's sha256, or None when there is no need:
    the file is local (the user's own) or already listed by an official index, or the comparison is off."""
    kinds = {x.kind for x in listings}
    if "mirror" not in kinds or kinds & {"local", "official"}:
        return None
    return mirrors.official_page_base(official, version)


@dataclass(frozen=True)
class OfficialWord:
    """What the official index's page said about the file name."""
    url: str  # the page read
    sha256: Optional[str]
    listed: bool
    error: Optional[str]  # the page could not be read


def read_official(base: str, filename: str, timeout: float, session=None) -> OfficialWord:
    """What the official index publishes for `filename`: one try, a short deadline; never raises."""
    page_url = pypi_index.project_page_url(base, "torch")
    deadline = min(OFFICIAL_DEADLINE, 2 * timeout)
    try:
        page = pypi_index.read_project(base, "torch", session=session, timeout=min(timeout, deadline), retries=1,
                                       deadline=deadline)
    except UserError as exc:
        return OfficialWord(page_url, None, False, str(exc))
    hit = next((f for f in page.files if f.filename == filename), None)
    return OfficialWord(page_url, hit.sha256 if hit else None, hit is not None, None)


@dataclass(frozen=True)
class HashCheck:
    """What the official index said about the file (the plan's "hash_check").

    outcome: "official" (listed by the official index itself), "match", "official hash used" (the mirror
    publishes none), "not listed" (the official index has no such file), "not read" (it did not answer),
    "local" (the user's own file), "off" (no official index to ask)."""
    outcome: str
    official: Optional[str]  # the official page asked, or the official source that lists the file
    error: Optional[str]


@dataclass(frozen=True)
class Settled:
    sha256: Optional[str]  # what the download is checked against
    urls: tuple  # where the file may be fetched: every listing that does not contradict that sha256
    check: HashCheck


def settle_hash(best, listings: list, looked: Optional[OfficialWord]) -> Settled:
    """Which sha256 the download is checked against, and what the official index said. Pure. Raises
    HashMismatch when a mirror and the official index publish different hashes for the same file name (a
    mirror serving a changed file under an official name)."""
    official_sha, official_url = _official_sha(listings, looked)
    mirrored = [x for x in listings if x.kind == "mirror"]
    if official_sha:
        _refuse_mismatch(best, mirrored, official_sha, official_url)
    sha = official_sha or _published_sha(listings)
    urls = tuple(dict.fromkeys(x.url for x in listings if not (sha and x.sha256 and x.sha256 != sha)))
    outcome = _hash_outcome({x.kind for x in listings}, looked, mirrored)
    asked = looked.url if looked else official_url
    return Settled(sha, urls, HashCheck(outcome, asked, looked.error if looked else None))


def _official_sha(listings: list, looked: Optional[OfficialWord]) -> tuple:
    """(sha256, index URL) the official index vouches with: its own listing first, else the page read."""
    official_sha = next((x.sha256 for x in listings if x.kind == "official" and x.sha256), None)
    official_url = next((x.source_url for x in listings if x.kind == "official"), None)
    if official_sha is None and looked and looked.sha256:
        return looked.sha256, looked.url
    return official_sha, official_url


def _published_sha(listings: list) -> Optional[str]:
    """With no official word: the hash the picked listing publishes, else any listing's."""
    own = next((x.sha256 for x in listings if x.best), None)
    return own or next((x.sha256 for x in listings if x.sha256), None)


def _refuse_mismatch(best, mirrored: list, official_sha: str, official_url: Optional[str]) -> None:
    for x in mirrored:
        if x.sha256 and x.sha256 != official_sha:
            raise HashMismatch(
                f"{best.filename} has sha256 {x.sha256[:16]}... on {pypi_index.host_of(x.source_url)} but "
                f"{official_sha[:16]}... on the official index {pypi_index.host_of(official_url)}: the mirror "
                f"serves a different file under the same name, so nothing was installed (use another mirror, "
                f"or --official-pypi none / --official-pytorch none for an index that builds its own wheels).")


def _hash_outcome(kinds: set, looked: Optional[OfficialWord], mirrored: list) -> str:
    """HashCheck.outcome, from the kinds of listing and what the official page said (None: not asked)."""
    if "official" in kinds:
        return "official"
    if "local" in kinds:
        return "local"
    if looked is None:
        return "off"
    if looked.error:
        return "not read"
    if not looked.listed:
        return "not listed"
    if looked.sha256:
        return "match" if any(x.sha256 for x in mirrored) else "official hash used"
    return "not listed"  # listed without a hash: nothing to compare


def verification(sha256: Optional[str], urls) -> str:
    """How the wheel will be checked: a key of VERIFIED_WORDS."""
    if sha256:
        return "sha256"
    return "local" if any(mirrors.is_local(u) for u in urls) else "none"
