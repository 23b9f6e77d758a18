"""The install plan: gather the facts (target, GPUs, pip's config), read every page worth reading at once,
let `choose` pick among the files that exist, and assemble what will be fetched from where, and why.

Everything decided, nothing changed; the command layer renders the plan, `execute` carries it out.
"""
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from fomm_doctor.errors import UserError
from fomm_doctor.install import choose, metadata, target
from fomm_doctor.install import index as pypi_index
from fomm_doctor.install import sources as mirrors
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
    env: dict = field(default_factory=lambda: dict(os.environ))


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
            return src, [], f"{type(exc).__name__}: {exc}"

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
              probe=None, installed=None, session=None) -> dict:
    """Everything decided, nothing changed. Raises NoFit / UserError with one sentence when nothing fits."""
    idx = idx or load_wheels_index()
    m = target.machine(opts, py=py, gpus=gpus, probe_gpus=probe_gpus)
    pip_cfg = pip_cfg if pip_cfg is not None else pip_settings(m.py, opts.env)
    only = [pypi_index.normalize(n) for n in opts.only] if opts.only else None
    deps = [r for r in project_deps() if only is None or pypi_index.normalize(_req_name(r)) in only]
    mirror = mirrors.with_pytorch_index(mirrors.resolve_mirror(opts.mirror, idx, pip_cfg, probe=probe),
                                        opts.pytorch_index)
    plan = _plan_head(m, mirror, pip_cfg, deps)
    if only is not None and "torch" not in only:
        return plan
    for problem in (choose.python_problem(m.py, opts.torch),
                    choose.backend_problem(opts.backend, m) if opts.backend != "auto" else None):
        if problem:
            raise choose.NoFit(problem[0].upper() + problem[1:] + ".")
    sources = mirrors.torch_sources(mirror, choose.builds_to_read(opts.backend, m), m.py, pip_cfg)
    found, errors = read(sources, opts.timeout, min(opts.retries, 4))
    cands, picked = _choose(found, m, opts, session)
    read_ok = [s.url for s, _ in found if s.url not in errors]
    if picked is None:
        msg = choose.explain_no_fit(opts.backend, m, opts.torch, cands, [_short_url(u) for u in read_ok])
        if errors and not read_ok:
            msg = msg[:-1] + f"; no index answered ({'; '.join(errors.values())})."
        raise choose.NoFit(msg)
    plan["torch"] = _torch_entry(picked, cands, sources, errors)
    if opts.platform or opts.python_version:
        plan["installed"] = None  # planned for another machine: what this one has does not matter
        plan["torch"]["already_installed"] = False
        return plan
    have = (installed or installed_torch)(m.py["executable"])
    plan["installed"] = have
    plan["torch"]["already_installed"] = bool(have) and (
        have["version"] == picked.best.version
        or (choose.base_version(have["version"]) == choose.base_version(picked.best.version)
            and backend_of_installed(have) == picked.best.backend))
    return plan


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
        "packages": deps, "torch": None,
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
    """{filename: Requires-Dist} from the index's `.metadata` files, read concurrently; a file that cannot be
    read or fails its published sha256 is left out (the wheel's own METADATA is checked after download)."""
    import hashlib
    import requests
    session = session or requests.Session()

    def one(c):
        try:
            with session.get(c.file.metadata_url, timeout=timeout, stream=True) as resp:
                ok = resp.status_code == 200
                body = resp.raw.read(metadata.MAX_METADATA + 1, decode_content=True) if ok else None
        except (requests.RequestException, OSError):
            return c.filename, None
        if not body or len(body) > metadata.MAX_METADATA:
            return c.filename, None
        if c.file.metadata_sha256 and hashlib.sha256(body).hexdigest() != c.file.metadata_sha256:
            return c.filename, None
        return c.filename, metadata.requires_dist(body.decode("utf-8", "replace"))
    with ThreadPoolExecutor(max_workers=max(1, min(6, len(cands)))) as pool:
        return {name: reqs for name, reqs in pool.map(one, cands) if reqs is not None}


def _torch_entry(picked, cands: list, sources: list, errors: dict) -> dict:
    best = picked.best
    same = [c for c in cands if c.filename == best.filename and
            (not (c.file.sha256 and best.file.sha256) or c.file.sha256 == best.file.sha256)]
    urls = list(dict.fromkeys(c.file.url for c in sorted(same, key=lambda c: c.source_rank)))
    upstream = sorted({urlsplit(u).netloc for u in urls} - {urlsplit(s.url).netloc for s in sources})
    return {
        "version": best.version, "backend": best.backend, "backend_from": best.backend_from, "why": picked.why,
        "file": best.filename, "urls": urls,
        "sha256": next((c.file.sha256 for c in same if c.file.sha256), None),
        "size": next((c.file.size for c in same if c.file.size), None),
        "sources": [{"name": s.name, "url": s.url, "ok": s.url not in errors, "error": errors.get(s.url)}
                    for s in sources],
        "links_elsewhere": upstream,  # the page's links lead to another host (a mirror that points upstream)
    }


def _req_name(req: str) -> str:
    import re
    return re.split(r"[<>=!~;\[ ]", req, 1)[0]


def _short_url(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc + parts.path if parts.netloc else url


