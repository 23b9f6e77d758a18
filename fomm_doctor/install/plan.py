"""The install plan: gather the facts (target, GPUs, pip's config), read every page worth reading at once,
let `choose` pick among the files that exist, and assemble what will be fetched from where, and why.

Everything decided, nothing changed; the command layer renders the plan, `execute` carries it out.
"""
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from fomm_doctor.errors import NetworkError, UserError
from fomm_doctor.install import choose, metadata, target
from fomm_doctor.install import index as pypi_index
from fomm_doctor.install import sources as mirrors
from fomm_doctor.net.redact import redact
from fomm_doctor.resources import load_wheels_index

# What the project needs besides torch (pyproject's dependencies); read from the installed metadata when we can.
FALLBACK_DEPS = ["opencv-python>=4.5", "imageio-ffmpeg>=0.4.9", "packaging>=21", "rich>=12", "typer>=0.9",
                 "requests>=2.25", "psutil>=5.8", "PyYAML>=5.1"]


@dataclass
class InstallOptions:
    python: Optional[str] = None
    backend: str = "auto"
    torch: Optional[str] = None
    mirror: Optional[str] = None
    only: Optional[list] = None  # package names; None = torch and the rest
    retries: int = 8
    timeout: float = 15.0
    connections: Optional[int] = None  # None: several byte ranges at once where the server allows it
    pytorch_index: Optional[str] = None
    platform: Optional[str] = None  # plan for another machine: pip platform tag, Python, driver, GPUs
    python_version: Optional[str] = None
    driver: Optional[str] = None
    gpu_arch: Optional[str] = None
    dry_run: bool = False
    cache_dir: Optional[Path] = None
    verify: bool = True
    allow_unverified: bool = False  # install a wheel from the network that has no published sha256
    official_pypi: Optional[str] = None  # index to compare a mirror's plain wheel with (None: pypi.org; "none": off)
    official_pytorch: Optional[str] = None  # the same for +cpu/+cuXXX builds (None: download.pytorch.org/whl)
    env: dict = field(default_factory=lambda: dict(os.environ))


class HashMismatch(NetworkError):
    """A mirror publishes a different sha256 than the official index for the same file name."""


OFFICIAL_DEADLINE = 10.0  # the official page is a second opinion: it may not hold the plan up for long


# ---- facts -------------------------------------------------------------------------------------------------

def probe_gpus() -> dict:
    """NVIDIA, AMD and Intel GPU facts from the probes `check` uses."""
    from fomm_doctor.checks.gpu import probe_nvidia
    from fomm_doctor.checks.gpu_vendors import probe_amd, probe_intel
    return {"nvidia": probe_nvidia(), "amd": probe_amd(), "intel": probe_intel()}


def pip_settings(py: dict, env: dict) -> dict:
    """pip's index settings as pip running in the target interpreter would see them."""
    from fomm_doctor.install.pip_config import pip_config_files, read_pip_index_config
    facts = {"platform": py["platform"], "env": env, "home": str(Path.home()), "prefix": py.get("prefix", "")}
    return read_pip_index_config(env, pip_config_files(facts))


def installed_torch(python: str, timeout: float = 120.0) -> Optional[dict]:
    """{"version", "cuda"} of the torch the target has, or None (not installed, or it does not import)."""
    code = ("import json, torch; print('FOMM_TORCH:' + json.dumps({'version': torch.__version__, "
            "'cuda': getattr(getattr(torch, 'version', None), 'cuda', None)}))")
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
    except (OSError, subprocess.SubprocessError):
        return None
    for line in proc.stdout.splitlines():
        if line.startswith("FOMM_TORCH:"):
            return json.loads(line[len("FOMM_TORCH:"):])
    return None


def backend_of_installed(info: dict) -> str:
    label = info["version"].split("+", 1)[1] if "+" in info["version"] else None
    if label:
        return label
    cuda = info.get("cuda")
    return "cu" + cuda.replace(".", "")[:3] if cuda else "cpu"


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


