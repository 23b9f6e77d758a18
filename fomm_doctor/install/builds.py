"""What no index says, from `torch_builds.json` (each row names its source): which Pythons a torch release
supports, which builds it publishes per platform, the NVIDIA driver a CUDA version needs, and which GPU
architectures each CUDA / ROCm build carries kernels for.

Pure functions of the table and plain facts; `check` and `install` ask here. The table spells builds as
labels ("cu126"); they are read as `Backend`s here, and every question about a build takes one.
A release newer than the table (2.16 when the table stops at 2.15) is answered from the nearest release the
table knows, and the answer says so (`Answer.nearest`). A CUDA build newer than the table (cu134) is answered
from the known builds of its CUDA major, never credited with more than all of them carry (`Arch.inferred_from`).
"""
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

from fomm_doctor import preflight
from fomm_doctor.install.backend import CPU, Backend, Kind
# The version parser and the Python policy (MIN_PYTHON, which torch a Python can have, the Python to recommend)
# live in the preflight, which must run alone; this module answers through them.
from fomm_doctor.preflight import version_key

TABLE = Path(__file__).resolve().parent / "torch_builds.json"
PLATFORMS = ("linux-x86_64", "linux-aarch64", "windows-x86_64", "windows-arm64", "macos-arm64", "macos-x86_64")


@lru_cache(maxsize=1)
def load() -> dict:
    with open(TABLE, encoding="utf-8") as f:
        return json.load(f)


def minor_of(version: str) -> str:
    """'2.14.1+cu126' -> '2.14'."""
    return ".".join(str(p) for p in version_key(version)[:2])


def os_name(platform: str) -> str:
    """sys.platform (or a platform key) -> 'windows' | 'macos' | 'linux'."""
    if platform.startswith("win") or platform == "cygwin":
        return "windows"
    if platform in ("darwin", "macos") or platform.startswith("macos"):
        return "macos"
    return "linux"


def platform_key(platform: str, machine: str) -> str:
    """('linux', 'x86_64') -> 'linux-x86_64'; ARM spellings folded ('arm64' on Linux is aarch64)."""
    m = (machine or "").lower()
    arm = m in ("arm64", "aarch64", "armv8", "armv8l")
    osn = os_name(platform)
    if osn == "macos":
        return "macos-arm64" if arm else "macos-x86_64"
    return f"{osn}-{'aarch64' if arm and osn == 'linux' else 'arm64' if arm else 'x86_64'}"


# ---- releases and Python ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    row: Optional[dict]
    nearest: Optional[str] = None  # the release whose row answered, when the asked one is not in the table


def release(version: str, table: Optional[dict] = None) -> Answer:
    """The row of this torch release; for a release the table does not know, the nearest older one (or the
    oldest newer one)."""
    rows = (table or load())["releases"]
    want = minor_of(version)
    for r in rows:
        if r["torch"] == want:
            return Answer(r)
    older = [r for r in rows if version_key(r["torch"]) < version_key(want)]
    pick = older[0] if older else (rows[-1] if rows else None)
    return Answer(pick, pick["torch"] if pick else None)


def releases_for_python(py_minor: str, pkey: str, table: Optional[dict] = None) -> list:
    """torch minor versions (newest first) with wheels for this CPython on this platform: the one answer to
    'which torch can this Python have'."""
    return preflight.releases_for_python(table or load(), py_minor, pkey)


def newest_release(table: Optional[dict] = None) -> str:
    return (table or load())["releases"][0]["torch"]


def recommended_python(table: Optional[dict] = None) -> str:
    """The oldest Python the newest torch supports: it has current torch and the widest choice of packages."""
    return preflight.recommended_python(table or load())


# ---- NVIDIA ------------------------------------------------------------------------------------------------

def release_builds(row: dict, pkey: str) -> list:
    """The builds a release row publishes for a platform, as Backends."""
    return [Backend.parse(b) for b in row["builds"].get(pkey, [])]


def driver_minimum(build: Backend, driver_os: str, table: Optional[dict] = None) -> Optional[str]:
    """The NVIDIA driver a CUDA build needs on 'linux' or 'windows' (minor-version compatibility: the
    minimum of the CUDA major, or of the exact version where no such compatibility existed)."""
    cuda = build.cuda
    if not cuda:
        return None
    rows = {r["cuda"]: r for r in (table or load())["cuda_driver"]}
    major = cuda.split(".")[0]
    # a version the table does not name (cu134): its major's minor-version-compatibility row, else the row of
    # the first minor of that major we know (the floor any build of the major needs)
    firsts = sorted((k for k in rows if k.split(".")[0] == major and "." in k), key=version_key)
    row = rows.get(cuda) or rows.get(major) or (rows[firsts[0]] if firsts else None)
    return row.get(driver_os) if row else None


