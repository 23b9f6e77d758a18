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

from fomm_doctor import download as dl
from fomm_doctor.errors import UserError
from fomm_doctor.install import metadata
from fomm_doctor.install.choose import base_version
from fomm_doctor.install.plan import InstallOptions, backend_of_installed


def _local_file(url: str) -> Optional[Path]:
    if url.startswith("file:"):
        return Path(url2pathname(urlsplit(url).path))
    return None



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


def run_pip(python: str, args: list, say: Optional[Callable] = None, verb: str = "install") -> None:
    cmd = [python, "-m", "pip", verb, "--disable-pip-version-check", *args]
    if say:
        say("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = [l for l in (proc.stderr or proc.stdout).strip().splitlines() if l.strip()]
        last = next((l for l in reversed(tail) if l.startswith("ERROR")), tail[-1] if tail else "no output")
        what = f"install into {python}" if verb == "install" else verb
        raise UserError(f"pip could not {what}: {last.removeprefix('ERROR: ')}")


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
        if base_version(data["version"]) != base_version(torch_plan["version"]):
            problems.append(f"torch {data['version']} is installed, {torch_plan['version']} was planned")
        got = backend_of_installed(data)
        if got != torch_plan["backend"] and not (torch_plan["backend"] == "cuda-default" and got.startswith("cu")):
            problems.append(f"the installed build is {got}, {torch_plan['backend']} was planned")
        if not data.get("tensor_ok"):
            problems.append("a tensor operation gave a wrong result")
        if cuda and not data.get("cuda_available"):
            problems.append("torch.cuda.is_available() is False although a CUDA build was installed")
    return dict(data, ok=not problems, problem="; ".join(problems) or None)


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


# ---- a bundle for another machine: --download-only DIR, then --from DIR there ------------------------------

BUNDLE = "fomm-bundle.json"


def download_bundle(plan: dict, opts: InstallOptions, dest: Path, *, progress: Optional[Callable] = None,
                    say: Optional[Callable] = None) -> dict:
    """The verified torch wheel, its dependencies and the project's packages, as wheels for the planned
    machine, in `dest`, with a manifest; `install --from DEST` installs them there with no network."""
    import shutil
    import sys
    t = plan["torch"]
    dest.mkdir(parents=True, exist_ok=True)
    got = fetch_torch(plan, opts, progress)
    check_build(Path(got["path"]), plan)
    wheel = dest / t["file"]
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
                "sha256": dl.file_sha256(wheel), "packages": plan["packages"], "platform_key": plan["platform_key"],
                "python": plan["python"]["version"]}
    tmp = dest / (BUNDLE + ".part")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, dest / BUNDLE)
    return {"folder": str(dest), "files": sorted(p.name for p in dest.glob("*.whl")), "manifest": manifest}


def install_bundle(folder: Path, python: str, *, verify_torch: bool = True, say: Optional[Callable] = None) -> dict:
    """Install a bundle made by `--download-only` into `python`, from the folder alone (pip gets --no-index)."""
    try:
        manifest = json.loads((folder / BUNDLE).read_text(encoding="utf-8"))
        t, sha = manifest["torch"], manifest["sha256"]
        wheel = folder / Path(t["file"]).name
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{folder} holds no bundle made by `fomm-doctor install --download-only` "
                        f"({BUNDLE} is missing or unreadable).") from None
    if not wheel.is_file() or dl.file_sha256(wheel) != sha:
        raise UserError(f"{wheel.name} in {folder} is missing or not the file that was downloaded (sha256 differs); "
                        f"make the bundle again.")
    run_pip(python, ["--no-index", "--find-links", str(folder), str(wheel), *manifest.get("packages", [])], say)
    outcome = {"torch": {"action": "installed from bundle", "path": str(wheel)}, "verify": None}
    if verify_torch:
        outcome["verify"] = verify(python, t)
        if not outcome["verify"]["ok"]:
            raise UserError(f"torch was installed but does not work as planned: {outcome['verify']['problem']}.")
    return outcome