def make_plan(opts: InstallOptions, *, py: Optional[dict] = None, gpus: Optional[dict] = None,
              pip_cfg: Optional[dict] = None, idx: Optional[dict] = None, read=read_sources,
              probe=None, installed=None, session=None, official_read=None) -> dict:
    """Everything decided, nothing changed. Raises NoFit / UserError with one sentence when nothing fits."""
    idx = idx or load_wheels_index()
    m = target.machine(opts, py=py, gpus=gpus, probe_gpus=probe_gpus)
    pip_cfg = pip_cfg if pip_cfg is not None else pip_settings(m.py, opts.env)
    only = [pypi_index.normalize(n) for n in opts.only] if opts.only else None
    deps = [r for r in project_deps() if only is None or pypi_index.normalize(_req_name(r)) in only]
    mirror = mirrors.with_pytorch_index(mirrors.resolve_mirror(opts.mirror, idx, pip_cfg, probe=probe),
                                        opts.pytorch_index)
    plan = _plan_head(m, mirror, pip_cfg, deps)
    if only is None or "torch" in only:
        _plan_torch(plan, opts, m, mirror, pip_cfg, read, installed, session, official_read)
    plan["warnings"] = plan_warnings(plan)
    return plan


def _plan_torch(plan: dict, opts: InstallOptions, m, mirror: dict, pip_cfg: dict, read, installed, session,
                official_read) -> None:
    """Choose the torch wheel, settle which sha256 vouches for it, and say whether the target already has it."""
    _refuse_impossible(opts, m)
    sources = mirrors.torch_sources(mirror, choose.builds_to_read(opts.backend, m), m.py, pip_cfg)
    found, errors = read(sources, opts.timeout, min(opts.retries, 4))
    cands, picked = _choose(found, m, opts, session)
    if picked is None:
        raise _no_fit(opts, m, cands, [s.url for s, _ in found if s.url not in errors], errors)
    official = mirrors.official_indexes(opts.official_pypi, opts.official_pytorch)
    listings = file_listings(picked.best, cands, official)
    base = official_lookup(listings, official, picked.best.version)
    probe_here = not (opts.platform or opts.python_version)
    # the official page is read while the target's torch is probed, and within a short deadline of its own
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(official_read or read_official, base, picked.best.filename, opts.timeout,
                              session) if base else None
        have = (installed or installed_torch)(m.py["executable"]) if probe_here else None
        looked = pending.result() if pending else None
    plan["torch"] = _torch_entry(picked, listings, sources, errors, settle_hash(picked.best, listings, looked))
    plan["installed"] = have  # None when planned for another machine: what this one has does not matter
    plan["torch"]["already_installed"] = _already_installed(have, picked.best)


def _refuse_impossible(opts: InstallOptions, m) -> None:
    """NoFit before any index is read when this Python or the asked backend cannot have torch at all."""
    for problem in (choose.python_problem(m.py, opts.torch),
                    choose.backend_problem(opts.backend, m) if opts.backend != "auto" else None):
        if problem:
            raise choose.NoFit(problem[0].upper() + problem[1:] + ".")


def _no_fit(opts: InstallOptions, m, cands: list, read_ok: list, errors: dict) -> choose.NoFit:
    msg = choose.explain_no_fit(opts.backend, m, opts.torch, cands, [_short_url(u) for u in read_ok])
    if errors and not read_ok:
        msg = msg[:-1] + f"; no index answered ({'; '.join(errors.values())})."
    return choose.NoFit(msg)


def _already_installed(have: Optional[dict], best) -> bool:
    """The target's torch is the chosen version, or the same release in the same build."""
    return bool(have) and (
        have["version"] == best.version
        or (choose.base_version(have["version"]) == choose.base_version(best.version)
            and backend_of_installed(have) == best.backend))


