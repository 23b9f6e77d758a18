"""What no index says, from `torch_builds.json` (each row names its source): which Pythons a torch release
supports, which builds it publishes per platform, the NVIDIA driver a CUDA version needs, and which GPU
architectures each CUDA / ROCm build carries kernels for.

Pure functions of the table and plain facts; `check` and `install` ask here. The table spells builds as
labels ("cu126"); they are read as `Backend`s here, and every question about a build takes one.
A release newer than the table (2.16 when the table stops at 2.15) is answered from the nearest release the
table knows, and the answer says so (`Answer.nearest`).
"""
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

from fomm_doctor import preflight
from fomm_doctor.install.backend import Backend, Kind
# The version parser and the Python policy (MIN_PYTHON, which torch a Python can have, the Python to recommend)
# live in the preflight, which must run alone; this module answers through them.
from fomm_doctor.preflight import version_key

TABLE = Path(__file__).resolve().parent / "torch_builds.json"
PLATFORMS = ("linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64", "macos-x86_64")


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
    row = rows.get(cuda) or rows.get(cuda.split(".")[0])
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


def cuda_arch(version: str, build: Backend, pkey: str, table: Optional[dict] = None) -> tuple:
    """(sass list, ptx list, nearest release used or None); ([], [], None) when the table has no row."""
    table = table or load()
    rows, nearest = _rows_for(table["cuda_arch"], version, build, pkey, table)
    if not rows:
        return [], [], None
    return rows[0].get("sass", []), rows[0].get("ptx", []), nearest


def cuda_covers(version: str, build: Backend, pkey: str, cc, table: Optional[dict] = None) -> Optional[bool]:
    """Does this CUDA build of this release carry kernels for compute capability `cc`? None when unknown
    (no capability reported, or no row)."""
    if len(cc_key(cc)) < 2:
        return None
    sass, ptx, _ = cuda_arch(version, build, pkey, table)
    if not sass and not ptx:
        return None
    return kernels_for(cc, sass, ptx)


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
