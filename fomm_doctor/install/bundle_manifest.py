"""The manifest of an offline bundle (`fomm-bundle.json`): every wheel in the bundle by name with its sha256,
which of them is torch, and the requirements it was made for. `install --from` installs only what it names,
so a wheel dropped into the folder later, or changed there, is never installed.

The manifest is read as a plain file of bounded size (never through a link, never a device or a pipe), and
parsed strictly: anything else is one sentence.
"""
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from fomm_core.private import open_plain
from fomm_doctor.errors import UserError
from fomm_doctor.install.backend import Backend
from fomm_doctor.install.index import plain_filename
from fomm_doctor.net.digests import BLOCK
from fomm_doctor.net.redact import redact

MANIFEST = "fomm-bundle.json"
SCHEMA = 2  # 1 named only the torch wheel's sha256
MAX_MANIFEST = 1024 * 1024  # a few hundred bytes per wheel; more is not a manifest we wrote
MAX_FILES = 5000
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Manifest:
    torch_file: str
    torch_version: str
    backend: Backend
    files: dict  # wheel file name -> sha256 (lowercase hex), torch's included
    packages: tuple  # the requirements the bundle was made for
    verified: Optional[str]  # how the torch wheel was checked when the bundle was made


def make_manifest(torch_file: str, torch_version: str, backend: Backend, files: dict, packages, verified: str,
                  platform_key: str, python: str) -> dict:
    """The manifest's content for `files` {wheel name: sha256}."""
    return {"schema": SCHEMA, "torch": {"version": torch_version, "backend": str(backend), "file": torch_file},
            "sha256": files[torch_file], "verified": verified, "packages": list(packages),
            "files": dict(sorted(files.items())), "platform_key": platform_key, "python": python}


def file_sha256(path: Path) -> Optional[str]:
    """The sha256 of a plain file reached without a link, or None when `path` is anything else or unreadable."""
    try:
        fd = open_plain(path)
    except OSError:
        return None
    h = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: Path) -> Manifest:
    """The manifest of the bundle in `folder`, read and checked; one sentence when there is none to use."""
    path = Path(folder) / MANIFEST
    try:
        fd = open_plain(path)
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_MANIFEST + 1)
    except OSError as exc:
        why = "is a link" if os.path.islink(path) else \
            "is missing" if not os.path.lexists(path) else f"cannot be read ({exc.strerror or exc})"
        raise UserError(_no_bundle(folder, why)) from None
    return parse_manifest(data, folder)


def _no_bundle(folder, why: str) -> str:
    return (f"{redact(str(folder))} holds no bundle made by `fomm-doctor install --download-only` ({MANIFEST} "
            f"{why}); make the bundle again.")


def parse_manifest(data: bytes, folder) -> Manifest:
    """`data` (a manifest's bytes) checked and parsed; UserError with one sentence for anything we did not
    write: too large, not JSON, an older schema, a file name that is not a plain wheel name, a sha256 that is
    not one, a requirement that is not one or that points at a URL."""
    if len(data) > MAX_MANIFEST:
        raise UserError(_no_bundle(folder, f"is larger than {MAX_MANIFEST // 1024} KiB"))
    try:
        m = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UserError(_no_bundle(folder, "is not JSON")) from None
    if not isinstance(m, dict) or m.get("schema") != SCHEMA or type(m.get("schema")) is not int:
        raise UserError(_no_bundle(folder, "was made by another version of fomm-doctor, or is not a manifest: it "
                                           "does not name every wheel with its sha256"))
    if not _complete(m):
        raise UserError(_no_bundle(folder, "is incomplete"))
    t, files, packages = m["torch"], m["files"], m.get("packages", [])
    try:
        backend = Backend.parse(t["backend"])
    except (ValueError, TypeError, KeyError):
        raise UserError(_no_bundle(folder, "names no torch build")) from None
    clean = {name: _checked_file(name, sha, folder) for name, sha in files.items()}
    _one_wheel_per_project(clean, folder)
    if t["file"] not in clean or m.get("sha256", clean.get(t["file"])) != clean.get(t["file"]):
        raise UserError(_no_bundle(folder, f"does not list its torch wheel {redact(t['file'])!r} with one sha256"))
    reqs = tuple(checked_requirement(p, f"{MANIFEST} in {redact(str(folder))}") for p in packages)
    return Manifest(t["file"], t["version"], backend, clean, reqs, m.get("verified"))


def _complete(m: dict) -> bool:
    """Every part of a manifest there, of its type."""
    t, files, packages = m.get("torch"), m.get("files"), m.get("packages", [])
    return (isinstance(t, dict) and all(isinstance(t.get(k), str) for k in ("file", "version", "backend"))
            and isinstance(files, dict) and 0 < len(files) <= MAX_FILES and isinstance(packages, list)
            and len(packages) <= MAX_FILES and isinstance(m.get("verified", ""), (str, type(None))))


def _checked_file(name, sha, folder) -> str:
    if not (plain_filename(name) and name.endswith(".whl") and _wheel_project(name)):
        raise UserError(f"{MANIFEST} in {redact(str(folder))} lists {redact(str(name))[:200]!r}, which is not a "
                        f"plain wheel file name; make the bundle again.")
    if not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        raise UserError(f"{MANIFEST} in {redact(str(folder))} gives {name} no sha256; make the bundle again.")
    return sha


def _wheel_project(name: str) -> Optional[tuple]:
    """(canonical project name, version) of a wheel file name, None when it is not one."""
    try:
        project, version, _build, _tags = parse_wheel_filename(name)
    except ValueError:  # InvalidWheelFilename, InvalidVersion
        return None
    return canonicalize_name(project), version


def _one_wheel_per_project(files: dict, folder) -> None:
    seen = {}
    for name in files:
        project = _wheel_project(name)[0]
        if project in seen:
            raise UserError(f"{MANIFEST} in {redact(str(folder))} lists two wheels of {project} ({seen[project]} "
                            f"and {name}); make the bundle again.")
        seen[project] = name


def wheels_by_project(files) -> dict:
    """{canonical project name: (wheel file name, version)} of a manifest's files."""
    return {p: (name, v) for name in files for p, v in [_wheel_project(name)]}


def checked_requirement(text, where: str) -> Requirement:
    """A requirement pip may be given: not an option such as --index-url, not a URL to fetch from."""
    if not isinstance(text, str) or text.lstrip().startswith("-"):
        raise UserError(f"{where} lists {redact(str(text))[:200]!r}, which is not a requirement; make the bundle "
                        f"again.")
    try:
        req = Requirement(text)
    except InvalidRequirement:
        raise UserError(f"{where} lists {redact(text)[:200]!r}, which is not a requirement; make the bundle "
                        f"again.") from None
    refuse_url(req, where)
    return req


def refuse_url(req: Requirement, where: str) -> None:
    """A requirement that names a URL (`name @ file:///...`, `name @ https://...`) would be fetched from
    outside the bundle, unchecked: one sentence."""
    if req.url:
        raise UserError(f"{where} requires {redact(str(req))[:200]!r}, which would be fetched from outside the "
                        f"bundle; a bundle installs only the wheels it lists, so it was refused.")