def driver_runs(build: Backend, driver: Optional[str], driver_os: str, table: Optional[dict] = None) -> bool:
    need = driver_minimum(build, driver_os, table)
    return bool(need and driver) and version_key(driver) >= version_key(need)


def _rows_for(rows: list, version: str, build: Backend, pkey: str, table: dict) -> tuple:
    """(rows of `build` for this release and platform, nearest release used or None)."""
    def same(r):  # a row may cover several builds ("cu130/cu132"); ROCm rows are per release, whatever the tag
        return build.kind is Kind.ROCM or str(build) in r["build"].split("/")

    def pick(minor):
        return [r for r in rows if same(r) and minor in r["torch"]
                and (not r.get("platforms") or pkey in r["platforms"])]
    found = pick(minor_of(version))
    if found:
        return found, None
    known = sorted({m for r in rows if same(r) for m in r["torch"]}, key=version_key, reverse=True)
    older = [m for m in known if version_key(m) < version_key(version)]
    for m in older + [m for m in reversed(known) if m not in older]:
        found = pick(m)
        if found:
            return found, m
    return [], None


def cpu_only_on_pytorch_index(pkey: str, py_minor: str, table: Optional[dict] = None) -> bool:
    """The CPU build for this platform comes from the PyTorch index, not PyPI: the newest release this Python
    can have publishes a CPU build here while its PyPI wheel is another build (Linux: a CUDA build) or absent
    (Windows on ARM64)."""
    for r in (table or load())["releases"]:
        if py_minor in r["python"] and r["builds"].get(pkey):
            return CPU in release_builds(r, pkey) and (r.get("pypi") or {}).get(pkey) != "cpu"
    return False


def newest_cuda_for_driver(driver: Optional[str], driver_os: str, table: Optional[dict] = None) -> Optional[Backend]:
    """The newest CUDA build any release publishes that this driver runs (cu129 for 570), or None."""
    table = table or load()
    builds = {b for r in table["releases"] for pkey in r["builds"] for b in release_builds(r, pkey)}
    runs = [b for b in builds if b.kind is Kind.CUDA and driver_runs(b, driver, driver_os, table)]
    return max(runs, key=Backend.sort_key) if runs else None


def newest_release_for_driver(driver: Optional[str], driver_os: str, pkey: str,
                              table: Optional[dict] = None) -> tuple:
    """(torch minor, its newest CUDA build this driver runs) for the newest release that has one; (None, None)."""
    for r in (table or load())["releases"]:
        runs = [b for b in release_builds(r, pkey) if b.kind is Kind.CUDA and driver_runs(b, driver, driver_os, table)]
        if runs:
            return r["torch"], max(runs, key=Backend.sort_key)
    return None, None


def cc_key(cc) -> tuple:
    """'8.6' -> (8, 6); '12.0' -> (12, 0); None -> ()."""
    return version_key(cc)[:2]


def kernels_for(cc, sass: list, ptx: list) -> bool:
    """SASS runs on the same major architecture at an equal or higher minor; PTX is compiled on the GPU for
    any equal or newer architecture."""
    have = cc_key(cc)
    return any(version_key(s)[:1] == have[:1] and version_key(s)[:2] <= have for s in sass) or \
        any(version_key(p)[:2] <= have for p in ptx)


@dataclass(frozen=True)
class Arch:
    """The GPU architectures a CUDA build of a release carries, and how we know."""
    sass: tuple = ()
    ptx: tuple = ()
    nearest: Optional[str] = None  # the release whose row answered, when the asked one has none for this build
    # a build the table does not describe on this platform: the builds of its CUDA major (of release `nearest`,
    # or of the asked one) whose common architectures stand in for it
    inferred_from: tuple = ()

    @property
    def known(self) -> bool:
        return bool(self.sass or self.ptx)


