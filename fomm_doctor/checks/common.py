"""Small helpers every check shares: version comparison and the platform's way of spelling commands."""
import re

from fomm_doctor.install.builds import os_name  # noqa: F401  (one spelling of the OS name for checks and install)


def version_tuple(text) -> tuple:
    """'2.13.0+cpu' -> (2, 13, 0); '580.65.06' -> (580, 65, 6); None or junk -> ()."""
    if not text:
        return ()
    match = re.match(r"\s*(\d+(?:\.\d+)*)", str(text))
    return tuple(int(p) for p in match.group(1).split(".")) if match else ()


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
