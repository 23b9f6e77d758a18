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
from fomm_doctor.install.backend import CPU, Backend, Kind
from fomm_doctor.install.machine import Interpreter, Machine
from fomm_doctor.install.metadata import build_from_requires
from fomm_doctor.preflight import install_hint


class NoFit(UserError):
    """No torch wheel fits; the message says why and what to do."""


@dataclass(frozen=True)
class Candidate:
    filename: str
    version: str  # with local label: "2.14.1+cu126"
    backend: Backend
    backend_from: str  # "label" (the file name says it), "metadata" (Requires-Dist), "table" (torch_builds.json)
    build_tag: tuple  # wheel build tag: a re-upload "-2-" beats the first upload
    tag_rank: int  # position of the best matching tag in the interpreter's list (lower = preferred)
    source_rank: int
    file: object = field(compare=False, hash=False, default=None)  # the IndexFile
    source: object = field(compare=False, hash=False, default=None)
    described: bool = True  # the table describes this build on the target's platform (else it is inferred)

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


def option_words(option: Optional[Backend]) -> str:
    """`--backend` as the user wrote it: a build, or auto (None)."""
    return str(option) if option else "auto"


# ---- classifying index files ------------------------------------------------------------------------------

def plain_build(version: str, m: Machine, requires: Optional[list]) -> tuple:
    """(build, how we know) of a wheel without a local label: its Requires-Dist when we have it, else the
    table's record of what PyPI ships for this platform."""
    if requires is not None:
        return build_from_requires(requires, m.py), "metadata"
    row = builds.release(version).row or {}
    return Backend.parse((row.get("pypi") or {}).get(m.pkey, "cpu")), "table"


def _build_of(version: str, m: Machine, requires: Optional[list]) -> tuple:
    """(build, how we know), or (None, why the file is skipped) for a label that names no build."""
    if "+" not in version:
        return plain_build(version, m, requires)
    build = Backend.from_label(version.split("+", 1)[1])
    return (build, "label") if build else (None, "a build we do not know")


def classify(files_by_source: list, m: Machine, requires: Optional[dict] = None, project: str = "torch") -> tuple:
    """Installable wheels for this interpreter -> (candidates, {reason: count} of files skipped).

    files_by_source: [(source, [IndexFile, ...]), ...] in preference order; requires: {filename: [Requires-Dist]}.
    """
    rank = {t: i for i, t in enumerate(m.py.tags)}
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
            elif not requires_python_ok(f.requires_python, m.py.version):
                skip("requires-python")
            elif not any(str(t) in rank for t in tags):
                skip("other platform or Python")
            else:
                v = str(version)
                backend, how = _build_of(v, m, requires.get(f.filename))
                if backend is None:
                    skip(how)
                    continue
                out.append(Candidate(f.filename, v, backend, how, tuple(build_tag or ()),
                                     min(rank[str(t)] for t in tags if str(t) in rank), s_rank, f, source,
                                     builds.described(backend, m.pkey)))
    return out, skipped


# ---- does a build run here ---------------------------------------------------------------------------------

def unfit(c: Candidate, m: Machine) -> Optional[str]:
    """None when this build runs on the machine with kernels for its GPUs; else the fact that rules it out."""
    kind = c.backend.kind
    if kind is Kind.CUDA:
        return _cuda_unfit(c, m)
    if kind is Kind.ROCM:
        return _rocm_unfit(c, m)
    if kind is Kind.XPU:
        return None if m.xpu_gpus else "it needs an Intel Arc or Data Center GPU and none was found"
    return None


def _cuda_unfit(c: Candidate, m: Machine) -> Optional[str]:
    if m.os == "macos":
        return "Macs have no NVIDIA CUDA"
    if not m.driver:
        return "it needs an NVIDIA driver and none was found"
    need = builds.driver_minimum(c.backend, m.driver_os)
    if not need:
        return f"{c.backend} is a CUDA version we have no driver table for"
    if not builds.driver_runs(c.backend, m.driver, m.driver_os):
        return f"its {c.backend.words} needs NVIDIA driver {need} or newer, this one is {m.driver}"
    for g in m.nvidia_gpus:
        cc = g.compute_capability
        if builds.cuda_covers(c.version, c.backend, m.pkey, cc) is False:
            arch = builds.cuda_arch(c.version, c.backend, m.pkey)
            carries = _carries(arch, c.version)
            return (f"its {c.backend} build has no kernels for the {g.name or 'GPU'} (compute capability "
                    f"{cc}; it {carries} {builds.arch_words(arch.sass, arch.ptx)})")
    return None


def _carries(arch: "builds.Arch", version: str) -> str:
    """'carries', or how what it carries was judged when the table has no row of its own for it."""
    if arch.inferred_from:
        return (f"is taken to carry only what {' and '.join(arch.inferred_from)} of torch "
                f"{arch.nearest or builds.minor_of(version)} all carry:")
    return f"carries, judged from torch {arch.nearest}," if arch.nearest else "carries"


