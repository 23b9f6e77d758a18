"""Doing the plan: the verified wheel on disk, pip install, and a check in a fresh interpreter of the target.

Nothing here prints; the command layer draws the progress bar through `progress(bytes_done, total)` and
`say(text)`.
"""
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit
from urllib.request import url2pathname

from fomm_core.cache import downloads_dir
from fomm_doctor.net import digests, download as dl
from fomm_doctor.errors import UserError
from fomm_doctor.install import fetchall, metadata
from fomm_doctor.install.backend import Backend, Kind
from fomm_doctor.install.choose import base_version
from fomm_doctor.install.hashes import VERIFIED_WORDS
from fomm_doctor.install.index import host_of, plain_filename
from fomm_doctor.install.machine import InstalledTorch
from fomm_doctor.install.options import InstallOptions
from fomm_doctor.install.plan import Plan, TorchPlan, as_data, remote_requires
from fomm_doctor.net.redact import redact


def _local_file(url: str) -> Optional[Path]:
    if url.startswith("file:"):
        try:
            return Path(url2pathname(urlsplit(url).path))
        except ValueError:
            return None
    return None


def inside(folder: Path, name: str) -> Path:
    """`folder / name` for a file name that an index, a plan or a manifest gave us, after checking that it is
    a plain base name that stays inside `folder`; one sentence otherwise (nothing is written)."""
    path = Path(folder) / str(name)
    if not plain_filename(name) or path.resolve().parent != Path(folder).resolve():
        raise UserError(f"{redact(str(name))!r} is not a plain file name, so nothing was written to {folder}.")
    return path


def check_folder(option: str, folder: Path) -> None:
    """A folder we are going to write into must be one (or be creatable): a file there, or a file where one of
    its parents should be, is one sentence before any network work."""
    folder = Path(folder).expanduser()
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                where = "" if p == folder else f" ({p} is a file)"
                raise UserError(f"{option} {folder} is not a folder{where}; give a folder to keep the downloads in.")
            return


# ---- what happened -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fetched:
    """The torch wheel on disk."""
    path: str
    bytes_fetched: int
    resumed: bool
    url: str  # where it came from
    attempts: int
    sha256: Optional[str]
    verified: str  # a key of VERIFIED_WORDS


@dataclass(frozen=True)
class Verification:
    """What a fresh process of the target said after the install."""
    ok: bool
    problem: Optional[str]  # what differs from the plan, None when nothing does
    facts: dict = field(default_factory=dict)  # its own report: version, cuda, tensor_ok, cuda_available, ...

    @property
    def version(self) -> Optional[str]:
        return self.facts.get("version")

    def to_json(self) -> dict:
        return dict(self.facts, ok=self.ok, problem=self.problem)


@dataclass(frozen=True)
class TorchOutcome:
    action: str  # "installed", "already installed", "already installed, import checked"
    fetched: Optional[Fetched] = None  # None when nothing had to be fetched

    def to_json(self) -> dict:
        return dict(as_data(self.fetched) if self.fetched else {}, action=self.action)


@dataclass(frozen=True)
class Outcome:
    plan: Plan  # the plan as carried out (the torch build as the wheel's own metadata says)
    torch: Optional[TorchOutcome] = None
    packages: tuple = ()  # installed or already satisfied
    verify: Optional[Verification] = None

    def to_json(self) -> dict:
        """The outcome as `install --json` prints it (the plan is printed beside it)."""
        return {"torch": self.torch.to_json() if self.torch else None,
                "packages": {"action": "installed or already satisfied", "list": list(self.packages)}
                if self.packages else None,
                "verify": self.verify.to_json() if self.verify else None}


# ---- fetching ----------------------------------------------------------------------------------------------

def unverified_sentence(t: TorchPlan) -> str:
    hosts = ", ".join(sorted({host_of(u) for u in t.urls if not _local_file(u)})) or "the index"
    return (f"{t.file} from {hosts} comes with no published sha256, so it cannot be verified and was not "
            f"downloaded; add --allow-unverified to install it anyway.")


def _local_wheel(t: TorchPlan) -> Optional[Fetched]:
    """The wheel from a local find-links folder or file:// index, when one has it (and matches its sha256)."""
    for url in t.urls:
        local = _local_file(url)
        if local and local.is_file() and (not t.sha256 or digests.file_sha256(local) == t.sha256):
            return Fetched(str(local), 0, False, url, 0, t.sha256, "sha256" if t.sha256 else "local")
    return None


