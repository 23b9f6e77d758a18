"""A bundle for another machine: `install --download-only DIR` puts the verified torch wheel, its dependencies
and the project's packages in DIR as wheels for the planned machine, with a manifest; `install --from DIR`
installs them there with no network.
"""
import json
import os
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from fomm_doctor.errors import UserError
from fomm_doctor.install.backend import Backend
from fomm_doctor.install.execute import (Verification, check_build, check_folder, fetch_torch, inside, pip_args,
                                         run_pip, verify_or_refuse)
from fomm_doctor.install.options import InstallOptions
from fomm_doctor.install.plan import Plan
from fomm_doctor.net import digests
from fomm_doctor.net.redact import redact

BUNDLE = "fomm-bundle.json"


@dataclass(frozen=True)
class Bundle:
    """What --download-only left in its folder."""
    plan: Plan  # the plan as carried out (the torch build as the wheel's own metadata says)
    folder: str
    files: tuple  # the wheels in it
    manifest: dict  # BUNDLE's content
    verified: str  # how the torch wheel was checked when it was fetched (a key of VERIFIED_WORDS)

    def to_json(self) -> dict:
        return {"folder": self.folder, "files": list(self.files), "manifest": self.manifest,
                "verified": self.verified}


@dataclass(frozen=True)
class BundleOutcome:
    """What --from did: the bundle's torch wheel installed, and the check in a fresh process."""
    path: str  # the torch wheel installed
    verified_when_made: Optional[str]  # how it was checked when the bundle was made
    verify: Optional[Verification]

    def to_json(self) -> dict:
        # the bundle is the user's own folder: its manifest proves the wheel is unchanged since it was made
        return {"torch": {"action": "installed from bundle", "path": self.path, "verified": "local",
                          "verified_when_made": self.verified_when_made},
                "verify": self.verify.to_json() if self.verify else None}


def download_bundle(plan: Plan, opts: InstallOptions, dest: Path, *, progress: Optional[Callable] = None,
                    say: Optional[Callable] = None) -> Bundle:
    """The verified torch wheel, its dependencies and the project's packages, as wheels for the planned
    machine, in `dest`, with a manifest."""
    check_folder("--download-only", dest)
    wheel = inside(dest, plan.torch.file)
    got = fetch_torch(plan.torch, opts, progress)
    t = check_build(Path(got.path), plan)
    dest.mkdir(parents=True, exist_ok=True)
    if Path(got.path).resolve() != wheel.resolve():
        shutil.copyfile(got.path, wheel.with_suffix(".part"))
        os.replace(wheel.with_suffix(".part"), wheel)
    py = plan.machine.py
    target = ["--only-binary=:all:", "--platform", py.platform_tag, "--python-version", py.minor] \
        if py.platform_tag else []
    run_pip(sys.executable, ["--dest", str(dest), *target, str(wheel), *plan.packages, *pip_args(plan, opts)],
            say, verb="download")
    manifest = {"schema": 1, "torch": {"version": t.version, "backend": str(t.backend), "file": t.file},
                "sha256": digests.file_sha256(wheel), "verified": got.verified, "packages": list(plan.packages),
                "platform_key": plan.machine.pkey, "python": py.version}
    tmp = dest / (BUNDLE + ".part")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, dest / BUNDLE)
    return Bundle(replace(plan, torch=t), str(dest), tuple(sorted(p.name for p in dest.glob("*.whl"))), manifest,
                  got.verified)


def _read_manifest(folder: Path) -> tuple:
    """(manifest, torch version, its Backend, wheel file name, sha256, packages) of a bundle; one sentence when
    the folder holds none that can be used."""
    try:
        manifest = json.loads((folder / BUNDLE).read_text(encoding="utf-8"))
        t, sha, packages = manifest["torch"], manifest["sha256"], manifest.get("packages", [])
        backend = Backend.parse(t["backend"])
        ok = all(isinstance(x, str) for x in (t["file"], t["version"], sha)) and isinstance(packages, list)
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise UserError(f"{folder} holds no bundle made by `fomm-doctor install --download-only` "
                        f"({BUNDLE} is missing or unreadable).")
    return manifest, t["version"], backend, t["file"], sha, packages


def install_bundle(folder: Path, python: str, *, verify_torch: bool = True,
                   say: Optional[Callable] = None) -> BundleOutcome:
    """Install a bundle made by `--download-only` into `python`, from the folder alone (pip gets --no-index)."""
    manifest, version, backend, file, sha, packages = _read_manifest(folder)
    wheel = inside(folder, file)
    for req in packages:  # handed to pip as arguments: a requirement, never an option such as --index-url
        if not _requirement(req):
            raise UserError(f"{BUNDLE} in {folder} lists {redact(str(req))!r}, which is not a requirement; make the "
                            f"bundle again.")
    if not wheel.is_file() or digests.file_sha256(wheel) != sha:
        raise UserError(f"{wheel.name} in {folder} is missing or not the file that was downloaded (sha256 differs); "
                        f"make the bundle again.")
    run_pip(python, ["--no-index", "--find-links", str(folder), str(wheel), *packages], say)
    checked = verify_or_refuse(python, version, backend) if verify_torch else None
    return BundleOutcome(str(wheel), manifest.get("verified"), checked)


def _requirement(text) -> bool:
    from packaging.requirements import InvalidRequirement, Requirement
    if not isinstance(text, str) or text.startswith("-"):
        return False
    try:
        Requirement(text)
    except InvalidRequirement:
        return False
    return True
