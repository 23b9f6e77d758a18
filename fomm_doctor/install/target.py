"""Facts about the *target* interpreter (`--python PATH`), asked of that interpreter in a subprocess.

The doctor may run on one Python and install into another, so tags must come from the target: its own
`packaging.tags.sys_tags()` when it has `packaging`, otherwise tags computed here from what it reports
(version, bitness, OS, machine, glibc / macOS version). The probe script runs on Python 2.7 too.
"""
import json
import re
import subprocess
import sys
from typing import Optional

from fomm_doctor.errors import UserError
from fomm_doctor.install.machine import AmdGpu, Gpus, Interpreter, Machine, Nvidia, NvidiaGpu

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


def probe_interpreter(python: Optional[str] = None, timeout: float = 30.0) -> Interpreter:
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
            return Interpreter.from_facts(facts)
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
        return _windows_tags(arch, facts.get("bits", 64))
    if plat == "darwin":
        return _macos_tags(arch, facts.get("macos") or "11.0")
    return _linux_tags(arch, facts.get("glibc"))


def _windows_tags(arch: str, bits: int) -> list:
    if arch == "aarch64":
        return ["win_arm64"]
    return ["win_amd64"] if bits == 64 else ["win32"]


def _macos_tags(arch: str, macos: str) -> list:
    major, minor = (list(map(int, macos.split(".")[:2])) + [0])[:2]
    mac_arch = "arm64" if arch == "aarch64" else "x86_64"
    binaries = {"arm64": ["arm64", "universal2"], "x86_64": ["x86_64", "intel", "fat64", "fat32",
                                                               "universal2", "universal"]}[mac_arch]
    versions = [(v, 0) for v in range(major, 10, -1)] if major >= 11 else []
    versions += [(10, m) for m in range(minor if major == 10 else 16, -1, -1)]
    if mac_arch == "arm64":
        versions = [v for v in versions if v >= (11, 0)] + ([(10, 16)] if major >= 11 else [])
    return [f"macosx_{a}_{b}_{binary}" for a, b in versions for binary in binaries]


def _linux_tags(arch: str, glibc: Optional[str]) -> list:
    tags = []
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
    tags = _cpython_tags(major, minor, bool(facts.get("gil_disabled")), plats) + _generic_tags(major, minor, plats)
    return list(dict.fromkeys(tags))


def _cpython_tags(major: int, minor: int, gil_disabled: bool, plats: list) -> list:
    """cpXY-<abi>, cpXY-abi3 and cpXY-none tags, then older stable-ABI (abi3) ones."""
    cp = f"cp{major}{minor}"
    # old CPython ABIs carried flags: cp27mu (wide unicode), cp36m (pymalloc) until 3.8
    abi = cp + ("t" if gil_disabled else "mu" if major == 2 else "m" if minor < 8 else "")
    stable = major == 3 and not gil_disabled
    out = [f"{cp}-{abi}-{p}" for p in plats]
    out += [f"{cp}-abi3-{p}" for p in plats] if stable else []
    out += [f"{cp}-none-{p}" for p in plats]
    out += [f"cp3{m}-abi3-{p}" for m in range(minor - 1, 1, -1) for p in plats] if stable else []
    return out


def _generic_tags(major: int, minor: int, plats: list) -> list:
    """pyXY-none-<platform> tags, then the -any ones."""
    pys = [f"py{major}{m}" for m in range(minor, -1, -1)]
    out = [f"{py}-none-{p}" for py in [f"py{major}{minor}", f"py{major}"] + pys[1:] for p in plats]
    out += [f"cp{major}{minor}-none-any", f"py{major}{minor}-none-any", f"py{major}-none-any"]
    return out + [f"{py}-none-any" for py in pys[1:]]


# ---- planning for another machine ------------------------------------------------------------------------