def fetch_torch(t: TorchPlan, opts: InstallOptions, progress: Optional[Callable] = None) -> Fetched:
    """The wheel on disk, verified against the plan's sha256; a local file with no hash is the user's own and
    used as it is; a network file with no hash only with --allow-unverified."""
    local = _local_wheel(t)
    if local:
        return local
    remote, dest, cache = _torch_download(t, opts)
    res = dl.download(remote, dest, sha256=t.sha256, size=t.size,
                      retries=opts.retries, timeout=opts.timeout, connections=opts.connections,
                      cache_dir=cache, progress=progress, expect_binary=True)
    return _fetched(t, res)


def _torch_download(t: TorchPlan, opts: InstallOptions) -> tuple:
    """(remote URLs, destination, cache folder) for the torch wheel, or one sentence when it must not be
    downloaded (listed only locally and unreadable, or unverifiable without --allow-unverified)."""
    remote = [u for u in t.urls if not _local_file(u)]
    if not remote:
        raise UserError(f"{t.file} is listed locally but could not be read or did not match its sha256.")
    if not t.sha256 and not opts.allow_unverified:
        raise UserError(unverified_sentence(t))
    cache = cache_folder(opts)
    return remote, inside(cache / "wheels", t.file), cache


def cache_folder(opts: InstallOptions) -> Path:
    """Where downloads are kept (--cache-dir, else the user cache), checked to be a folder we can write."""
    cache = Path(opts.cache_dir).expanduser() if opts.cache_dir else downloads_dir()
    check_folder("--cache-dir", cache / "wheels")
    return cache


def _fetched(t: TorchPlan, res) -> Fetched:
    return Fetched(str(res.path), res.bytes_fetched, res.resumed, res.url_used, res.attempts, res.sha256,
                   "sha256" if t.sha256 else "none")


# ---- pip ---------------------------------------------------------------------------------------------------

def pip_args(plan: Plan, opts: InstallOptions) -> list:
    """Index options for pip: the chosen mirror's index with our retries/timeout. pip's configured
    extra-index-url and find-links stay in force (we do not pass them, so pip reads them as usual)."""
    args = ["--retries", str(opts.retries), "--timeout", str(int(opts.timeout))]
    if plan.dependency_index:
        args += ["--index-url", plan.dependency_index.index_url]
    return args


def run_pip(python: str, args: list, say: Optional[Callable] = None, verb: str = "install",
            env: Optional[dict] = None) -> None:
    """pip `verb` ARGS in `python`, with `env` as its whole environment when given; one sentence on failure."""
    cmd = [python, "-m", "pip", verb, "--disable-pip-version-check", *args]
    if say:  # pip gets the real URLs; what is shown has their credentials masked
        say(redact("$ " + " ".join(cmd)))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = [l for l in (proc.stderr or proc.stdout).strip().splitlines() if l.strip()]
        last = next((l for l in reversed(tail) if l.startswith("ERROR")), tail[-1] if tail else "no output")
        what = f"install into {python}" if verb == "install" else verb
        raise UserError(redact(f"pip could not {what}: {last.removeprefix('ERROR: ')}"))


# ---- checking ----------------------------------------------------------------------------------------------

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


def verify(python: str, version: str, backend: Backend, timeout: float = 300.0) -> Verification:
    """Import torch in a fresh process of the target; check version, build, a tensor op, CUDA when planned."""
    cuda = backend.kind is Kind.CUDA
    args = [python, "-c", VERIFY] + (["--cuda"] if cuda else [])
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
    except subprocess.TimeoutExpired:
        return Verification(False, f"importing torch took longer than {timeout:g} s")
    data = next((json.loads(l[len("FOMM_VERIFY:"):]) for l in proc.stdout.splitlines()
                 if l.startswith("FOMM_VERIFY:")), None)
    if data is None:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return Verification(False, f"the check process crashed ({tail[0]})")
    problems = [f"import torch failed ({data['error']})"] if "error" in data else \
        _verify_problems(data, version, backend)
    return Verification(not problems, "; ".join(problems) or None, data)


def _verify_problems(data: dict, version: str, backend: Backend) -> list:
    """What the fresh interpreter reported that differs from the plan: version, build, arithmetic, CUDA."""
    problems = []
    if base_version(data["version"]) != base_version(version):
        problems.append(f"torch {data['version']} is installed, {version} was planned")
    got = InstalledTorch.from_facts(data).backend
    if got != backend:
        problems.append(f"the installed build is {got}, {backend} was planned")
    if not data.get("tensor_ok"):
        problems.append("a tensor operation gave a wrong result")
    if backend.kind is Kind.CUDA and not data.get("cuda_available"):
        problems.append("torch.cuda.is_available() is False although a CUDA build was installed")
    return problems


def verify_or_refuse(python: str, version: str, backend: Backend) -> Verification:
    """verify(), or one sentence when torch does not work as planned."""
    checked = verify(python, version, backend)
    if not checked.ok:
        raise UserError(f"torch was installed but does not work as planned: {checked.problem}.")
    return checked


