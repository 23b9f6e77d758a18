"""Facts about the *target* interpreter (`--python PATH`), asked of that interpreter in a subprocess.

The doctor may run on one Python and install into another, so tags must come from the target: its own
`packaging.tags.sys_tags()` when it has `packaging`, otherwise tags computed here from what it reports
(version, bitness, OS, machine, glibc / macOS version). The probe script runs on Python 2.7 too.
"""
import json
import subprocess
import sys
from typing import Optional

from fomm_doctor.errors import UserError

MARK = "FOMM_INTERP_JSON:"

# Python 2.7-compatible on purpose: a user's old interpreter must still answer.
PROBE = r"""
import json, platform, struct, sys, os
out = {
    "executable": sys.executable,
    "version": "%d.%d.%d" % sys.version_info[:3],
    "implementation": getattr(getattr(sys, "implementation", None), "name", platform.python_implementation().lower()),
    "bits": struct.calcsize("P") * 8,
    "platform": sys.platform,
    "machine": platform.machine(),
    "prefix": sys.prefix,
    "in_venv": getattr(sys, "base_prefix", getattr(sys, "real_prefix", sys.prefix)) != sys.prefix,
    "gil_disabled": bool(getattr(sys, "_is_gil_enabled", lambda: True)() is False),
    "glibc": None, "macos": None, "tags": None, "pip": None, "torch": None,
}
try:
    lib, ver = platform.libc_ver()
    if lib == "glibc":
        out["glibc"] = ver
except Exception:
    pass
if sys.platform == "darwin":
    out["macos"] = platform.mac_ver()[0]
try:
    from packaging import tags
    out["tags"] = [str(t) for t in tags.sys_tags()]
except Exception:
    pass
try:
    import pip
    out["pip"] = pip.__version__
except Exception:
    pass
print("FOMM_INTERP_JSON:" + json.dumps(out))
"""


def probe_interpreter(python: Optional[str] = None, timeout: float = 30.0) -> dict:
    """Facts of `python` (default: this interpreter). Raises UserError when it cannot be run."""
    exe = python or sys.executable
    try:
        proc = subprocess.run([exe, "-c", PROBE], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserError(f"Could not run the Python at {exe} ({exc}); pass --python with the path of a working "
                        f"python executable.") from None
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            facts = json.loads(line[len(MARK):])
            if not facts.get("tags"):
                facts["tags"] = compute_tags(facts)
                facts["tags_source"] = "computed"
            else:
                facts["tags_source"] = "packaging"
            return facts
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    raise UserError(f"The Python at {exe} did not answer the probe ({tail[0]}); pass --python with a working "
                    f"python executable.")


def _arch(facts: dict) -> str:
    m = (facts.get("machine") or "").lower()
    bits = facts.get("bits", 64)
    if m in ("amd64", "x86_64", "x64"):
        return "x86_64" if bits == 64 else "i686"
    if m in ("arm64", "aarch64"):
        return "aarch64" if bits == 64 else "armv7l"
    if m in ("i386", "i686", "x86"):
        return "i686"
    return m or "x86_64"


def platform_tags(facts: dict) -> list:
    """Platform tags, most specific first (the order pip prefers)."""
    plat = facts.get("platform", "linux")
    arch = _arch(facts)
    if plat == "win32":
        if arch == "aarch64":
            return ["win_arm64"]
        return ["win_amd64"] if facts.get("bits", 64) == 64 else ["win32"]
    if plat == "darwin":
        major, minor = (list(map(int, (facts.get("macos") or "11.0").split(".")[:2])) + [0])[:2]
        mac_arch = "arm64" if arch == "aarch64" else "x86_64"
        binaries = {"arm64": ["arm64", "universal2"], "x86_64": ["x86_64", "intel", "fat64", "fat32",
                                                                   "universal2", "universal"]}[mac_arch]
        versions = [(v, 0) for v in range(major, 10, -1)] if major >= 11 else []
        versions += [(10, m) for m in range(minor if major == 10 else 16, -1, -1)]
        if mac_arch == "arm64":
            versions = [v for v in versions if v >= (11, 0)] + ([(10, 16)] if major >= 11 else [])
        return [f"macosx_{a}_{b}_{binary}" for a, b in versions for binary in binaries]
    tags = []
    glibc = facts.get("glibc")
    if glibc:
        gmaj, gmin = (list(map(int, glibc.split(".")[:2])) + [0])[:2]
        legacy = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
        for m in range(gmin, 4, -1) if gmaj == 2 else []:
            tags.append(f"manylinux_2_{m}_{arch}")
            if (2, m) in legacy:
                tags.append(f"{legacy[(2, m)]}_{arch}")
    tags.append(f"linux_{arch}")
    return tags


def compute_tags(facts: dict) -> list:
    """packaging.tags.sys_tags() for a CPython described by `facts` (the target lacks `packaging`)."""
    major, minor = map(int, facts["version"].split(".")[:2])
    plats = platform_tags(facts)
    if facts.get("implementation", "cpython") != "cpython":
        return [f"py{major}{minor}-none-{p}" for p in plats] + [f"py{major}-none-any"]
    cp = f"cp{major}{minor}"
    # old CPython ABIs carried flags: cp27mu (wide unicode), cp36m (pymalloc) until 3.8
    abi = cp + ("t" if facts.get("gil_disabled") else "mu" if major == 2 else "m" if minor < 8 else "")
    out = [f"{cp}-{abi}-{p}" for p in plats]
    if major == 3 and not facts.get("gil_disabled"):
        out += [f"{cp}-abi3-{p}" for p in plats]
    out += [f"{cp}-none-{p}" for p in plats]
    if major == 3 and not facts.get("gil_disabled"):
        out += [f"cp3{m}-abi3-{p}" for m in range(minor - 1, 1, -1) for p in plats]
    pys = [f"py{major}{m}" for m in range(minor, -1, -1)]
    out += [f"{py}-none-{p}" for py in [f"py{major}{minor}", f"py{major}"] + pys[1:] for p in plats]
    out += [f"{cp}-none-any", f"py{major}{minor}-none-any", f"py{major}-none-any"]
    out += [f"{py}-none-any" for py in pys[1:]]
    seen, tags = set(), []
    for t in out:
        if t not in seen:
            seen.add(t)
            tags.append(t)
    return tags
