"""Which torch wheel fits a machine: pure functions over facts and the files the indexes really hold.

    cands, skipped = classify(files_by_source, machine, requires)   # installable files, each with its build
    choice = choose(cands, "auto", machine)                          # newest torch that runs here, then newest build

A GPU build must run on the machine's driver and carry kernels for every GPU in it (not only the driver:
a GTX 1060 on a new driver gets no kernels from cu128+). CPU only when no GPU build fits. `NoFit` carries
one sentence a newcomer can act on.
"""
from dataclasses import dataclass, field
from typing import Optional

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from fomm_doctor.errors import UserError
from fomm_doctor.install import builds
from fomm_doctor.install.metadata import build_from_requires


class NoFit(UserError):
    """No torch wheel fits; the message says why and what to do."""


@dataclass(frozen=True)
class Machine:
    """The facts a choice depends on (this machine's, or another's given on the command line)."""
    py: dict  # interpreter: version, platform, machine, bits, implementation, tags
    nvidia: dict = field(default_factory=dict)  # driver_version, gpus [{name, compute_capability}], wsl
    amd: dict = field(default_factory=dict)  # gpus [{name, gfx}]
    intel: dict = field(default_factory=dict)  # gpus [{name, device_id, discrete}]

    @property
    def os(self) -> str:
        return builds.os_name(self.py["platform"])

    @property
    def pkey(self) -> str:
        return builds.platform_key(self.py["platform"], self.py.get("machine", ""))

    @property
    def py_minor(self) -> str:
        return ".".join(self.py["version"].split(".")[:2])

    @property
    def driver(self) -> Optional[str]:
        return self.nvidia.get("driver_version")

    @property
    def driver_os(self) -> str:
        """Whose driver table applies: under WSL the GPU driver is the Windows one."""
        return "windows" if self.nvidia.get("wsl") or self.os == "windows" else "linux"

    def gpus(self, vendor: str) -> list:
        return list((getattr(self, vendor) or {}).get("gpus") or [])

    @property
    def has_gpu(self) -> bool:
        return bool(self.driver or self.gpus("nvidia") or self.gpus("amd") or self.xpu_gpus)

    @property
    def xpu_gpus(self) -> list:
        return [g for g in self.gpus("intel") if g.get("discrete")]


@dataclass(frozen=True)
class Candidate:
    filename: str
    version: str  # with local label: "2.14.1+cu126"
    backend: str  # "cpu", "cu126", "rocm6.4", "xpu"
    backend_from: str  # "label" (the file name says it), "metadata" (Requires-Dist), "table" (torch_builds.json)
    build_tag: tuple  # wheel build tag: a re-upload "-2-" beats the first upload
    tag_rank: int  # position of the best matching tag in the interpreter's list (lower = preferred)
    source_rank: int
    file: object = field(compare=False, hash=False, default=None)  # the IndexFile
    source: object = field(compare=False, hash=False, default=None)

    @property
    def release(self) -> Version:
        return Version(base_version(self.version))


@dataclass(frozen=True)
class Choice:
    best: Candidate
    why: str


def base_version(version: str) -> str:
    return str(version).split("+", 1)[0]


def requires_python_ok(spec: Optional[str], py_version: str) -> bool:
    if not spec:
        return True
    try:
        return Version(py_version) in SpecifierSet(spec)
    except (InvalidSpecifier, InvalidVersion):
        return True  # pip ignores what it cannot parse too


def cuda_words(build: str) -> str:
    """'cu128' -> 'CUDA 12.8'."""
    return f"CUDA {builds.cuda_version(build)}" if builds.cuda_version(build) else build


# ---- classifying index files ------------------------------------------------------------------------------

def plain_build(version: str, m: Machine, requires: Optional[list]) -> tuple:
    """(build, how we know) of a wheel without a local label: its Requires-Dist when we have it, else the
    table's record of what PyPI ships for this platform."""
    if requires is not None:
        return build_from_requires(requires, m.py), "metadata"
    row = builds.release(version).row or {}
    return (row.get("pypi") or {}).get(m.pkey, "cpu"), "table"


def classify(files_by_source: list, m: Machine, requires: Optional[dict] = None, project: str = "torch") -> tuple:
    """Installable wheels for this interpreter -> (candidates, {reason: count} of files skipped).

    files_by_source: [(source, [IndexFile, ...]), ...] in preference order; requires: {filename: [Requires-Dist]}.
    """
    rank = {t: i for i, t in enumerate(m.py["tags"])}
    requires = requires or {}
    out, skipped = [], {}

    def skip(why):
        skipped[why] = skipped.get(why, 0) + 1
    for s_rank, (source, files) in enumerate(files_by_source):
        for f in files:
            try:
                name, version, build_tag, tags = parse_wheel_filename(f.filename)
            except (InvalidWheelFilename, InvalidVersion):
                continue  # sdists and junk
            if name != project:
                continue
            if f.yanked:
                skip("yanked")
            elif not requires_python_ok(f.requires_python, m.py["version"]):
                skip("requires-python")
            elif not any(str(t) in rank for t in tags):
                skip("other platform or Python")
            else:
                v = str(version)
                backend, how = (v.split("+", 1)[1], "label") if "+" in v else \
                    plain_build(v, m, requires.get(f.filename))
                out.append(Candidate(f.filename, v, backend, how, tuple(build_tag or ()),
                                     min(rank[str(t)] for t in tags if str(t) in rank), s_rank, f, source))
    return out, skipped