def check_build(wheel: Path, plan: Plan) -> TorchPlan:
    """Before pip sees it: a wheel without a local label is what its own METADATA says, not what the table
    expected (a plain aarch64 wheel may be a CUDA build that would pull gigabytes onto a CPU machine).
    -> the torch plan with the build the wheel's metadata names."""
    t = plan.torch
    if t.backend_from == "label":
        return t
    try:
        reqs = metadata.requires_dist(metadata.wheel_metadata(wheel))
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{t.file} is not a readable wheel ({exc}); nothing was installed.") from None
    got = metadata.build_from_requires(reqs, plan.machine.py)
    if got != t.backend and not got.same_cuda_major(t.backend):
        raise UserError(f"{t.file} is a {got} build by its own metadata, not the {t.backend} build planned; "
                        f"nothing was installed (choose with --backend {got} or --backend cpu).")
    return replace(t, backend=got, backend_from="metadata")


# ---- the whole install -------------------------------------------------------------------------------------

def execute(plan: Plan, opts: InstallOptions, *, progress: Optional[Callable] = None,
            say: Optional[Callable] = None) -> Outcome:
    """Download, install and verify as planned. Raises UserError on failure."""
    python = plan.machine.py.executable
    if not plan.machine.py.pip:
        raise UserError(f"The Python at {python} has no pip; run `{python} -m ensurepip --upgrade` and try again.")
    t = plan.torch
    if prefetchable(plan):
        plan, torch = _install_prefetched(plan, opts, progress, say)
    else:
        plan, torch = _install_through_pip(plan, opts, progress, say)
    t = plan.torch
    checked = verify_or_refuse(python, t.version, t.backend) if t and opts.verify else None
    if checked and t.already_installed:
        torch = replace(torch, action="already installed, import checked")
    return Outcome(plan, torch, plan.packages, checked)


def _say_verified(say: Optional[Callable], t: TorchPlan, got: Fetched) -> None:
    if say:
        say(f"{t.file}: {VERIFIED_WORDS[got.verified]}"
            + (f" (sha256 {got.sha256[:16]}...)" if got.verified == "sha256" else ""))


def _install_through_pip(plan: Plan, opts: InstallOptions, progress, say) -> tuple:
    """The torch wheel by our downloader, everything else by pip from the index, one file after another: the
    way when the dependencies' index is pip's own configuration (extra indexes, find-links), which we do not
    read. -> (plan as carried out, TorchOutcome or None)."""
    python, t, torch = plan.machine.py.executable, plan.torch, None
    if t and t.already_installed:
        torch = TorchOutcome("already installed")
    elif t:
        got = fetch_torch(t, opts, progress)
        t = check_build(Path(got.path), plan)
        plan = replace(plan, torch=t)
        _say_verified(say, t, got)
        run_pip(python, [got.path, *pip_args(plan, opts)], say)
        torch = TorchOutcome("installed", got)
    if plan.packages:
        run_pip(python, [*plan.packages, *pip_args(plan, opts)], say)
    return plan, torch


# ---- every file at once, installed from disk -----------------------------------------------------------------

def prefetchable(plan: Plan) -> bool:
    """Every file can be fetched here when the dependencies come from one index we read ourselves; pip's extra
    indexes and remote find-links pages stay pip's (a package may be only there). Local find-links folders are
    handed to the offline pip as they are."""
    dep = plan.dependency_index
    return bool(dep and dep.index_url and not dep.extra_index_urls
                and all(_local_folder(f) for f in dep.find_links))


def _local_folder(location: str) -> Optional[Path]:
    """A find-links location that is a folder on this machine (a path or file:// URL); None otherwise."""
    loc = str(location)
    if "://" in loc and not loc.startswith("file:"):
        return None
    path = _local_file(loc) if loc.startswith("file:") else Path(loc).expanduser()
    return path if path is not None and path.is_dir() else None


def _install_prefetched(plan: Plan, opts: InstallOptions, progress, say) -> tuple:
    """torch and every dependency downloaded side by side (fetchall.Prefetch); the dependencies installed from
    the downloaded files while torch is still arriving, then torch; pip reads no index (`--no-index`). When
    the files do not make a complete set (a project without a wheel here, a choice pip's resolver refuses),
    pip installs as before, from the index. -> (plan as carried out, TorchOutcome or None)."""
    # pip's only source: this run's wheels, linked into a folder of their own (never the cache's older files)
    with tempfile.TemporaryDirectory(prefix="fomm-install-") as links:
        return _fetch_and_install(plan, opts, progress, say, cache_folder(opts), Path(links))


