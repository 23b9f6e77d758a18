"""The install plan: gather the facts (target, GPUs, pip's config), read every page worth reading at once,
let `choose` pick among the files that exist, and assemble what will be fetched from where, and why.

Everything decided, nothing changed; the command layer renders the plan (`Plan.to_json` is its --json
shape), `execute` carries it out.
"""
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, is_dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from fomm_doctor.errors import UserError
from fomm_doctor.install import choose, hashes, metadata, target
from fomm_doctor.install import index as pypi_index
from fomm_doctor.install import sources as mirrors
from fomm_doctor.install.backend import Backend
from fomm_doctor.install.machine import InstalledTorch, Interpreter, Machine
from fomm_doctor.install.options import InstallOptions, Probes
from fomm_doctor.net.redact import redact
from fomm_doctor.resources import load_wheels_index

# What the project needs besides torch (pyproject's dependencies); read from the installed metadata when we can.
FALLBACK_DEPS = ["opencv-python>=4.5", "imageio-ffmpeg>=0.4.9", "packaging>=21", "rich>=12", "typer>=0.9",
                 "requests>=2.25", "psutil>=5.8", "PyYAML>=5.1"]


# ---- what a plan is ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceRead:
    """One index page read for torch, and what came of it."""
    name: str
    url: str
    ok: bool
    error: Optional[str]
    listed: bool  # it lists the chosen file


@dataclass(frozen=True)
class TorchPlan:
    """The chosen torch wheel: where it comes from, what vouches for it, and why it was chosen."""
    version: str  # with its local label: "2.14.1+cu126"
    backend: Backend
    backend_from: str  # "label", "metadata" or "table"
    why: str
    file: str
    urls: tuple  # where it may be fetched, in order
    sha256: Optional[str]  # what the download is checked against
    verified: str  # a key of hashes.VERIFIED_WORDS
    hash_check: hashes.HashCheck
    size: Optional[int]
    sources: tuple  # SourceRead, every page read
    links_elsewhere: tuple  # hosts the index's links lead to (a mirror that points upstream)
    already_installed: bool = False


@dataclass(frozen=True)
class Plan:
    machine: Machine
    mirror: mirrors.Mirror
    dependency_index: Optional[mirrors.DependencyIndex]  # None: pip's own configuration
    packages: tuple  # requirements besides torch
    torch: Optional[TorchPlan] = None  # None: torch was left out (--only)
    installed: Optional[InstalledTorch] = None  # the target's torch; None for another machine's, or none
    warnings: tuple = ()

    def to_json(self) -> dict:
        """The plan as `install --json` prints it."""
        m, py = self.machine, self.machine.py
        out = {
            "python": {k: getattr(py, k) for k in ("executable", "version", "bits", "platform", "machine",
                                                    "in_venv", "pip")},
            "tags": list(py.tags[:3]), "tags_source": py.tags_source, "platform_key": m.pkey,
            "platform_tag": py.platform_tag,
            "nvidia": {"driver_version": m.driver, "gpus": as_data(m.nvidia_gpus)},
            "amd": {"gpus": as_data(m.amd_gpus)}, "intel": {"gpus": as_data(m.gpus.intel)},
            "mirror": {"name": self.mirror.name, "pypi": self.mirror.pypi,
                       "pytorch": self.mirror.pytorch.url if self.mirror.pytorch else None},
            "dependency_index": as_data(self.dependency_index), "packages": list(self.packages),
            "torch": as_data(self.torch), "warnings": list(self.warnings),
        }
        if self.torch is not None:
            out["installed"] = as_data(self.installed)
        return out


