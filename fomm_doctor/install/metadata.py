"""What a wheel is, from its metadata rather than its name: a plain `torch-2.14.1-...-manylinux_2_28_x86_64.whl`
on PyPI is a CUDA 13 build (it requires `cuda-toolkit==13.0.3`), while `torch-2.13.0+cpu-...` requires no
CUDA package at all. The Requires-Dist lines come from the index's PEP 658 `.metadata` file where it offers
one, else from the wheel's own `*.dist-info/METADATA` after download and before install.
"""
import re
import zipfile
from email.parser import HeaderParser
from pathlib import Path
from typing import Optional

from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement

from fomm_doctor.install.backend import CPU, Backend
from fomm_doctor.install.machine import Interpreter

MAX_METADATA = 4 * 1024 * 1024  # a METADATA file is kilobytes; more is not a metadata file


def requires_dist(text: str) -> list:
    """The Requires-Dist values of a METADATA file (headers only; the description is never parsed)."""
    head = text.split("\n\n", 1)[0]
    return [v.strip() for v in HeaderParser().parsestr(head + "\n\n").get_all("Requires-Dist") or []]


def wheel_metadata(path: Path) -> str:
    """The METADATA text inside a wheel (read from the zip's directory, not by unpacking)."""
    with zipfile.ZipFile(path) as z:
        names = [i for i in z.infolist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", i.filename)]
        if len(names) != 1 or names[0].file_size > MAX_METADATA:
            raise ValueError(f"{Path(path).name} has no single readable .dist-info/METADATA")
        return z.read(names[0]).decode("utf-8", "replace")


def marker_env(py: Interpreter) -> dict:
    """PEP 508 marker variables of the target interpreter (which may not be the one running us)."""
    system = {"win32": "Windows", "darwin": "Darwin"}.get(py.platform, "Linux")
    machine = py.machine
    if system == "Linux" and machine.lower() == "arm64":
        machine = "aarch64"
    return {"platform_system": system, "sys_platform": py.platform, "platform_machine": machine,
            "python_version": py.minor, "python_full_version": py.version,
            "implementation_name": py.implementation, "os_name": "nt" if py.platform == "win32" else "posix",
            "platform_python_implementation": "CPython", "platform_release": "", "platform_version": "",
            "implementation_version": py.version, "extra": ""}


def _applies(req: Requirement, env: dict) -> bool:
    if req.marker is None:
        return True
    try:
        return req.marker.evaluate(env)
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
        return False


def _pinned_cuda(req: Requirement) -> Optional[Backend]:
    """'cuda-toolkit[...]==13.0.3' or 'nvidia-cuda-runtime-cu12==12.4.127' -> cu130 / cu124."""
    for spec in req.specifier:
        if spec.operator in ("==", "===", "~="):
            parts = re.findall(r"\d+", spec.version)
            if len(parts) >= 2:
                return Backend.parse(f"cu{parts[0]}{parts[1]}")
    return None


def build_from_requires(reqs: list, py: Interpreter) -> Backend:
    """The build the requirements make for this target: CPU when no CUDA package applies, else cuNNN (from the
    pinned CUDA runtime or toolkit; cuNN0 from a `-cuNN` package name; a CUDA build of unknown version from an
    unpinned toolkit)."""
    env = marker_env(py)
    exact, family = None, None
    for text in reqs:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if not _applies(req, env):
            continue
        if name in ("cuda-toolkit", "nvidia-cuda-runtime", "nvidia-cuda-runtime-cu11", "nvidia-cuda-runtime-cu12",
                    "nvidia-cuda-runtime-cu13"):
            exact = exact or _pinned_cuda(req)
        m = re.match(r"nvidia-.+-cu(\d+)$", name)
        if m or name == "cuda-toolkit":
            family = family or Backend.parse(f"cu{m.group(1)}0" if m else "cuda")
    return exact or family or CPU