# ---- does a build run here ---------------------------------------------------------------------------------

def unfit(c: Candidate, m: Machine) -> Optional[str]:
    """None when this build runs on the machine with kernels for its GPUs; else the fact that rules it out."""
    b = c.backend
    if b == "cpu":
        return None
    if b.startswith("cu"):
        return _cuda_unfit(c, m)
    if b.startswith("rocm"):
        return _rocm_unfit(c, m)
    if b == "xpu":
        return None if m.xpu_gpus else "it needs an Intel Arc or Data Center GPU and none was found"
    return f"{b} is a build we do not know"


def _cuda_unfit(c: Candidate, m: Machine) -> Optional[str]:
    if m.os == "macos":
        return "Macs have no NVIDIA CUDA"
    if not m.driver:
        return "it needs an NVIDIA driver and none was found"
    need = builds.driver_minimum(c.backend, m.driver_os)
    if not need:
        return f"{c.backend} is a CUDA version we have no driver table for"
    if not builds.driver_runs(c.backend, m.driver, m.driver_os):
        return f"its {cuda_words(c.backend)} needs NVIDIA driver {need} or newer, this one is {m.driver}"
    for g in m.gpus("nvidia"):
        cc = g.get("compute_capability")
        if builds.cuda_covers(c.version, c.backend, m.pkey, cc) is False:
            sass, ptx, _ = builds.cuda_arch(c.version, c.backend, m.pkey)
            return (f"its {c.backend} build has no kernels for the {g.get('name') or 'GPU'} (compute capability "
                    f"{cc}; it carries {builds.arch_words(sass, ptx)})")
    return None


def _rocm_unfit(c: Candidate, m: Machine) -> Optional[str]:
    if m.os != "linux":
        return "ROCm builds of torch are for Linux"
    gpus = m.gpus("amd")
    if not gpus:
        return "it needs an AMD GPU and none was found"
    for g in gpus:
        if builds.rocm_covers(c.version, c.backend, g.get("gfx")) is False:
            return f"its {c.backend} build has no kernels for the {g.get('name') or 'GPU'} ({g.get('gfx')})"
    return None


# ---- the choice --------------------------------------------------------------------------------------------

def rank(c: Candidate) -> tuple:
    """Newest torch, then the newest build (GPU above CPU), a re-upload above the first, earlier source."""
    return (c.release, builds.build_order(c.backend), c.build_tag, -c.source_rank, -c.tag_rank)


def version_matches(version: str, torch: Optional[str]) -> bool:
    """`--torch 2.14` takes any 2.14.x, `--torch 2.14.1` exactly 2.14.1 (with any local label)."""
    if not torch:
        return True
    have, want = base_version(version), base_version(torch)
    return have == want or have.startswith(want + ".")


def wanted(backend: str, option: str) -> bool:
    return option == "auto" or backend == option


def choose(cands: list, option: str, m: Machine, torch: Optional[str] = None) -> Optional[Choice]:
    """The best candidate for `option` ('auto', 'cpu', 'cu126', 'rocm6.4', 'xpu') and `--torch`, or None."""
    pool = [c for c in cands if version_matches(c.version, torch) and wanted(c.backend, option)]
    fit = [c for c in pool if unfit(c, m) is None]
    gpu = [c for c in fit if c.backend != "cpu"]
    pick = gpu or fit
    if not pick:
        return None
    best = max(pick, key=rank)
    return Choice(best, why(best, pool, m, option))


def why(best: Candidate, pool: list, m: Machine, option: str) -> str:
    """One sentence: what decided the build, and which fact ruled out a newer choice."""
    if option != "auto":
        head = f"--backend {option}"
    elif m.os == "macos":
        head = ("macOS on Apple silicon: the PyPI build, which uses the GPU through MPS" if m.pkey == "macos-arm64"
                else "Intel Mac: CPU build")
    elif not m.has_gpu:
        head = "no NVIDIA, AMD or Intel GPU found: CPU build"
    elif best.backend == "cpu":
        head = "no GPU build fits: " + _why_no_gpu_build(pool, m)
    else:
        head = f"newest build that runs here with kernels for {_gpu_words(m)}"
    if best.backend != "cpu":
        head += _newer_ruled_out(best, pool, m)
    nearest = _nearest_note(best)
    return head + (f" ({nearest})" if nearest else "")