def _same_major_rows(rows: list, version: str, build: Backend, pkey: str) -> tuple:
    """(rows of the builds of `build`'s CUDA major for the nearest release that has any on this platform, that
    release or None when it is the asked one): the known neighbours an unknown build is judged from."""
    def builds_of(r):
        return [Backend.from_label(b) for b in r["build"].split("/")]

    def pick(minor):
        return [r for r in rows if minor in r["torch"] and (not r.get("platforms") or pkey in r["platforms"])
                and any(b is not None and b.same_cuda_major(build) for b in builds_of(r))]
    want = minor_of(version)
    known = sorted({m for r in rows for m in r["torch"]}, key=version_key, reverse=True)
    older = [m for m in known if version_key(m) <= version_key(want)]
    for m in older + [m for m in reversed(known) if m not in older]:
        found = pick(m)
        if found:
            return found, (None if m == want else m)
    return [], None


def _common(lists: list) -> tuple:
    """The entries every list holds, in the first list's order."""
    return tuple(x for x in lists[0] if all(x in other for other in lists[1:])) if lists else ()


def cuda_arch(version: str, build: Backend, pkey: str, table: Optional[dict] = None) -> Arch:
    """What this CUDA build of this release carries. A build the table does not describe on this platform (a
    cu134 that came out after it) is never credited with more than its known neighbours: it gets the
    architectures common to every build of its CUDA major in the nearest release that has them (`inferred_from`
    names them). Arch() when nothing of that major is known either."""
    table = table or load()
    rows, nearest = _rows_for(table["cuda_arch"], version, build, pkey, table)
    if rows:
        return Arch(tuple(rows[0].get("sass", [])), tuple(rows[0].get("ptx", [])), nearest)
    rows, nearest = _same_major_rows(table["cuda_arch"], version, build, pkey) if build.version else ([], None)
    if not rows:
        return Arch()
    named = tuple(dict.fromkeys(str(b) for r in rows for b in map(Backend.from_label, r["build"].split("/"))
                                if b is not None and b.same_cuda_major(build)))
    return Arch(_common([r.get("sass", []) for r in rows]), _common([r.get("ptx", []) for r in rows]), nearest, named)


def described(build: Backend, pkey: str, table: Optional[dict] = None) -> bool:
    """The table describes this build on this platform (for some release): a CUDA build by its own row, every
    other kind by the release it belongs to."""
    if build.kind is not Kind.CUDA:
        return True
    rows = (table or load())["cuda_arch"]
    return any(str(build) in r["build"].split("/") and (not r.get("platforms") or pkey in r["platforms"])
               for r in rows)


def cuda_covers(version: str, build: Backend, pkey: str, cc, table: Optional[dict] = None) -> Optional[bool]:
    """Does this CUDA build of this release carry kernels for compute capability `cc`? None when unknown
    (no capability reported, or nothing known of the build's CUDA major)."""
    if len(cc_key(cc)) < 2:
        return None
    arch = cuda_arch(version, build, pkey, table)
    if not arch.known:
        return None
    return kernels_for(cc, list(arch.sass), list(arch.ptx))


def arch_words(sass: list, ptx: list) -> str:
    """'sm_75 to sm_120 + PTX 12.0'."""
    if not sass:
        return "PTX " + ", ".join(ptx) if ptx else "no known architectures"
    ordered = sorted(sass, key=version_key)
    text = f"sm_{ordered[0].replace('.', '')} to sm_{ordered[-1].replace('.', '')}"
    return text + (f" + PTX {', '.join(ptx)}" if ptx else "")


# ---- AMD ---------------------------------------------------------------------------------------------------

def rocm_gfx(version: str, build: Backend, table: Optional[dict] = None) -> tuple:
    """(gfx targets of this ROCm build of this release, nearest release used or None)."""
    table = table or load()
    rows, nearest = _rows_for(table.get("rocm_arch", []), version, build, "linux-x86_64", table)
    return (rows[0]["gfx"] if rows else []), nearest


def rocm_covers(version: str, build: Backend, gfx: Optional[str], table: Optional[dict] = None) -> Optional[bool]:
    if not gfx:
        return None
    targets, _ = rocm_gfx(version, build, table)
    return (gfx in targets) if targets else None


def rocm_windows_words(table: Optional[dict] = None) -> str:
    """Where AMD's ROCm builds of torch for Windows are (its own index, not the PyTorch index), as a clause."""
    row = (table or load()).get("rocm_windows") or {}
    if not row:
        return "ROCm builds of torch are for Linux only"
    return (f"ROCm builds of torch are for Linux only on the PyTorch index; AMD publishes Windows ones on its own "
            f"index ({row['index']}, e.g. {row['example']}; {row['needs']}), which this plan does not read")
