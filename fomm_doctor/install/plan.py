"""`fomm-doctor install`, the work: facts -> plan -> verified download -> pip install -> verification.

Nothing here prints; the command layer renders the plan and the outcome, and draws the progress bar through
the `progress(bytes_done, total)` and `say(text)` callbacks.
"""
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit
from urllib.request import url2pathname

from fomm_doctor import download as dl
from fomm_doctor.install import choose as wheel_choice, index as pypi_index, sources as mirrors
from fomm_doctor.errors import UserError
from fomm_doctor.install.target import probe_interpreter
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
    connections: int = 1
    dry_run: bool = False
    cache_dir: Optional[Path] = None
    verify: bool = True
    env: dict = field(default_factory=lambda: dict(os.environ))


# ---- facts -------------------------------------------------------------------------------------------------

def probe_nvidia() -> dict:
    """GPU facts from the `check` probes (helper K's fomm_doctor.checks.gpu), or 'none found'."""
    try:
        from fomm_doctor.checks.gpu import probe_nvidia as probe
    except ImportError:
        return {"driver_version": None, "gpus": []}
    return probe()


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


def _local_file(url: str) -> Optional[Path]:
    if url.startswith("file:"):
        return Path(url2pathname(urlsplit(url).path))
    return None


# ---- the plan ----------------------------------------------------------------------------------------------

def project_deps() -> list:
    try:
        from importlib.metadata import requires
        reqs = [r for r in (requires("fomm-doctor") or []) if "extra ==" not in r]
        return reqs or FALLBACK_DEPS
    except Exception:
        return FALLBACK_DEPS


def make_plan(opts: InstallOptions, *, py: Optional[dict] = None, nv: Optional[dict] = None,
              pip_cfg: Optional[dict] = None, idx: Optional[dict] = None, read=read_sources,
              probe=None, installed=None) -> dict:
    """Everything decided, nothing changed. Raises NoFit / UserError with one sentence when nothing fits."""
    idx = idx or load_wheels_index()
    py = py or probe_interpreter(opts.python)
    nv = nv if nv is not None else probe_nvidia()
    pip_cfg = pip_cfg if pip_cfg is not None else pip_settings(py, opts.env)
    only = [pypi_index.normalize(n) for n in opts.only] if opts.only else None
    want_torch = only is None or "torch" in only
    deps = [r for r in project_deps() if only is None or pypi_index.normalize(_req_name(r)) in only]

    problem = wheel_choice.python_problem(py, idx, opts.torch) if want_torch else None
    if problem:
        raise wheel_choice.NoFit(problem[0].upper() + problem[1:] + ".")
    if want_torch and opts.backend != "auto":
        problem = wheel_choice.backend_problem(opts.backend, py, nv, idx, opts.torch)
        if problem:
            raise wheel_choice.NoFit(problem[0].upper() + problem[1:] + ".")

    mirror = mirrors.resolve_mirror(opts.mirror, idx, pip_cfg, probe=probe)
    plan = {
        "python": {k: py.get(k) for k in ("executable", "version", "bits", "platform", "machine", "in_venv", "pip")},
        "tags": py["tags"][:3], "tags_source": py.get("tags_source"),
        "nvidia": {"driver_version": nv.get("driver_version"),
                   "gpus": [{"name": n, "compute_capability": c} for n, c in wheel_choice.gpu_ccs(nv)]},
        "mirror": {"name": mirror["name"], "pypi": mirror.get("pypi"),
                   "pytorch": (mirror.get("pytorch") or {}).get("url")},
        "dependency_index": mirrors.dependency_indexes(mirror, pip_cfg) if mirror["name"] != "pip" else None,
        "packages": deps, "torch": None,
    }
    if not want_torch:
        return plan

    backend = wheel_choice.planned_backend(opts.backend, py, nv, idx, opts.torch)
    sources = mirrors.torch_sources(mirror, backend, py, pip_cfg)
    if opts.backend == "auto" and backend != "cpu":
        # auto may still end on CPU (no CUDA build in the indexes): read the CPU source too
        cpu_extra = [s for s in mirrors.torch_sources(mirror, "cpu", py, pip_cfg) if s not in sources]
        sources += cpu_extra
    found, errors = read(sources, opts.timeout, min(opts.retries, 4))
    cands, skipped = wheel_choice.classify(found, py, idx)
    best = wheel_choice.choose(cands, opts.backend, py, nv, idx, opts.torch)
    read_ok = [s.url for s, _ in found if s.url not in errors]
    if best is None:
        msg = wheel_choice.explain_no_fit(opts.backend, py, nv, idx, opts.torch, cands, skipped,
                                          [_short_url(u) for u in read_ok])
        if errors and not read_ok:
            msg = msg[:-1] + f"; no index answered ({'; '.join(errors.values())})."
        raise wheel_choice.NoFit(msg)
    same = [c for c in cands if c.filename == best.filename and
            (not (c.file.sha256 and best.file.sha256) or c.file.sha256 == best.file.sha256)]
    urls = list(dict.fromkeys(c.file.url for c in sorted(same, key=lambda c: c.source_rank)))
    sha = next((c.file.sha256 for c in same if c.file.sha256), None)
    size = next((c.file.size for c in same if c.file.size), None)
    upstream = sorted({urlsplit(u).netloc for u in urls} - {urlsplit(s.url).netloc for s in sources})
    plan["torch"] = {
        "version": best.version, "backend": best.backend,
        "why": wheel_choice.why_this_backend(opts.backend, best, py, nv, idx),
        "file": best.filename, "urls": urls, "sha256": sha, "size": size,
        "sources": [s.url for s in sources], "source_errors": errors,
        "links_elsewhere": upstream,  # the page's links lead to another host (a mirror that points upstream)
    }
    have = (installed or installed_torch)(py["executable"])
    plan["installed"] = have
    plan["torch"]["already_installed"] = bool(have) and (
        have["version"] == best.version
        or (wheel_choice.base_version(have["version"]) == wheel_choice.base_version(best.version)
            and backend_of_installed(have) == best.backend))
    return plan