def _rocm_unfit(c: Candidate, m: Machine) -> Optional[str]:
    if m.os != "linux":
        return "ROCm builds of torch are for Linux"
    if not m.amd_gpus:
        return "it needs an AMD GPU and none was found"
    for g in m.amd_gpus:
        if builds.rocm_covers(c.version, c.backend, g.gfx) is False:
            return f"its {c.backend} build has no kernels for the {g.name or 'GPU'} ({g.gfx})"
    return None


# ---- the choice --------------------------------------------------------------------------------------------

def rank(c: Candidate) -> tuple:
    """Newest torch, then a build the table describes above one it does not (what we know beats what we
    infer), then the newest build (GPU above CPU), a re-upload above the first, earlier source."""
    return (c.release, c.described, c.backend.sort_key(), c.build_tag, -c.source_rank, -c.tag_rank)


def version_matches(version: str, torch: Optional[str]) -> bool:
    """`--torch 2.14` takes any 2.14.x, `--torch 2.14.1` exactly 2.14.1 (with any local label)."""
    if not torch:
        return True
    have, want = base_version(version), base_version(torch)
    return have == want or have.startswith(want + ".")


def wanted(backend: Backend, option: Optional[Backend]) -> bool:
    return option is None or backend == option


def choose(cands: list, option: Optional[Backend], m: Machine, torch: Optional[str] = None) -> Optional[Choice]:
    """The best candidate for `--backend` (None: auto) and `--torch`, or None."""
    pool = [c for c in cands if version_matches(c.version, torch) and wanted(c.backend, option)]
    fit = [c for c in pool if unfit(c, m) is None]
    gpu = [c for c in fit if c.backend.is_gpu]
    pick = gpu or fit
    if not pick:
        return None
    best = max(pick, key=rank)
    return Choice(best, why(best, pool, m, option))


def why(best: Candidate, pool: list, m: Machine, option: Optional[Backend]) -> str:
    """One sentence: what decided the build, and which fact ruled out a newer choice."""
    if option:
        head = f"--backend {option}"
    elif m.os == "macos":
        head = ("macOS on Apple silicon: the PyPI build, which uses the GPU through MPS" if m.pkey == "macos-arm64"
                else "Intel Mac: CPU build")
    elif not m.has_gpu:
        head = "no NVIDIA, AMD or Intel GPU found: CPU build"
    elif not best.backend.is_gpu:
        head = "no GPU build fits: " + _why_no_gpu_build(pool, m)
    else:
        head = f"newest build that runs here with kernels for {_gpu_words(m)}"
    if best.backend.is_gpu:
        head += _newer_ruled_out(best, pool, m)
    nearest = _nearest_note(best, m)
    return head + (f" ({nearest})" if nearest else "")


def _why_no_gpu_build(pool: list, m: Machine) -> str:
    """The fact that kept the machine's own kind of GPU build out (CUDA for NVIDIA, ROCm for AMD, XPU for Arc)."""
    mine = {Kind.CUDA} if m.driver or m.nvidia_gpus else set()
    mine |= {Kind.ROCM} if m.amd_gpus else set()
    mine |= {Kind.XPU} if m.xpu_gpus else set()
    gpu = max((c for c in pool if c.backend.kind in mine), key=rank, default=None)
    if gpu:
        return f"{gpu.version}: {unfit(gpu, m)}; CPU build"
    if Kind.ROCM in mine and m.os != "linux":
        return builds.rocm_windows_words() + "; CPU build" if m.os == "windows" else \
            "ROCm builds of torch are for Linux only; CPU build"
    families = sorted(Backend(k).family for k in mine)
    return f"the indexes offer no {' or '.join(families) or 'GPU'} build for {m.pkey}; CPU build"


def _newer_ruled_out(best: Candidate, pool: list, m: Machine) -> str:
    """'; 2.15.0 was ruled out: <fact>' for the newest release above the pick, or ''."""
    newer = [c for c in pool if c.release > best.release and c.backend.is_gpu]
    if not newer:
        return ""
    top_release = max(c.release for c in newer)
    same = [c for c in newer if c.release == top_release and c.backend.kind is best.backend.kind]
    if not same:
        return f"; {top_release} has no {best.backend.family} build for {m.pkey}"
    return f"; {top_release} was ruled out: {unfit(max(same, key=rank), m)}"


def _gpu_words(m: Machine) -> str:
    names = [f"{g.name or 'GPU'} ({g.compute_capability or '?'})" for g in m.nvidia_gpus]
    names += [f"{g.name or 'GPU'} ({g.gfx or '?'})" for g in m.amd_gpus]
    names += [g.name or "GPU" for g in m.xpu_gpus]
    text = ", ".join(names) or "the GPU"
    return text + (f" on driver {m.driver}" if m.driver else "")