def _fetch_and_install(plan: Plan, opts: InstallOptions, progress, say, cache: Path, links: Path) -> tuple:
    t = plan.torch
    need_torch = bool(t and not t.already_installed)
    with fetchall.Prefetch(plan.dependency_index.index_url, plan.machine.py, cache / "wheels",
                           retries=opts.retries, timeout=opts.timeout, cache_dir=cache, progress=progress) as pre:
        pending, got = _start_torch(pre, t, opts) if need_torch else (None, None)
        early_done = _dependencies_first(plan, opts, pre, need_torch, links, say)
        got = got or (_fetched(t, pending.result()) if pending else None)
        if got:
            plan = _torch_arrived(plan, pre, got, say)
        deps = pre.wait()
        last = ([got.path] if got else []) + ([] if early_done else list(plan.packages))
        if last and not _offline(plan, deps, last, links, say):
            _from_index(plan, opts, [got.path] if got else [], deps, say)
    torch = TorchOutcome("installed", got) if got else (TorchOutcome("already installed") if t else None)
    return plan, torch


def _dependencies_first(plan: Plan, opts: InstallOptions, pre, need_torch: bool, links: Path, say) -> bool:
    """The project's packages and (from its .metadata) torch's requirements fetched and installed while torch
    is still arriving; True when they went in."""
    pre.add(plan.packages)
    early = _torch_requires_early(plan, opts) if need_torch else []
    if early is None:  # torch's needs are known once its wheel is here
        return False
    roots = [*plan.packages, *(str(r) for r in early)]
    pre.add(roots)
    return bool(roots) and _offline(plan, deps=pre.wait(), what=roots, links=links, say=say)


def _torch_arrived(plan: Plan, pre, got: Fetched, say) -> Plan:
    """The plan with the build the wheel's metadata names; what its METADATA requires joins the fetching."""
    t = check_build(Path(got.path), plan)
    _say_verified(say, t, got)
    # the wheel's own METADATA (all there is without a .metadata file) names what torch needs
    pre.add(fetchall.applicable(metadata.requires_dist(metadata.wheel_metadata(Path(got.path))), pre.env))
    return replace(plan, torch=t)


def _start_torch(pre, t: TorchPlan, opts: InstallOptions) -> tuple:
    """(future of the download, None) or (None, Fetched) for a wheel already in a local folder."""
    local = _local_wheel(t)
    if local:
        return None, local
    remote, dest, _cache = _torch_download(t, opts)
    return pre.submit_file(remote, dest, t.sha256, t.size, opts.connections), None


def _torch_requires_early(plan: Plan, opts: InstallOptions) -> Optional[list]:
    """torch's requirements on the target before its wheel arrives, from the `.metadata` file beside it
    (PEP 658; PyPI and the PyTorch index serve one); None when no source has one (then the wheel's own
    METADATA, once it is here). Only what to fetch early is chosen from it: pip checks the wheel's own."""
    for url in plan.torch.urls:
        if _local_file(url):
            continue
        requires = remote_requires(url + ".metadata", None, opts.timeout)
        if requires is not None:
            return fetchall.applicable(requires, metadata.marker_env(plan.machine.py))
    return None


def _offline(plan: Plan, deps: "fetchall.Prefetched", what: list, links: Path, say) -> bool:
    """pip install `what` (requirements or wheel paths) with the downloaded wheels (and the user's own local
    find-links folders) as its only source; False (nothing said but one line) when the set is incomplete or
    pip's resolver refuses it."""
    if not deps.complete:
        return False
    python = plan.machine.py.executable
    own_links = [a for f in plan.dependency_index.find_links for a in ("--find-links", str(_local_folder(f)))]
    for w in deps.wheels.values():
        _link_into(links, Path(w.path))
    try:
        run_pip(python, [*what, "--no-index", "--find-links", str(links), *own_links], say)
    except UserError as exc:
        if say:
            say(f"the downloaded files alone were not enough ({exc}); pip fetches the rest from the index")
        return False
    return True


def _link_into(folder: Path, wheel: Path) -> None:
    """`wheel` visible in `folder` (a hard link, a copy across filesystems): pip's find-links folder holds this
    install's files only, never older cached versions."""
    dest = folder / wheel.name
    if dest.exists():
        return
    try:
        os.link(wheel, dest)
    except OSError:
        shutil.copyfile(wheel, dest)


def _from_index(plan: Plan, opts: InstallOptions, torch_file: list, deps: "fetchall.Prefetched", say) -> None:
    """pip as before: the torch wheel from disk, the rest from the index, the reason said first."""
    if say and deps.missing:
        name, why = next(iter(deps.missing.items()))
        more = f" and {len(deps.missing) - 1} more" if len(deps.missing) > 1 else ""
        say(f"{name}{more} could not be fetched here ({why}); pip fetches the rest from the index")
    run_pip(plan.machine.py.executable, [*torch_file, *plan.packages, *pip_args(plan, opts)], say)
