"""Which torch wheel fits this machine: pure functions over facts (interpreter, NVIDIA driver and GPUs,
`wheels_index.json`, and the files the indexes offer). No network, no terminal.

Facts used:
  py  = interpreter facts (fomm_doctor.install.target): version, bits, platform, machine, tags
  nv  = {"driver_version": "535.104.05" | None, "gpus": [{"name", "compute_capability": "8.6"}], "wsl": bool}
  idx = the parsed wheels_index.json
When nothing fits, `NoFit` carries one sentence a newcomer can act on.
"""
import re
from dataclasses import dataclass, field
from typing import Optional

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from fomm_doctor.errors import UserError


class NoFit(UserError):
    """No torch wheel fits; the message says why and what to do."""


def vtuple(text) -> tuple:
    return tuple(int(p) for p in re.findall(r"\d+", str(text or ""))[:4])


def os_name(platform: str) -> str:
    return "windows" if platform.startswith("win") else "macos" if platform == "darwin" else "linux"


def py_minor(py: dict) -> str:
    return ".".join(py["version"].split(".")[:2])


def cuda_words(tag: str) -> str:
    """'cu128' -> 'CUDA 12.8'."""
    digits = tag[2:]
    return f"CUDA {digits[:-1]}.{digits[-1]}" if tag.startswith("cu") and len(digits) >= 2 else tag


def driver_major(driver: str) -> str:
    return str(driver).split(".")[0]


# ---- tables ----------------------------------------------------------------------------------------------

def release(idx: dict, version: str) -> Optional[dict]:
    base = base_version(version)
    for rel in idx["torch_releases"]:
        if rel["version"] == base or rel["version"].rsplit(".", 1)[0] == base:
            return rel
    return None


def base_version(version: str) -> str:
    return str(version).split("+", 1)[0]


def driver_os(py: dict, nv: dict) -> str:
    """Whose driver table applies: under WSL the GPU driver is the Windows one."""
    return "windows" if nv.get("wsl") or os_name(py["platform"]) == "windows" else "linux"


def driver_runs(tag: str, nv: dict, py: dict, idx: dict) -> bool:
    need = idx["cuda_min_driver"].get(tag, {}).get(driver_os(py, nv))
    return bool(need and nv.get("driver_version")) and vtuple(nv["driver_version"]) >= vtuple(need)


def arch_covered(tag: str, cc: Optional[str], idx: dict) -> bool:
    """Does the `tag` build carry kernels for compute capability `cc`? Unknown cc: assume yes."""
    have = vtuple(cc)[:2]
    if len(have) < 2 or tag not in idx["cuda_arch_range"]:
        return True
    low, high = (vtuple(v) for v in idx["cuda_arch_range"][tag])
    return low <= have <= high


def gpu_ccs(nv: dict) -> list:
    return [(g.get("name") or "GPU", g.get("compute_capability")) for g in nv.get("gpus") or []]


def cuda_usable(tag: str, nv: dict, py: dict, idx: dict) -> bool:
    return driver_runs(tag, nv, py, idx) and all(arch_covered(tag, cc, idx) for _, cc in gpu_ccs(nv))


def by_cuda(tags) -> list:
    """cu tags newest first."""
    return sorted(tags, key=lambda t: int(t[2:]) if t[2:].isdigit() else 0, reverse=True)


def all_cuda_tags(idx: dict) -> list:
    return by_cuda(idx["cuda_min_driver"])


# ---- newcomer-worded checks that need no index ------------------------------------------------------------

