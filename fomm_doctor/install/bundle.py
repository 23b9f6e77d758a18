"""A bundle for another machine: `install --download-only DIR` puts the verified torch wheel, its dependencies
and the project's packages in DIR as wheels for the planned machine, with a manifest naming each with its
sha256; `install --from DIR` installs exactly those wheels there, each checked, with no network: pip runs
isolated from the user's environment and config files, with no index, and every wheel pinned by its hash.
"""
import json
import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from fomm_doctor.errors import UserError
from fomm_doctor.install import metadata
from fomm_doctor.install.bundle_manifest import (MANIFEST as BUNDLE, Manifest, checked_requirement, file_sha256,
                                                 make_manifest, read_manifest, refuse_url, wheels_by_project)
from fomm_doctor.install.execute import (Verification, check_build, check_folder, fetch_torch, inside, pip_args,
                                         run_pip, verify_or_refuse)
from fomm_doctor.install.options import InstallOptions
from fomm_doctor.install.plan import Plan
from fomm_doctor.net.redact import redact


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
    machine, in `dest`, with a manifest. pip downloads into a scratch folder first, so the manifest names
    exactly what it fetched (not what else the folder holds), and a refused download leaves nothing."""
    check_folder("--download-only", dest)
    inside(dest, plan.torch.file)
    packages = [checked_requirement(p, "the plan") for p in plan.packages]
    got = fetch_torch(plan.torch, opts, progress)
    t = check_build(Path(got.path), plan)
    dest.mkdir(parents=True, exist_ok=True)
    py = plan.machine.py
    target = ["--platform", py.platform_tag, "--python-version", py.minor] if py.platform_tag else []
    work = Path(tempfile.mkdtemp(dir=dest, prefix=".fomm-download-"))
    try:
        # wheels only: an sdist would run its build code on the other machine and need tools it may lack
        run_pip(sys.executable, ["--dest", str(work), "--only-binary=:all:", *target, got.path,
                                 *map(str, packages), *pip_args(plan, opts)], say, verb="download")
        files = {p.name: _checked_wheel(p, p.name) for p in sorted(work.iterdir())}
        if t.file not in files:
            raise UserError(f"pip did not save {t.file} in the bundle; nothing was written to {dest}.")
        targets = {name: inside(dest, name) for name in files}  # every name checked before any file moves
        for name, path in targets.items():
            os.replace(work / name, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    manifest = make_manifest(t.file, t.version, t.backend, files, plan.packages, got.verified,
                             plan.machine.pkey, py.version)
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{BUNDLE}.", suffix=".part")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(manifest, indent=1))
    os.chmod(tmp, 0o644)  # a bundle is made to be copied and read elsewhere; it holds no secret
    os.replace(tmp, dest / BUNDLE)
    return Bundle(replace(plan, torch=t), str(dest), tuple(sorted(files)), manifest, got.verified)


def _checked_wheel(path: Path, where: str) -> str:
    """The sha256 of a wheel pip saved; one sentence for a file that is not a wheel asking only for wheels."""
    sha = file_sha256(path) if path.name.endswith(".whl") else None
    if sha is None:
        raise UserError(f"pip saved {redact(where)}, which is not a wheel, so the bundle was refused.")
    _refuse_urls(path, where)
    return sha


def _refuse_urls(wheel: Path, where: str) -> None:
    """One sentence for a wheel that asks for something outside the bundle (a `name @ URL` requirement) or
    whose requirements cannot be read."""
    try:
        reqs = metadata.requires_dist(metadata.wheel_metadata(wheel))
    except (OSError, ValueError, zipfile.BadZipFile, RuntimeError, NotImplementedError) as exc:
        raise UserError(f"{redact(where)} is not a readable wheel ({exc}); make the bundle again.") from None
    for text in reqs:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            raise UserError(f"{redact(where)} requires {redact(text)[:200]!r}, which is not a requirement; make "
                            f"the bundle again.") from None
        refuse_url(req, redact(where))


def install_bundle(folder: Path, python: str, *, verify_torch: bool = True,
                   say: Optional[Callable] = None) -> BundleOutcome:
    """Install a bundle made by `--download-only` into `python`: only the wheels its manifest names, each
    checked against its sha256 here and again by pip (--require-hashes), with no index and none of the user's
    pip settings. Nothing is installed when any check fails."""
    folder = Path(folder)
    m = read_manifest(folder)
    for name, sha in m.files.items():
        if file_sha256(folder / name) != sha:
            raise UserError(f"{name} in {folder} is missing or not the file that was downloaded (sha256 differs); "
                            f"nothing was installed, so make the bundle again.")
        _refuse_urls(folder / name, f"{name} in {folder}")
    _check_packages(m, folder)
    with tempfile.TemporaryDirectory(prefix="fomm-bundle-") as tmp:
        pinned = Path(tmp) / "requirements.txt"
        pinned.write_text("".join(f"{(folder / name).resolve().as_uri()} --hash=sha256:{sha}\n"
                                  for name, sha in m.files.items()), encoding="utf-8")
        run_pip(python, ["--isolated", "--no-index", "--require-hashes", "--only-binary=:all:", "-r", str(pinned)],
                say, env=offline_pip_env())
    checked = verify_or_refuse(python, m.torch_version, m.backend) if verify_torch else None
    return BundleOutcome(str(folder / m.torch_file), m.verified, checked)


def _check_packages(m: Manifest, folder: Path) -> None:
    """Every requirement the bundle was made for has its wheel in it (one with a marker may not apply to the
    machine it was made for, and then has none)."""
    have = wheels_by_project(m.files)
    for req in m.packages:
        got = have.get(canonicalize_name(req.name))
        if got is None and req.marker is None:
            raise UserError(f"{BUNDLE} in {folder} lists {req}, but the bundle holds no wheel of it; make the "
                            f"bundle again.")
        if got is not None and not req.specifier.contains(got[1], prereleases=True):
            raise UserError(f"{BUNDLE} in {folder} lists {req}, but the bundle holds {got[0]}; make the bundle "
                            f"again.")


def offline_pip_env() -> dict:
    """This process's environment without pip's own settings (PIP_INDEX_URL, PIP_FIND_LINKS, ...) and with
    every pip config file turned off: pip then reads nothing that could send it to the network."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env