def facts_from_platform_tag(tag: str, python_version: str) -> Interpreter:
    """Interpreter facts for `--platform TAG --python-version X.Y` (pip's platform tags), as if probed there."""
    tag = tag.strip().lower()
    m = re.fullmatch(r"(?:manylinux_(\d+)_(\d+)|manylinux2014|linux)_(x86_64|aarch64|i686)", tag)
    mac = re.fullmatch(r"macosx_(\d+)_(\d+)_(arm64|x86_64|universal2)", tag)
    if m:
        glibc = f"{m.group(1)}.{m.group(2)}" if m.group(1) else ("2.17" if tag.startswith("manylinux2014") else "2.28")
        facts = {"platform": "linux", "machine": m.group(3), "bits": 32 if m.group(3) == "i686" else 64,
                 "glibc": glibc, "macos": None}
    elif tag in ("win_amd64", "win32", "win_arm64"):
        facts = {"platform": "win32", "machine": {"win_amd64": "AMD64", "win32": "x86", "win_arm64": "ARM64"}[tag],
                 "bits": 32 if tag == "win32" else 64, "glibc": None, "macos": None}
    elif mac:
        facts = {"platform": "darwin", "machine": "arm64" if mac.group(3) == "arm64" else "x86_64", "bits": 64,
                 "glibc": None, "macos": f"{mac.group(1)}.{mac.group(2)}"}
    else:
        raise UserError(f"--platform {tag} is not a platform tag we know; use one of manylinux_2_28_x86_64, "
                        f"manylinux_2_28_aarch64, win_amd64, win32, macosx_11_0_arm64, macosx_10_13_x86_64.")
    if not re.fullmatch(r"3\.\d{1,2}(\.\d+)?|2\.7(\.\d+)?", python_version or ""):
        raise UserError(f"--python-version must look like 3.12, not {python_version!r}.")
    version = python_version if python_version.count(".") == 2 else python_version + ".0"
    facts.update({"version": version, "implementation": "cpython", "executable": None, "in_venv": None,
                  "pip": None, "prefix": "", "gil_disabled": False})
    return Interpreter.from_facts(dict(facts, tags=compute_tags(facts), tags_source="--platform", platform_tag=tag))


def gpus_from_options(driver: Optional[str], gpu_arch: Optional[str]) -> Gpus:
    """`--driver 535.104.05|none` and `--gpu-arch 8.6,7.5` (NVIDIA compute capabilities) or `gfx1100` (AMD)."""
    if driver is not None and driver.lower() != "none" and not re.fullmatch(r"\d{3}(\.\d+){1,2}", driver):
        raise UserError(f"--driver must be an NVIDIA driver version such as 535.104.05, or none; not {driver!r}.")
    nvidia, amd = [], []
    for item in [a.strip() for a in (gpu_arch or "").split(",") if a.strip()]:
        if re.fullmatch(r"gfx[0-9a-f]{3,4}", item.lower()):
            amd.append(AmdGpu(f"AMD {item.lower()}", item.lower()))
        elif re.fullmatch(r"\d{1,2}\.\d", item):
            nvidia.append(NvidiaGpu(f"GPU sm_{item.replace('.', '')}", item))
        else:
            raise UserError(f"--gpu-arch takes compute capabilities like 8.6 or AMD targets like gfx1100, not {item!r}.")
    version = None if driver is None or driver.lower() == "none" else driver
    if nvidia and not version:
        raise UserError("--gpu-arch names an NVIDIA GPU: give its driver too (--driver 550.54.14).")
    return Gpus(Nvidia(version, tuple(nvidia)), tuple(amd))


def machine(opts, probe_gpus, *, py: Optional[Interpreter] = None) -> Machine:
    """The Machine a plan is for: this one (its interpreter probed here, its GPUs by `probe_gpus()`), or the one
    `--platform/--python-version/--driver/--gpu-arch` describe. Options given override what was probed."""
    other = opts.other_machine
    if py is None:
        if other:
            if not (opts.platform and opts.python_version):
                raise UserError("Planning for another machine needs both --platform and --python-version.")
            py = facts_from_platform_tag(opts.platform, opts.python_version)
        else:
            py = probe_interpreter(opts.python)
    if other or opts.driver is not None or opts.gpu_arch:
        return Machine(py, gpus_from_options(opts.driver, opts.gpu_arch))
    return Machine(py, probe_gpus())