def as_data(value):
    """Plain data (dicts, lists, strings, numbers) of a typed value, for JSON: a dataclass as a dict of its
    fields, a Backend as its label."""
    if isinstance(value, Backend):
        return str(value)
    if is_dataclass(value):
        return {f.name: as_data(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [as_data(v) for v in value]
    if isinstance(value, dict):
        return {k: as_data(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


# ---- facts -------------------------------------------------------------------------------------------------

def pip_settings(py: Interpreter, env: dict) -> dict:
    """pip's index settings as pip running in the target interpreter would see them."""
    from fomm_doctor.install.pip_config import pip_config_files, read_pip_index_config
    facts = {"platform": py.platform, "env": env, "home": str(Path.home()), "prefix": py.prefix}
    return read_pip_index_config(env, pip_config_files(facts))


def installed_torch(python: str, timeout: float = 120.0) -> Optional[InstalledTorch]:
    """The torch the target has, or None (not installed, or it does not import)."""
    code = ("import json, torch; print('FOMM_TORCH:' + json.dumps({'version': torch.__version__, "
            "'cuda': getattr(getattr(torch, 'version', None), 'cuda', None)}))")
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
    except (OSError, subprocess.SubprocessError):
        return None
    for line in proc.stdout.splitlines():
        if line.startswith("FOMM_TORCH:"):
            return InstalledTorch.from_facts(json.loads(line[len("FOMM_TORCH:"):]))
    return None


# ---- reading indexes ---------------------------------------------------------------------------------------

def read_sources(sources: list, timeout: float, retries: int, session=None) -> tuple:
    """Read every source concurrently -> ([(source, files)], {source name: error sentence})."""
    def one(src):
        try:
            if src.kind == "find-links":
                return src, pypi_index.read_find_links(src.url, "torch", session=session, timeout=timeout,
                                                       retries=retries).files, None
            return src, pypi_index.read_project(src.url, "torch", session=session, timeout=timeout,
                                                retries=retries).files, None
        except UserError as exc:
            return src, [], str(exc)
        except Exception as exc:  # a broken page must not take the plan down
            return src, [], redact(f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=max(1, len(sources))) as pool:
        results = list(pool.map(one, sources))
    return [(s, f) for s, f, _ in results], {s.url: e for s, _, e in results if e}


# ---- the plan ----------------------------------------------------------------------------------------------

def project_deps() -> list:
    try:
        from importlib.metadata import requires
        reqs = [r for r in (requires("fomm-doctor") or []) if "extra ==" not in r]
        return reqs or FALLBACK_DEPS
    except Exception:
        return FALLBACK_DEPS


def make_plan(opts: InstallOptions, probes: Probes, *, py: Optional[Interpreter] = None,
              pip_cfg: Optional[dict] = None, idx: Optional[dict] = None, read=read_sources, installed=None,
              session=None, official_read=None) -> Plan:
    """Everything decided, nothing changed. Raises NoFit / UserError with one sentence when nothing fits."""
    idx = idx or load_wheels_index()
    m = target.machine(opts, probes.gpus, py=py)
    pip_cfg = pip_cfg if pip_cfg is not None else pip_settings(m.py, opts.env)
    only = [pypi_index.normalize(n) for n in opts.only] if opts.only else None
    deps = tuple(r for r in project_deps() if only is None or pypi_index.normalize(_req_name(r)) in only)
    mirror = mirrors.with_pytorch_index(mirrors.resolve_mirror(opts.mirror, idx, pip_cfg, probes.mirrors),
                                        opts.pytorch_index)
    plan = Plan(m, mirror, mirrors.dependency_indexes(mirror, pip_cfg) if mirror.name != "pip" else None, deps)
    if only is None or "torch" in only:
        plan = _plan_torch(plan, opts, pip_cfg, read, installed, session, official_read)
    return replace(plan, warnings=plan_warnings(plan))


def _plan_torch(plan: Plan, opts: InstallOptions, pip_cfg: dict, read, installed, session, official_read) -> Plan:
    """Choose the torch wheel, settle which sha256 vouches for it, and say whether the target already has it."""
    m = plan.machine
    _refuse_impossible(opts, m)
    sources = mirrors.torch_sources(plan.mirror, choose.builds_to_read(opts.backend, m), pip_cfg)
    found, errors = read(sources, opts.timeout, min(opts.retries, 4))
    cands, picked = _choose(found, m, opts, session)
    if picked is None:
        raise _no_fit(opts, m, cands, [s.url for s, _ in found if s.url not in errors], errors)
    official = mirrors.official_indexes(opts.official_pypi, opts.official_pytorch)
    listings = hashes.file_listings(picked.best, cands, official)
    base = hashes.official_lookup(listings, official, picked.best.version)
    # the official page is read while the target's torch is probed, and within a short deadline of its own
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(official_read or hashes.read_official, base, picked.best.filename, opts.timeout,
                              session) if base else None
        have = None if opts.other_machine else (installed or installed_torch)(m.py.executable)
        looked = pending.result() if pending else None
    torch = _torch_entry(picked, listings, sources, errors, hashes.settle_hash(picked.best, listings, looked))
    # None when planned for another machine: what this one has does not matter
    return replace(plan, torch=replace(torch, already_installed=_already_installed(have, picked.best)),
                   installed=have)


def _refuse_impossible(opts: InstallOptions, m: Machine) -> None:
    """NoFit before any index is read when this Python or the asked backend cannot have torch at all."""
    problem = choose.python_problem(m.py, opts.torch) or \
        (choose.backend_problem(opts.backend, m) if opts.backend else None)
    if problem:
        raise choose.NoFit(problem)


def _no_fit(opts: InstallOptions, m: Machine, cands: list, read_ok: list, errors: dict) -> choose.NoFit:
    return choose.NoFit(choose.explain_no_fit(opts.backend, m, opts.torch, cands, [_short_url(u) for u in read_ok],
                                              tuple(errors.values())))


def _already_installed(have: Optional[InstalledTorch], best: choose.Candidate) -> bool:
    """The target's torch is the chosen version, or the same release in the same build."""
    return bool(have) and (
        have.version == best.version
        or (choose.base_version(have.version) == choose.base_version(best.version) and have.backend == best.backend))


def _choose(found: list, m, opts: InstallOptions, session) -> tuple:
    """Classify and choose; when the pick (or a newer rival) is a plain wheel judged from the table, read its
    PEP 658 metadata where the index offers it and choose again from what the metadata says."""
    requires, tried = {}, set()
    for _ in range(3):  # each round settles the six most promising plain wheels; a pick rarely needs a second
        cands, _skipped = choose.classify(found, m, requires)
        picked = choose.choose(cands, opts.backend, m, opts.torch)
        unsure = [c for c in cands if c.backend_from == "table" and c.file.metadata_url and c.filename not in tried
                  and (picked is None or c.release >= picked.best.release)]
        if not unsure:
            break
        batch = sorted(unsure, key=choose.rank, reverse=True)[:6]
        tried.update(c.filename for c in batch)
        requires.update(metadata_of(batch, opts.timeout, session))
    else:
        cands, _skipped = choose.classify(found, m, requires)
        picked = choose.choose(cands, opts.backend, m, opts.torch)
    return cands, picked


def metadata_of(cands: list, timeout: float, session=None) -> dict:
    """{filename: Requires-Dist} from the index's `.metadata` files, read concurrently (each size-capped and
    within the page deadline); a file that cannot be read or fails its published sha256 is left out (the
    wheel's own METADATA is checked after download)."""
    def one(c):
        return c.filename, remote_requires(c.file.metadata_url, c.file.metadata_sha256, timeout, session)
    with ThreadPoolExecutor(max_workers=max(1, min(6, len(cands)))) as pool:
        return {name: reqs for name, reqs in pool.map(one, cands) if reqs is not None}


def remote_requires(metadata_url: str, sha256: Optional[str], timeout: float, session=None) -> Optional[list]:
    """The Requires-Dist of a PEP 658 `.metadata` file (size-capped, within the page deadline, checked against
    `sha256` when one is published); None when it cannot be read or does not match."""
    import hashlib
    from fomm_doctor.net.pages import PageError, read_page
    try:
        page = read_page(metadata_url, session=session, max_bytes=metadata.MAX_METADATA,
                         deadline_s=pypi_index.page_deadline(timeout), timeout=timeout)
    except PageError:
        return None
    body = page.body if page.status == 200 else None
    if not body or (sha256 and hashlib.sha256(body).hexdigest() != sha256):
        return None
    return metadata.requires_dist(body.decode("utf-8", "replace"))


# ---- warnings --------------------------------------------------------------------------------------------

def plan_warnings(plan: Plan) -> tuple:
    """One line each: a plain-http index or download, a wheel that cannot be verified, an official index that
    could not be asked. Shown by the command and kept in --json (credentials masked there)."""
    t = plan.torch
    out = [f"{redact(origin)} is plain http://: anyone on the way can change what it sends, the wheel "
           f"and its sha256 alike; prefer an https:// mirror." for origin in _plain_http_origins(_plan_urls(plan))]
    if t and t.hash_check.outcome == "not read":
        out.append(f"the official index could not be asked for the sha256 of {t.file} "
                   f"({redact(t.hash_check.error or 'no answer')}).")
    if t and t.verified == "none":
        out.append(f"{t.file} comes with no published sha256, so it cannot be verified: it is refused unless "
                   f"you add --allow-unverified.")
    return tuple(out)


def _plan_urls(plan: Plan) -> list:
    """Every URL the install reads from: the wheel's, the indexes that list it, the dependency index."""
    t = plan.torch
    urls = list(t.urls) + [x.url for x in t.sources if x.ok and x.listed] if t else []
    return urls + ([plan.dependency_index.index_url] if plan.dependency_index else [])


def _plain_http_origins(urls: list) -> list:
    """http://host of each plain-http URL, once each, in order."""
    origins = []
    for u in urls:
        try:
            parts = urlsplit(u)
        except ValueError:
            continue
        if parts.scheme.lower() == "http":
            origins.append(f"http://{parts.netloc}")
    return list(dict.fromkeys(origins))


def _torch_entry(picked: choose.Choice, listings: list, sources: list, errors: dict,
                 settled: hashes.Settled) -> TorchPlan:
    best, urls = picked.best, settled.urls
    used = {x.source_url for x in listings if x.url in urls}
    upstream = sorted({pypi_index.host_of(u) for u in urls if not mirrors.is_local(u)}
                      - {pypi_index.host_of(s.url) for s in sources})
    return TorchPlan(
        best.version, best.backend, best.backend_from, picked.why, best.filename, urls, settled.sha256,
        hashes.verification(settled.sha256, urls), settled.check,
        next((x.size for x in listings if x.url in urls and x.size), None),
        tuple(SourceRead(s.name, s.url, s.url not in errors, errors.get(s.url), s.url in used) for s in sources),
        tuple(upstream))


def _req_name(req: str) -> str:
    import re
    return re.split(r"[<>=!~;\[ ]", req, 1)[0]


def _short_url(url: str) -> str:
    """host/path of a URL for a sentence; credentials masked (redact needs the scheme, so mask first)."""
    shown = redact(url)
    return shown.split("://", 1)[1] if "://" in shown else shown