def _why_no_gpu_build(pool: list, m: Machine) -> str:
    """The fact that kept the machine's own kind of GPU build out (CUDA for NVIDIA, ROCm for AMD, XPU for Arc)."""
    mine = {"CUDA"} if m.driver or m.gpus("nvidia") else set()
    mine |= {"ROCm"} if m.gpus("amd") else set()
    mine |= {"XPU"} if m.xpu_gpus else set()
    gpu = max((c for c in pool if c.backend != "cpu" and family(c.backend) in mine), key=rank, default=None)
    if gpu:
        return f"{gpu.version}: {unfit(gpu, m)}; CPU build"
    if "ROCm" in mine and m.os != "linux":
        return "ROCm builds of torch are for Linux only; CPU build"
    return f"the indexes offer no {' or '.join(sorted(mine)) or 'GPU'} build for {m.pkey}; CPU build"


def family(backend: str) -> str:
    return "CUDA" if backend.startswith("cu") else "ROCm" if backend.startswith("rocm") else backend.upper()


def _newer_ruled_out(best: Candidate, pool: list, m: Machine) -> str:
    """'; 2.15.0 was ruled out: <fact>' for the newest release above the pick, or ''."""
    newer = [c for c in pool if c.release > best.release and c.backend != "cpu"]
    if not newer:
        return ""
    top_release = max(c.release for c in newer)
    same = [c for c in newer if c.release == top_release and family(c.backend) == family(best.backend)]
    if not same:
        return f"; {top_release} has no {family(best.backend)} build for {m.pkey}"
    return f"; {top_release} was ruled out: {unfit(max(same, key=rank), m)}"


def _gpu_words(m: Machine) -> str:
    names = [f"{g.get('name') or 'GPU'} ({g.get('compute_capability') or '?'})" for g in m.gpus("nvidia")]
    names += [f"{g.get('name') or 'GPU'} ({g.get('gfx') or '?'})" for g in m.gpus("amd")]
    names += [g.get("name") or "GPU" for g in m.xpu_gpus]
    text = ", ".join(names) or "the GPU"
    return text + (f" on driver {m.driver}" if m.driver else "")


def _nearest_note(c: Candidate) -> Optional[str]:
    """Say so when the table did not know this release and a neighbour answered for it."""
    ans = builds.release(c.version)
    if ans.nearest:
        return f"torch {builds.minor_of(c.version)} is not in our build table; judged from {ans.nearest}"
    if c.backend.startswith("cu"):
        _, _, near = builds.cuda_arch(c.version, c.backend, "linux-x86_64")
        if near:
            return f"kernels of {c.backend} judged from torch {near}'s build"
    return None


def builds_to_read(option: str, m: Machine) -> list:
    """The PyTorch-index pages worth reading: every build of a release this Python can have whose driver
    minimum and architectures could fit, plus CPU on Linux (where PyPI's plain wheel is a CUDA build)."""
    if option != "auto":
        return [option]
    if m.os == "macos":
        return []  # PyPI carries the macOS builds
    rows = [r for r in builds.load()["releases"] if m.py_minor in r["python"]]
    out = []
    for b in dict.fromkeys(b for r in rows for b in r["builds"].get(m.pkey, [])):
        releases = [r["torch"] + ".0" for r in rows if b in r["builds"].get(m.pkey, [])]
        if b != "cpu" and any(unfit(Candidate("", v, b, "table", (), 0, 0), m) is None for v in releases):
            out.append(b)
    out.sort(key=builds.build_order, reverse=True)
    return out + (["cpu"] if m.os == "linux" else [])


# ---- sentences for 'nothing fits' --------------------------------------------------------------------------

def python_problem(py: dict, torch: Optional[str] = None) -> Optional[str]:
    """Why no torch can exist for this interpreter (32-bit, not CPython, too old, too new, Intel Mac), or None."""
    rec = builds.recommended_python()
    if py.get("bits", 64) != 64:
        return f"torch has no wheels for 32-bit Python; install 64-bit Python {rec}"
    if py.get("implementation", "cpython") != "cpython":
        return f"torch publishes wheels for CPython only, not {py['implementation']}; install Python {rec} from python.org"
    m = Machine(py)
    minor = m.py_minor
    ok = builds.releases_for_python(minor, m.pkey)
    if torch:
        return _python_vs_release(m, torch, ok, rec)
    if ok:
        return None
    if m.pkey == "macos-x86_64":
        last = [r for r in builds.load()["releases"] if r["builds"].get("macos-x86_64")]
        if not last:
            return "torch no longer publishes wheels for Intel Macs; use an Apple-silicon Mac, Linux or Windows"
        top = max(last[0]["python"], key=builds.version_key)
        return (f"the last torch for Intel Macs ({last[0]['torch']}) supports Python up to {top}, not {minor}; "
                f"install Python {top}")
    everything = sorted({p for r in builds.load()["releases"] for p in r["python"]}, key=builds.version_key)
    if builds.version_key(minor) < builds.version_key(everything[0]):
        return f"Python {minor} is older than any torch we know supports; install Python {rec}"
    if builds.version_key(minor) > builds.version_key(everything[-1]):
        return (f"Python {minor} is newer than any torch release supports yet (newest {builds.newest_release()}); "
                f"install Python {rec}")
    return None