def python_problem(py: dict, idx: dict, torch: Optional[str] = None) -> Optional[str]:
    """Why no torch can exist for this interpreter (32-bit, too old, too new, Intel Mac), or None."""
    rec = idx.get("recommended_python", "3.11")
    if py.get("bits", 64) != 64:
        return f"torch has no wheels for 32-bit Python; install 64-bit Python {rec}"
    if py.get("implementation", "cpython") != "cpython":
        return f"torch publishes wheels for CPython only, not {py['implementation']}; install Python {rec} from python.org"
    minor = py_minor(py)
    osn = os_name(py["platform"])
    rels = idx["torch_releases"]
    if osn == "macos" and py.get("machine", "").lower() in ("x86_64", "amd64", "i386"):
        rels = [r for r in rels if r.get("macos_x86_64")]
        if not rels:
            return "torch no longer publishes wheels for Intel Macs; use an Apple-silicon Mac, Linux or Windows"
    if torch:
        rel = release(idx, torch)
        if rel is None:
            return None  # not in our table: the live index decides
        if minor not in rel["python"]:
            ok = [r for r in rels if minor in r["python"]]
            newest = ok[0]["version"] if ok else None
            older = vtuple(minor) < min(vtuple(p) for p in rel["python"])
            if older:
                floor = _first_release_without(idx, minor, rel)
                tail = f"the newest you can have is {newest} (`--torch {newest}`), or install Python {rec}" \
                    if newest else f"install Python {rec}"
                return f"Python {minor} is older than any torch >= {floor} supports: {tail}"
            return (f"torch {rel['version']} came out before Python {minor} and has no wheels for it: use "
                    f"{'`--torch ' + newest + '`' if newest else 'a newer torch'}, or install Python {rec}")
        if osn == "macos" and rel not in rels:
            return (f"torch {rel['version']} has no wheels for Intel Macs; the last one is {rels[0]['version']} "
                    f"(`--torch {rels[0]['version']}`)")
        return None
    ok = [r for r in rels if minor in r["python"]]
    if ok:
        return None
    all_py = sorted({p for r in rels for p in r["python"]}, key=vtuple)
    if vtuple(minor) < vtuple(all_py[0]) or (osn == "macos" and vtuple(minor) < vtuple(all_py[-1])):
        return f"Python {minor} is older than any torch we know supports; install Python {rec}"
    last = rels[0]["version"]
    if osn == "macos" and rels is not idx["torch_releases"]:
        return (f"the last torch for Intel Macs ({last}) supports Python up to {rels[0]['python'][-1]}, not "
                f"{minor}; install Python {rels[0]['python'][-1]}")
    return f"Python {minor} is newer than any torch release supports yet (newest {last}); install Python {rec}"


def _first_release_without(idx: dict, minor: str, rel: dict) -> str:
    """The oldest release (as 'X.Y') at or before `rel` that no longer supports `minor`."""
    floor = rel["version"]
    for r in idx["torch_releases"]:  # newest first
        if vtuple(r["version"]) <= vtuple(rel["version"]) and minor not in r["python"]:
            floor = r["version"]
        elif vtuple(r["version"]) < vtuple(rel["version"]):
            break
    return ".".join(floor.split(".")[:2])


def backend_problem(backend: str, py: dict, nv: dict, idx: dict, torch: Optional[str] = None) -> Optional[str]:
    """Why an explicit cuNNN cannot work here (no driver, driver too old, GPU not covered), or None."""
    if not backend.startswith("cu"):
        return None
    osn = os_name(py["platform"])
    if osn == "macos":
        return "Macs have no NVIDIA CUDA builds of torch; use --backend cpu (Apple GPUs are used through MPS)"
    if backend not in idx["cuda_min_driver"]:
        known = ", ".join(reversed(all_cuda_tags(idx)))
        return f"{backend} is not a CUDA backend we know; choose one of {known} or cpu"
    driver = nv.get("driver_version")
    usable = [t for t in all_cuda_tags(idx) if cuda_usable(t, nv, py, idx)]
    if torch and release(idx, torch):
        usable = [t for t in usable if t in release(idx, torch)["cuda"]]
    hint = f"newest usable is {usable[0]}" if usable else "use --backend cpu"
    if not driver:
        return f"{backend} needs an NVIDIA driver and none was found; install the driver or use --backend cpu"
    if not driver_runs(backend, nv, py, idx):
        need = idx["cuda_min_driver"][backend][driver_os(py, nv)]
        return (f"no {cuda_words(backend)} build for your driver {driver_major(driver)} (it needs {need} or "
                f"newer); {hint}")
    for name, cc in gpu_ccs(nv):
        if not arch_covered(backend, cc, idx):
            low, high = idx["cuda_arch_range"][backend]
            return (f"the {backend} build has no kernels for your {name} (compute capability {cc}; {backend} "
                    f"covers {low} to {high}), it would fail with 'no kernel image is available'; {hint}")
    if torch and release(idx, torch) and backend not in release(idx, torch)["cuda"]:
        rel = release(idx, torch)
        return f"torch {rel['version']} has no {backend} build (it has {', '.join(rel['cuda'])}); {hint}"
    return None