def _nearest_note(c: Candidate, m: Machine) -> Optional[str]:
    """Say which facts the table did not hold and what stood in for them: a release judged from a neighbour,
    a CUDA build's kernels judged from another release's row, or a build the table has never seen judged from
    the known builds of its CUDA major."""
    notes = []
    ans = builds.release(c.version)
    if ans.nearest:
        notes.append(f"torch {builds.minor_of(c.version)} is not in our build table; judged from {ans.nearest}")
    if c.backend.kind is Kind.CUDA:
        arch = builds.cuda_arch(c.version, c.backend, m.pkey)
        if arch.inferred_from:
            major = c.backend.version[0]
            notes.append(f"{c.backend} is not in our build table: its driver minimum is taken from CUDA {major}'s "
                         f"first minor ({builds.driver_minimum(c.backend, m.driver_os)}) and its kernels from what "
                         f"{' and '.join(arch.inferred_from)} of torch {arch.nearest or builds.minor_of(c.version)} "
                         f"all carry ({builds.arch_words(arch.sass, arch.ptx)})")
        elif arch.nearest and not ans.nearest:
            notes.append(f"kernels of {c.backend} judged from torch {arch.nearest}'s build")
    return "; ".join(notes) or None


def builds_to_read(option: Optional[Backend], m: Machine) -> list:
    """The PyTorch-index pages worth reading (Backends): every build of a release this Python can have whose
    driver minimum and architectures could fit, plus CPU where PyPI's wheel is not the CPU build (Linux: it is
    a CUDA build; Windows on ARM64: PyPI has none)."""
    if option:
        return [option]
    if m.os == "macos":
        return []  # PyPI carries the macOS builds
    rows = [r for r in builds.load()["releases"] if m.py.minor in r["python"]]
    out = []
    for b in dict.fromkeys(b for r in rows for b in builds.release_builds(r, m.pkey)):
        releases = [r["torch"] + ".0" for r in rows if b in builds.release_builds(r, m.pkey)]
        if b.is_gpu and any(unfit(Candidate("", v, b, "table", (), 0, 0), m) is None for v in releases):
            out.append(b)
    out.sort(key=Backend.sort_key, reverse=True)
    return out + ([CPU] if m.os == "linux" or builds.cpu_only_on_pytorch_index(m.pkey, m.py.minor) else [])


# ---- sentences for 'nothing fits' --------------------------------------------------------------------------

def _sentence(reason: str, os_name: str, python: Optional[str] = None) -> str:
    """A reason as a sentence, followed by how to install `python` on that OS when another Python is the fix."""
    text = reason[0].upper() + reason[1:] + "."
    return text + (" " + install_hint(os_name, python) if python else "")


def python_problem(py: Interpreter, torch: Optional[str] = None) -> Optional[str]:
    """Why no torch can exist for this interpreter (32-bit, not CPython, too old, too new, Intel Mac), as the
    sentence to say (with how to install a Python that works), or None."""
    rec = builds.recommended_python()
    if py.bits != 64:
        return _sentence("torch has no wheels for 32-bit Python", py.os, rec)
    if py.implementation != "cpython":
        return _sentence(f"torch publishes wheels for CPython only, not {py.implementation}", py.os, rec)
    ok = builds.releases_for_python(py.minor, py.pkey)
    if torch:
        return _python_vs_release(py, torch, ok, rec)
    if ok:
        return None
    if py.pkey == "macos-x86_64":
        return _intel_mac(py)
    everything = sorted({p for r in builds.load()["releases"] for p in r["python"]}, key=builds.version_key)
    if builds.version_key(py.minor) < builds.version_key(everything[0]):
        return _sentence(f"Python {py.minor} is older than any torch we know supports", py.os, rec)
    if builds.version_key(py.minor) > builds.version_key(everything[-1]):
        return _sentence(f"Python {py.minor} is newer than any torch release supports yet (newest "
                         f"{builds.newest_release()})", py.os, rec)
    return None


def _intel_mac(py: Interpreter) -> str:
    """The sentence for an Intel Mac whose Python the last torch for Intel Macs does not support."""
    last = [r for r in builds.load()["releases"] if r["builds"].get("macos-x86_64")]
    if not last:
        return _sentence("torch no longer publishes wheels for Intel Macs; use an Apple-silicon Mac, Linux or "
                         "Windows", py.os)
    top = max(last[0]["python"], key=builds.version_key)
    return _sentence(f"the last torch for Intel Macs ({last[0]['torch']}) supports Python up to {top}, not "
                     f"{py.minor}", py.os, top)