def _python_vs_release(m: Machine, torch: str, ok: list, rec: str) -> Optional[str]:
    """Why `--torch X.Y` cannot be had on this Python and platform (`ok`: the releases it can have), or None."""
    ans = builds.release(torch)
    if ans.nearest or ans.row is None:
        return None  # a release the table does not know: the index decides
    row, minor = ans.row, m.py_minor
    newest = ok[0] if ok else None
    if not row["builds"].get(m.pkey):
        return (f"torch {row['torch']} has no wheels for {m.pkey}" +
                (f"; the newest for it is {newest} (`--torch {newest}`)" if newest else ""))
    if minor in row["python"]:
        return None
    if builds.version_key(minor) < min(builds.version_key(p) for p in row["python"]):
        return _python_too_old(row, minor, newest, rec)
    return (f"torch {row['torch']} came out before Python {minor} and has no wheels for it: use "
            f"{'`--torch ' + newest + '`' if newest else 'a newer torch'}, or install Python {rec}")


def _python_too_old(row: dict, minor: str, newest: Optional[str], rec: str) -> str:
    """The sentence for a Python older than release `row` supports, naming the first release that dropped it."""
    key = builds.version_key
    floor = min((r["torch"] for r in builds.load()["releases"] if minor not in r["python"]
                 and key(r["torch"]) <= key(row["torch"]) and (not newest or key(r["torch"]) > key(newest))),
                key=key, default=row["torch"])
    tail = f"the newest you can have is {newest} (`--torch {newest}`), or install Python {rec}" if newest \
        else f"install Python {rec}"
    return f"Python {minor} is older than any torch >= {floor} supports: {tail}"


def backend_problem(option: str, m: Machine) -> Optional[str]:
    """Why an explicit backend cannot work here, known before any index is read; or None."""
    if option.startswith("cu"):
        if m.os == "macos":
            return "Macs have no NVIDIA CUDA builds of torch; use --backend cpu (Apple GPUs are used through MPS)"
        if not builds.driver_minimum(option, m.driver_os):
            return f"{option} is not a CUDA build we know; use auto, cpu or a build such as cu126"
        if not m.driver:
            return f"{option} needs an NVIDIA driver and none was found; install the driver or use --backend cpu"
        if not builds.driver_runs(option, m.driver, m.driver_os):
            need = builds.driver_minimum(option, m.driver_os)
            return (f"no {cuda_words(option)} build runs on your driver {m.driver} (it needs {need} or newer); "
                    f"update the driver or use --backend auto")
    if option.startswith("rocm") and m.os != "linux":
        return "ROCm builds of torch are for Linux only; use --backend cpu"
    return None


def explain_no_fit(option: str, m: Machine, torch: Optional[str], cands: list, sources_read: list) -> str:
    """One sentence for 'nothing fits', most specific reason first."""
    reason = python_problem(m.py, torch) or backend_problem(option, m) or _best_unfit(option, m, torch, cands)
    if reason:
        return reason[0].upper() + reason[1:] + "."
    where = ", ".join(sources_read) or "no index could be read"
    have = sorted({c.version for c in cands}, key=lambda v: Version(base_version(v)), reverse=True)[:4]
    seen = f" (for this Python they offer {', '.join(have)})" if have else ""
    if option in ("auto", "cpu") and m.os == "linux" and not have:
        seen = " (the CPU build for Linux comes from the PyTorch index or a mirror of it, e.g. --pytorch-index URL)"
    want = f"torch {torch}" if torch else "torch"
    return (f"No {want} wheel for Python {m.py_minor} on {m.pkey} with backend {option} was found on "
            f"{where}{seen}.")


def _best_unfit(option: str, m: Machine, torch: Optional[str], cands: list) -> Optional[str]:
    """Why the best wanted file the indexes hold does not run here, or None when they hold none."""
    pool = [c for c in cands if version_matches(c.version, torch) and wanted(c.backend, option)]
    if not pool:
        return None
    top = max(pool, key=rank)
    hint = "; `--backend auto` takes the newest build that fits" if option != "auto" else ""
    return f"torch {top.version} does not fit: {unfit(top, m)}{hint}"