# ---- classifying index files ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    filename: str
    version: str  # full, with local label: "2.13.0+cpu"
    backend: str  # "cpu", "cu128", "rocm6.2", ...
    tag_rank: int  # position of the best matching tag in the interpreter's list (lower = preferred)
    source_rank: int
    file: object = field(compare=False, hash=False, default=None)  # the IndexFile
    source: object = field(compare=False, hash=False, default=None)


def file_backend(version: str, py: dict, idx: dict) -> str:
    """The build a torch file name means. A local label says it ('+cpu', '+cu126'); a plain version is what
    PyPI ships: CPU on Windows, macOS and ARM Linux, the release's default CUDA on x86-64 Linux."""
    if "+" in version:
        return version.split("+", 1)[1]
    osn = os_name(py["platform"])
    machine = (py.get("machine") or "").lower()
    if osn != "linux" or machine in ("aarch64", "arm64"):
        return "cpu"
    rel = release(idx, version)
    return (rel or {}).get("pypi_linux_cuda") or "cuda-default"


def requires_python_ok(spec: Optional[str], py_version: str) -> bool:
    if not spec:
        return True
    try:
        return Version(py_version) in SpecifierSet(spec)
    except (InvalidSpecifier, InvalidVersion):
        return True  # pip ignores what it cannot parse too


def classify(files_by_source: list, py: dict, idx: dict, project: str = "torch") -> tuple:
    """Installable wheels for this interpreter -> (candidates, skipped reasons).

    files_by_source: [(source, [IndexFile, ...]), ...] in preference order.
    """
    rank = {t: i for i, t in enumerate(py["tags"])}
    out, skipped = [], {}
    for s_rank, (source, files) in enumerate(files_by_source):
        for f in files:
            if not f.filename.endswith(".whl"):
                continue
            try:
                name, version, _build, tags = parse_wheel_filename(f.filename)
            except (InvalidWheelFilename, InvalidVersion):
                continue
            if name != project:
                continue
            if f.yanked:
                skipped["yanked"] = skipped.get("yanked", 0) + 1
                continue
            if not requires_python_ok(f.requires_python, py["version"]):
                skipped["requires-python"] = skipped.get("requires-python", 0) + 1
                continue
            ranks = [rank[str(t)] for t in tags if str(t) in rank]
            if not ranks:
                skipped["other platform or Python"] = skipped.get("other platform or Python", 0) + 1
                continue
            v = str(version)
            out.append(Candidate(f.filename, v, file_backend(v, py, idx), min(ranks), s_rank, f, source))
    return out, skipped


def acceptable_backends(option: str, py: dict, nv: dict, idx: dict) -> Optional[list]:
    """Backends the option allows, best first; None = any usable CUDA build, else CPU (auto with a driver)."""
    if option == "cpu":
        return ["cpu"]
    if option.startswith("cu"):
        return [option]
    if os_name(py["platform"]) == "macos" or not nv.get("driver_version"):
        return ["cpu"]
    return None


