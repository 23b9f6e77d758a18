"""Small helpers every check shares: the platform's way of spelling commands, and sizes for people.
(Versions are compared with fomm_doctor.install.builds.version_key.)"""
from fomm_doctor.install.builds import os_name


def python_cmd(platform: str) -> str:
    """How to call the Python at hand: the `py` launcher on Windows (it follows an active venv), else python3."""
    return "py" if os_name(platform) == "windows" else "python3"


def pip_cmd(platform: str, args: str) -> str:
    return f"{python_cmd(platform)} -m pip {args}"


def human_bytes(n) -> str:
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
