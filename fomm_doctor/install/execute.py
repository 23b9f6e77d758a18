"""Doing the plan: the verified wheel on disk, pip install, and a check in a fresh interpreter of the target.

Nothing here prints; the command layer draws the progress bar through `progress(bytes_done, total)` and
`say(text)`.
"""
import json
import os
import subprocess
import zipfile
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit
from urllib.request import url2pathname

from fomm_doctor.net import download as dl
from fomm_doctor.errors import UserError
from fomm_doctor.install import metadata
from fomm_doctor.install.choose import base_version
from fomm_doctor.install.index import host_of, plain_filename
from fomm_doctor.install.plan import VERIFIED_WORDS, InstallOptions, backend_of_installed
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


def unverified_sentence(t: dict) -> str:
    hosts = ", ".join(sorted({host_of(u) for u in t["urls"] if not _local_file(u)})) or "the index"
    return (f"{t['file']} from {hosts} comes with no published sha256, so it cannot be verified and was not "
            f"downloaded; add --allow-unverified to install it anyway.")


def fetch_torch(plan: dict, opts: InstallOptions, progress: Optional[Callable] = None) -> dict:
    """The wheel on disk -> {"path", "bytes_fetched", "resumed", "url", "attempts", "sha256", "verified"}.

    verified: "sha256" (matches the published hash), "local" (a file on this machine with no hash: the user's
    own, used as it is) or "none" (from the network with no hash; only with --allow-unverified)."""
    t = plan["torch"]
    for url in t["urls"]:  # a local find-links folder or file:// index: nothing to fetch
        local = _local_file(url)
        if local and local.is_file():
            if t["sha256"]:
                if dl.file_sha256(local) != t["sha256"]:
                    continue
                return {"path": str(local), "bytes_fetched": 0, "resumed": False, "url": url, "attempts": 0,
                        "sha256": t["sha256"], "verified": "sha256"}
            return {"path": str(local), "bytes_fetched": 0, "resumed": False, "url": url, "attempts": 0,
                    "sha256": None, "verified": "local"}
    remote = [u for u in t["urls"] if not _local_file(u)]
    if not remote:
        raise UserError(f"{t['file']} is listed locally but could not be read or did not match its sha256.")
    if not t["sha256"] and not opts.allow_unverified:
        raise UserError(unverified_sentence(t))
    cache = Path(opts.cache_dir).expanduser() if opts.cache_dir else dl.default_cache_dir()
    check_folder("--cache-dir", cache / "wheels")
    dest = inside(cache / "wheels", t["file"])
    res = dl.download(remote, dest, sha256=t["sha256"], size=t["size"],
                      retries=opts.retries, timeout=opts.timeout, connections=opts.connections,
                      cache_dir=cache, progress=progress, expect_binary=True)
    return {"path": str(res.path), "bytes_fetched": res.bytes_fetched, "resumed": res.resumed,
            "url": res.url_used, "sha256": res.sha256, "attempts": res.attempts,
            "verified": "sha256" if t["sha256"] else "none"}


def pip_args(plan: dict, opts: InstallOptions) -> list:
    """Index options for pip: the chosen mirror's index with our retries/timeout. pip's configured
    extra-index-url and find-links stay in force (we do not pass them, so pip reads them as usual)."""
    args = ["--retries", str(opts.retries), "--timeout", str(int(opts.timeout))]
    dep = plan.get("dependency_index")
    if dep:
        args += ["--index-url", dep["index_url"]]
    return args


def run_pip(python: str, args: list, say: Optional[Callable] = None, verb: str = "install") -> None:
    cmd = [python, "-m", "pip", verb, "--disable-pip-version-check", *args]
    if say:  # pip gets the real URLs; what is shown has their credentials masked
        say(redact("$ " + " ".join(cmd)))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = [l for l in (proc.stderr or proc.stdout).strip().splitlines() if l.strip()]
        last = next((l for l in reversed(tail) if l.startswith("ERROR")), tail[-1] if tail else "no output")
        what = f"install into {python}" if verb == "install" else verb
        raise UserError(redact(f"pip could not {what}: {last.removeprefix('ERROR: ')}"))


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
    problems = [f"import torch failed ({data['error']})"] if "error" in data else \
        _verify_problems(data, torch_plan, cuda)
    return dict(data, ok=not problems, problem="; ".join(problems) or None)


def _verify_problems(data: dict, torch_plan: dict, cuda: bool) -> list:
    """What the fresh interpreter reported that differs from the plan: version, build, arithmetic, CUDA."""
    problems = []
    if base_version(data["version"]) != base_version(torch_plan["version"]):
        problems.append(f"torch {data['version']} is installed, {torch_plan['version']} was planned")
    got = backend_of_installed(data)
    if got != torch_plan["backend"] and not (torch_plan["backend"] == "cuda-default" and got.startswith("cu")):
        problems.append(f"the installed build is {got}, {torch_plan['backend']} was planned")
    if not data.get("tensor_ok"):
        problems.append("a tensor operation gave a wrong result")
    if cuda and not data.get("cuda_available"):
        problems.append("torch.cuda.is_available() is False although a CUDA build was installed")
    return problems