def _plan_head(m, mirror: dict, pip_cfg: dict, deps: list) -> dict:
    py = m.py
    return {
        "python": {k: py.get(k) for k in ("executable", "version", "bits", "platform", "machine", "in_venv", "pip")},
        "tags": py["tags"][:3], "tags_source": py.get("tags_source"), "platform_key": m.pkey,
        "platform_tag": py.get("platform_tag"),
        "nvidia": {"driver_version": m.driver,
                   "gpus": [{"name": g.get("name"), "compute_capability": g.get("compute_capability")}
                            for g in m.gpus("nvidia")]},
        "amd": {"gpus": m.gpus("amd")}, "intel": {"gpus": m.gpus("intel")},
        "mirror": {"name": mirror["name"], "pypi": mirror.get("pypi"),
                   "pytorch": (mirror.get("pytorch") or {}).get("url")},
        "dependency_index": mirrors.dependency_indexes(mirror, pip_cfg) if mirror["name"] != "pip" else None,
        "packages": deps, "torch": None, "warnings": [],
    }


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
    import hashlib
    from fomm_doctor.net.pages import PageError, read_page

    def one(c):
        try:
            page = read_page(c.file.metadata_url, session=session, max_bytes=metadata.MAX_METADATA,
                             deadline_s=pypi_index.page_deadline(timeout), timeout=timeout)
        except PageError:
            return c.filename, None
        body = page.body if page.status == 200 else None
        if not body:
            return c.filename, None
        if c.file.metadata_sha256 and hashlib.sha256(body).hexdigest() != c.file.metadata_sha256:
            return c.filename, None
        return c.filename, metadata.requires_dist(body.decode("utf-8", "replace"))
    with ThreadPoolExecutor(max_workers=max(1, min(6, len(cands)))) as pool:
        return {name: reqs for name, reqs in pool.map(one, cands) if reqs is not None}


# ---- where the wheel comes from, and which sha256 vouches for it ------------------------------------------

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


def read_official(base: str, filename: str, timeout: float, session=None) -> dict:
    """What the official index publishes for `filename`: one try, a short deadline; never raises."""
    page_url = pypi_index.project_page_url(base, "torch")
    deadline = min(OFFICIAL_DEADLINE, 2 * timeout)
    try:
        page = pypi_index.read_project(base, "torch", session=session, timeout=min(timeout, deadline), retries=1,
                                       deadline=deadline)
    except UserError as exc:
        return {"url": page_url, "sha256": None, "listed": False, "error": str(exc)}
    hit = next((f for f in page.files if f.filename == filename), None)
    return {"url": page_url, "sha256": hit.sha256 if hit else None, "listed": hit is not None, "error": None}


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
    urls: list  # where the file may be fetched: every listing that does not contradict that sha256
    check: HashCheck


def settle_hash(best, listings: list, looked: Optional[dict]) -> Settled:
    """Which sha256 the download is checked against, and what the official index said. Pure. Raises
    HashMismatch when a mirror and the official index publish different hashes for the same file name (a
    mirror serving a changed file under an official name)."""
    official_sha, official_url = _official_sha(listings, looked)
    mirrored = [x for x in listings if x.kind == "mirror"]
    if official_sha:
        _refuse_mismatch(best, mirrored, official_sha, official_url)
    sha = official_sha or _published_sha(listings)
    urls = list(dict.fromkeys(x.url for x in listings if not (sha and x.sha256 and x.sha256 != sha)))
    outcome = _hash_outcome({x.kind for x in listings}, looked, mirrored)
    said = looked or {}
    return Settled(sha, urls, HashCheck(outcome, said.get("url") or official_url, said.get("error")))


def _official_sha(listings: list, looked: Optional[dict]) -> tuple:
    """(sha256, index URL) the official index vouches with: its own listing first, else the page read."""
    official_sha = next((x.sha256 for x in listings if x.kind == "official" and x.sha256), None)
    official_url = next((x.source_url for x in listings if x.kind == "official"), None)
    if official_sha is None and looked and looked.get("sha256"):
        return looked["sha256"], looked["url"]
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