def _req_name(req: str) -> str:
    import re
    return re.split(r"[<>=!~;\[ ]", req, 1)[0]


def _short_url(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc + parts.path if parts.netloc else url


# ---- doing it ----------------------------------------------------------------------------------------------

def fetch_torch(plan: dict, opts: InstallOptions, progress: Optional[Callable] = None) -> dict:
    """The verified wheel on disk -> {"path", "bytes_fetched", "resumed", "url", "attempts"}."""
    t = plan["torch"]
    for url in t["urls"]:  # a local find-links folder or file:// index: nothing to fetch
        local = _local_file(url)
        if local and local.is_file():
            if t["sha256"] and dl.file_sha256(local) != t["sha256"]:
                continue
            return {"path": str(local), "bytes_fetched": 0, "resumed": False, "url": url, "attempts": 0}
    remote = [u for u in t["urls"] if not _local_file(u)]
    if not remote:
        raise UserError(f"{t['file']} is listed locally but could not be read or did not match its sha256.")
    cache = Path(opts.cache_dir) if opts.cache_dir else dl.default_cache_dir()
    res = dl.download(remote, cache / "wheels" / t["file"], sha256=t["sha256"], size=t["size"],
                      retries=opts.retries, timeout=opts.timeout, connections=opts.connections,
                      cache_dir=cache, progress=progress, expect_binary=True)
    return {"path": str(res.path), "bytes_fetched": res.bytes_fetched, "resumed": res.resumed,
            "url": res.url_used, "sha256": res.sha256, "attempts": res.attempts}


def pip_args(plan: dict, opts: InstallOptions) -> list:
    """Index options for pip: the chosen mirror's index with our retries/timeout. pip's configured
    extra-index-url and find-links stay in force (we do not pass them, so pip reads them as usual)."""
    args = ["--retries", str(opts.retries), "--timeout", str(int(opts.timeout))]
    dep = plan.get("dependency_index")
    if dep:
        args += ["--index-url", dep["index_url"]]
    return args


def run_pip(python: str, args: list, say: Optional[Callable] = None) -> None:
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", *args]
    if say:
        say("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = [l for l in (proc.stderr or proc.stdout).strip().splitlines() if l.strip()]
        last = next((l for l in reversed(tail) if l.startswith("ERROR")), tail[-1] if tail else "no output")
        raise UserError(f"pip could not install into {python}: {last.removeprefix('ERROR: ')}")


VERIFY = r"""
import json, sys
out = {}
try:
    import torch
    out["version"] = torch.__version__
    out["cuda"] = getattr(torch.version, "cuda", None)
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    out["tensor_ok"] = float((x @ x.T).sum()) == 83.0
    if "--cuda" in sys.argv:
        out["cuda_available"] = bool(torch.cuda.is_available())
        if out["cuda_available"]:
            y = (torch.ones(4, device="cuda") * 2).sum().item()
            out["cuda_tensor_ok"] = y == 8.0
except Exception as exc:
    out["error"] = "%s: %s" % (type(exc).__name__, exc)
print("FOMM_VERIFY:" + json.dumps(out))
"""


def verify(python: str, torch_plan: dict, timeout: float = 300.0) -> dict:
    """Import torch in a fresh process of the target; check version, backend, a tensor op, CUDA when planned."""
    cuda = torch_plan["backend"].startswith("cu")
    args = [python, "-c", VERIFY] + (["--cuda"] if cuda else [])
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
    except subprocess.TimeoutExpired:
        return {"ok": False, "problem": f"importing torch took longer than {timeout:g} s"}
    data = next((json.loads(l[len("FOMM_VERIFY:"):]) for l in proc.stdout.splitlines()
                 if l.startswith("FOMM_VERIFY:")), None)
    if data is None:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return {"ok": False, "problem": f"the check process crashed ({tail[0]})"}
    problems = []
    if "error" in data:
        problems.append(f"import torch failed ({data['error']})")
    else:
        if wheel_choice.base_version(data["version"]) != wheel_choice.base_version(torch_plan["version"]):
            problems.append(f"torch {data['version']} is installed, {torch_plan['version']} was planned")
        got = backend_of_installed(data)
        if got != torch_plan["backend"] and not (torch_plan["backend"] == "cuda-default" and got.startswith("cu")):
            problems.append(f"the installed build is {got}, {torch_plan['backend']} was planned")
        if not data.get("tensor_ok"):
            problems.append("a tensor operation gave a wrong result")
        if cuda and not data.get("cuda_available"):
            problems.append("torch.cuda.is_available() is False although a CUDA build was installed")
    return dict(data, ok=not problems, problem="; ".join(problems) or None)


def execute(plan: dict, opts: InstallOptions, *, progress: Optional[Callable] = None,
            say: Optional[Callable] = None) -> dict:
    """Download, install and verify as planned -> outcome dict. Raises UserError on failure."""
    python = plan["python"]["executable"]
    if not plan["python"].get("pip"):
        raise UserError(f"The Python at {python} has no pip; run `{python} -m ensurepip --upgrade` and try again.")
    outcome = {"torch": None, "packages": None, "verify": None}
    t = plan.get("torch")
    if t and t["already_installed"]:
        outcome["torch"] = {"action": "already installed"}
    elif t:
        got = fetch_torch(plan, opts, progress)
        if say:
            say(f"verified {t['file']} (sha256 {(got.get('sha256') or t['sha256'] or 'not published')[:16]}...)")
        run_pip(python, [got["path"], *pip_args(plan, opts)], say)
        outcome["torch"] = dict(got, action="installed")
    if plan["packages"]:
        run_pip(python, [*plan["packages"], *pip_args(plan, opts)], say)
        outcome["packages"] = {"action": "installed or already satisfied", "list": plan["packages"]}
    if t and opts.verify:
        outcome["verify"] = verify(python, t)
        if not outcome["verify"]["ok"]:
            raise UserError(f"torch was installed but does not work as planned: {outcome['verify']['problem']}.")
        if t["already_installed"]:
            outcome["torch"]["action"] = "already satisfied, verified"
    return outcome