def check_build(wheel: Path, plan: dict) -> None:
    """Before pip sees it: a wheel without a local label is what its own METADATA says, not what the table
    expected (a plain aarch64 wheel may be a CUDA build that would pull gigabytes onto a CPU machine)."""
    t = plan["torch"]
    if t.get("backend_from") == "label":
        return
    try:
        reqs = metadata.requires_dist(metadata.wheel_metadata(wheel))
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{t['file']} is not a readable wheel ({exc}); nothing was installed.") from None
    got = metadata.build_from_requires(reqs, plan["python"])
    if got != t["backend"] and not (got.startswith("cu") and t["backend"].startswith("cu")
                                    and got[:4] == t["backend"][:4]):
        raise UserError(f"{t['file']} is a {got} build by its own metadata, not the {t['backend']} build planned; "
                        f"nothing was installed (choose with --backend {got} or --backend cpu).")
    t["backend"], t["backend_from"] = got, "metadata"


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
        check_build(Path(got["path"]), plan)
        if say:
            say(f"{t['file']}: {VERIFIED_WORDS[got['verified']]}"
                + (f" (sha256 {got['sha256'][:16]}...)" if got["verified"] == "sha256" else ""))
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
            outcome["torch"]["action"] = "already installed, import checked"
    return outcome


# ---- a bundle for another machine: --download-only DIR, then --from DIR there ------------------------------

BUNDLE = "fomm-bundle.json"


def download_bundle(plan: dict, opts: InstallOptions, dest: Path, *, progress: Optional[Callable] = None,
                    say: Optional[Callable] = None) -> dict:
    """The verified torch wheel, its dependencies and the project's packages, as wheels for the planned
    machine, in `dest`, with a manifest; `install --from DEST` installs them there with no network."""
    import shutil
    import sys
    t = plan["torch"]
    check_folder("--download-only", dest)
    wheel = inside(dest, t["file"])
    got = fetch_torch(plan, opts, progress)
    check_build(Path(got["path"]), plan)
    dest.mkdir(parents=True, exist_ok=True)
    if Path(got["path"]).resolve() != wheel.resolve():
        shutil.copyfile(got["path"], wheel.with_suffix(".part"))
        os.replace(wheel.with_suffix(".part"), wheel)
    target = []
    if plan.get("platform_tag"):
        py = plan["python"]["version"].split(".")
        target = ["--only-binary=:all:", "--platform", plan["platform_tag"], "--python-version", f"{py[0]}.{py[1]}"]
    run_pip(sys.executable, ["--dest", str(dest), *target, str(wheel), *plan["packages"], *pip_args(plan, opts)],
            say, verb="download")
    manifest = {"schema": 1, "torch": {k: t[k] for k in ("version", "backend", "file")},
                "sha256": dl.file_sha256(wheel), "verified": got["verified"], "packages": plan["packages"],
                "platform_key": plan["platform_key"], "python": plan["python"]["version"]}
    tmp = dest / (BUNDLE + ".part")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, dest / BUNDLE)
    return {"folder": str(dest), "files": sorted(p.name for p in dest.glob("*.whl")), "manifest": manifest,
            "verified": got["verified"]}


def install_bundle(folder: Path, python: str, *, verify_torch: bool = True, say: Optional[Callable] = None) -> dict:
    """Install a bundle made by `--download-only` into `python`, from the folder alone (pip gets --no-index)."""
    try:
        manifest = json.loads((folder / BUNDLE).read_text(encoding="utf-8"))
        t, sha, packages = manifest["torch"], manifest["sha256"], manifest.get("packages", [])
        t["version"], t["backend"]  # noqa: B018 - the verify step needs them
        ok = isinstance(t["file"], str) and isinstance(sha, str) and isinstance(packages, list)
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise UserError(f"{folder} holds no bundle made by `fomm-doctor install --download-only` "
                        f"({BUNDLE} is missing or unreadable).")
    wheel = inside(folder, t["file"])
    for req in packages:  # handed to pip as arguments: a requirement, never an option such as --index-url
        if not _requirement(req):
            raise UserError(f"{BUNDLE} in {folder} lists {redact(str(req))!r}, which is not a requirement; make the "
                            f"bundle again.")
    if not wheel.is_file() or dl.file_sha256(wheel) != sha:
        raise UserError(f"{wheel.name} in {folder} is missing or not the file that was downloaded (sha256 differs); "
                        f"make the bundle again.")
    run_pip(python, ["--no-index", "--find-links", str(folder), str(wheel), *packages], say)
    # the bundle is the user's own folder: its manifest proves the wheel is unchanged since it was made
    outcome = {"torch": {"action": "installed from bundle", "path": str(wheel), "verified": "local",
                         "verified_when_made": manifest.get("verified")}, "verify": None}
    if verify_torch:
        outcome["verify"] = verify(python, t)
        if not outcome["verify"]["ok"]:
            raise UserError(f"torch was installed but does not work as planned: {outcome['verify']['problem']}.")
    return outcome


def _requirement(text) -> bool:
    from packaging.requirements import InvalidRequirement, Requirement
    if not isinstance(text, str) or text.startswith("-"):
        return False
    try:
        Requirement(text)
    except InvalidRequirement:
        return False
    return True