def _hash_outcome(kinds: set, looked: Optional[dict], mirrored: list) -> str:
    """HashCheck.outcome, from the kinds of listing and what the official page said (None: not asked)."""
    if "official" in kinds:
        return "official"
    if "local" in kinds:
        return "local"
    if looked is None:
        return "off"
    if looked.get("error"):
        return "not read"
    if not looked.get("listed"):
        return "not listed"
    if looked.get("sha256"):
        return "match" if any(x.sha256 for x in mirrored) else "official hash used"
    return "not listed"  # listed without a hash: nothing to compare


def verification(sha256: Optional[str], urls: list) -> str:
    """How the wheel will be checked: "sha256" (against a published hash), "local" (a file on this machine,
    the user's own: no hash to check) or "none" (from the network with no published hash)."""
    if sha256:
        return "sha256"
    return "local" if any(mirrors.is_local(u) for u in urls) else "none"


VERIFIED_WORDS = {"sha256": "sha256 verified", "local": "local file, no hash to check",
                  "none": "not verified: no sha256 was published for it"}


def plan_warnings(plan: dict) -> list:
    """One line each: a plain-http index or download, a wheel that cannot be verified, an official index that
    could not be asked. Shown by the command and kept in --json (credentials masked there)."""
    t = plan.get("torch") or {}
    out = [f"{redact(origin)} is plain http://: anyone on the way can change what it sends, the wheel "
           f"and its sha256 alike; prefer an https:// mirror." for origin in _plain_http_origins(_plan_urls(plan))]
    check = t.get("hash_check") or {}
    if check.get("outcome") == "not read":
        out.append(f"the official index could not be asked for the sha256 of {t['file']} "
                   f"({redact(check.get('error') or 'no answer')}).")
    if t.get("verified") == "none":
        out.append(f"{t['file']} comes with no published sha256, so it cannot be verified: it is refused unless "
                   f"you add --allow-unverified.")
    return out


def _plan_urls(plan: dict) -> list:
    """Every URL the install reads from: the wheel's, the indexes that list it, the dependency index."""
    t = plan.get("torch") or {}
    urls = list(t.get("urls") or []) + [x["url"] for x in t.get("sources") or [] if x.get("ok") and
                                        x.get("listed")]
    dep = plan.get("dependency_index") or {}
    return urls + ([dep["index_url"]] if dep.get("index_url") else [])


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


def _torch_entry(picked, listings: list, sources: list, errors: dict, settled: Settled) -> dict:
    best = picked.best
    urls = settled.urls
    used = {x.source_url for x in listings if x.url in urls}
    upstream = sorted({pypi_index.host_of(u) for u in urls if not mirrors.is_local(u)}
                      - {pypi_index.host_of(s.url) for s in sources})
    return {
        "version": best.version, "backend": best.backend, "backend_from": best.backend_from, "why": picked.why,
        "file": best.filename, "urls": urls,
        "sha256": settled.sha256,
        "verified": verification(settled.sha256, urls),
        "hash_check": asdict(settled.check),
        "size": next((x.size for x in listings if x.url in urls and x.size), None),
        "sources": [{"name": s.name, "url": s.url, "ok": s.url not in errors, "error": errors.get(s.url),
                     "listed": s.url in used} for s in sources],
        "links_elsewhere": upstream,  # the page's links lead to another host (a mirror that points upstream)
    }


def _req_name(req: str) -> str:
    import re
    return re.split(r"[<>=!~;\[ ]", req, 1)[0]


def _short_url(url: str) -> str:
    """host/path of a URL for a sentence; credentials masked (redact needs the scheme, so mask first)."""
    shown = redact(url)
    return shown.split("://", 1)[1] if "://" in shown else shown