def _python_vs_release(py: Interpreter, torch: str, ok: list, rec: str) -> Optional[str]:
    """Why `--torch X.Y` cannot be had on this Python and platform (`ok`: the releases it can have), or None."""
    ans = builds.release(torch)
    if ans.nearest or ans.row is None:
        return None  # a release the table does not know: the index decides
    row, minor = ans.row, py.minor
    newest = ok[0] if ok else None
    if not row["builds"].get(py.pkey):
        return _sentence(f"torch {row['torch']} has no wheels for {py.pkey}" +
                         (f"; the newest for it is {newest} (`--torch {newest}`)" if newest else ""), py.os)
    if minor in row["python"]:
        return None
    if builds.version_key(minor) < min(builds.version_key(p) for p in row["python"]):
        return _python_too_old(py, row, newest, rec)
    use = f"`--torch {newest}`" if newest else "a newer torch"
    return _sentence(f"torch {row['torch']} came out before Python {minor} and has no wheels for it: use {use}, "
                     f"or another Python", py.os, rec)


def _python_too_old(py: Interpreter, row: dict, newest: Optional[str], rec: str) -> str:
    """The sentence for a Python older than release `row` supports, naming the first release that dropped it."""
    key, minor = builds.version_key, py.minor
    floor = min((r["torch"] for r in builds.load()["releases"] if minor not in r["python"]
                 and key(r["torch"]) <= key(row["torch"]) and (not newest or key(r["torch"]) > key(newest))),
                key=key, default=row["torch"])
    tail = f": the newest you can have is {newest} (`--torch {newest}`), or a newer Python" if newest else ""
    return _sentence(f"Python {minor} is older than any torch >= {floor} supports{tail}", py.os, rec)


def backend_problem(option: Backend, m: Machine) -> Optional[str]:
    """Why an explicit backend cannot work here, known before any index is read, as a sentence; or None."""
    if option.kind is Kind.CUDA:
        reason = _cuda_problem(option, m)
    elif option.kind is Kind.ROCM and m.os != "linux":
        reason = (builds.rocm_windows_words() if m.os == "windows" else "ROCm builds of torch are for Linux only") + \
            "; use --backend cpu"
    else:
        reason = None
    return _sentence(reason, m.os) if reason else None


def _cuda_problem(option: Backend, m: Machine) -> Optional[str]:
    if m.os == "macos":
        return "Macs have no NVIDIA CUDA builds of torch; use --backend cpu (Apple GPUs are used through MPS)"
    need = builds.driver_minimum(option, m.driver_os)
    if not need:
        return f"{option} is not a CUDA build we know; use auto, cpu or a build such as cu126"
    if not m.driver:
        return f"{option} needs an NVIDIA driver and none was found; install the driver or use --backend cpu"
    if not builds.driver_runs(option, m.driver, m.driver_os):
        return (f"no {option.words} build runs on your driver {m.driver} (it needs {need} or newer); update the "
                f"driver or use --backend auto")
    return None


def explain_no_fit(option: Optional[Backend], m: Machine, torch: Optional[str], cands: list,
                   sources_read: list, unread: tuple = ()) -> str:
    """One sentence for 'nothing fits', most specific reason first. `unread`: why each index that could not
    be read failed (said only when none could be read)."""
    reason = python_problem(m.py, torch) or (backend_problem(option, m) if option else None) \
        or _best_unfit(option, m, torch, cands)
    if reason:
        return reason
    want = f"torch {torch}" if torch else "torch"
    head = f"No {want} wheel for Python {m.py.minor} on {m.pkey} with backend {option_words(option)} was found"
    if not sources_read:
        why = "; ".join(_clause(e) for e in unread)
        return f"{head}, because no index could be read" + (f": {why}." if why else ".")
    have = sorted({c.version for c in cands}, key=lambda v: Version(base_version(v)), reverse=True)[:4]
    seen = f" (for this Python they offer {', '.join(have)})" if have else ""
    if (option is None or option == CPU) and m.os == "linux" and not have:
        seen = " (the CPU build for Linux comes from the PyTorch index or a mirror of it, e.g. --pytorch-index URL)"
    return f"{head} on {', '.join(sources_read)}{seen}."


def _clause(sentence: str) -> str:
    """A sentence of its own made a clause of a longer one: no final period, no capital unless a word needs it."""
    text = str(sentence).strip().rstrip(".")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _best_unfit(option: Optional[Backend], m: Machine, torch: Optional[str], cands: list) -> Optional[str]:
    """Why the best wanted file the indexes hold does not run here, or None when they hold none."""
    pool = [c for c in cands if version_matches(c.version, torch) and wanted(c.backend, option)]
    if not pool:
        return None
    top = max(pool, key=rank)
    hint = "; `--backend auto` takes the newest build that fits" if option else ""
    return _sentence(f"torch {top.version} does not fit: {unfit(top, m)}{hint}", m.os)