def choose(cands: list, option: str, py: dict, nv: dict, idx: dict, torch: Optional[str] = None):
    """Best candidate for backend `option` ('auto'|'cpu'|'cuNNN') and optional `torch` version, or None.

    auto with an NVIDIA driver: the newest torch that has a CUDA build this driver runs and that has kernels
    for every GPU, with the newest such CUDA; CPU only when no CUDA build fits at all.
    """
    want = acceptable_backends(option, py, nv, idx)
    pool = []
    for c in cands:
        if torch and base_version(c.version) != base_version(torch) and not base_version(c.version).startswith(
                base_version(torch) + "."):
            continue
        if want is None:
            if c.backend.startswith("cu") and cuda_usable(c.backend, nv, py, idx):
                pool.append(c)
        elif c.backend in want:
            pool.append(c)
    if want is None and not pool:  # auto, but no CUDA build fits: CPU
        return choose(cands, "cpu", py, nv, idx, torch)
    if not pool:
        return None
    return max(pool, key=lambda c: (Version(base_version(c.version)), int(c.backend[2:]) if c.backend[2:].isdigit()
                                    else 0, -c.source_rank, -c.tag_rank))


def planned_backend(option: str, py: dict, nv: dict, idx: dict, torch_version: Optional[str] = None) -> str:
    """The backend the tables predict (before any index is read): used to pick which indexes to ask."""
    want = acceptable_backends(option, py, nv, idx)
    if want is not None:
        return want[0]
    rels = [release(idx, torch_version)] if torch_version and release(idx, torch_version) else idx["torch_releases"]
    minor = py_minor(py)
    for rel in rels:
        if minor not in rel["python"] and not torch_version:
            continue
        fitting = by_cuda(t for t in rel["cuda"] if cuda_usable(t, nv, py, idx))
        if fitting:
            return fitting[0]
    return "cpu"


def explain_no_fit(option: str, py: dict, nv: dict, idx: dict, torch: Optional[str], cands: list,
                   skipped: dict, sources_read: list) -> str:
    """One sentence for 'nothing fits', most specific reason first."""
    reason = python_problem(py, idx, torch) or backend_problem(option, py, nv, idx, torch)
    if reason:
        return reason[0].upper() + reason[1:] + "."
    where = ", ".join(sources_read) or "no index could be read"
    osn = os_name(py["platform"])
    label = option if option != "auto" else planned_backend(option, py, nv, idx, torch)
    have = sorted({c.version for c in cands}, key=lambda v: Version(base_version(v)), reverse=True)[:4]
    seen = f" (for this Python they offer {', '.join(have)})" if have else ""
    if label == "cpu" and osn == "linux" and not have:
        seen = " (the CPU build for Linux comes from the PyTorch index or a mirror of it, e.g. --mirror official)"
    minor = py_minor(py)
    for_py = [r["version"] for r in idx["torch_releases"] if minor in r["python"]]
    newest_all = idx["torch_releases"][0]["version"]
    if not torch and for_py and for_py[0] != newest_all:
        seen = (f"; the last torch for Python {minor} is {for_py[0]}, which these indexes do not offer for this "
                f"platform: install Python {idx.get('recommended_python', '3.11')} for current torch")
    want = f"torch {torch}" if torch else "torch"
    return (f"No {want} wheel for Python {minor} on {osn} {py.get('machine', '')} with backend {label} "
            f"was found on {where}{seen}.")


def why_this_backend(option: str, chosen: Candidate, py: dict, nv: dict, idx: dict) -> str:
    """A short note: why CPU or this CUDA build."""
    if option != "auto":
        return f"--backend {option}"
    if os_name(py["platform"]) == "macos":
        return "macOS: CPU build (Apple GPUs are used through MPS)"
    if not nv.get("driver_version"):
        return "no NVIDIA driver found: CPU build"
    gpus = ", ".join(f"{n} (compute {cc})" for n, cc in gpu_ccs(nv)) or "GPU"
    if chosen.backend == "cpu":
        return f"no CUDA build runs on driver {nv['driver_version']} with {gpus}: CPU build"
    return f"newest CUDA build driver {nv['driver_version']} runs with kernels for {gpus}"
