"""Small helpers every check shares: the platform's way of spelling commands.
(Versions are compared with fomm_doctor.install.builds.version_key.)"""
from fomm_doctor.install.builds import os_name


def python_cmd(platform: str) -> str:
    """How to call the Python at hand: the `py` launcher on Windows (it follows an active venv), else python3."""
    return "py" if os_name(platform) == "windows" else "python3"


def pip_cmd(platform: str, args: str) -> str:
    return f"{python_cmd(platform)} -m pip {args}"

