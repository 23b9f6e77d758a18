"""Apple: Apple silicon has a GPU torch uses through MPS, with the plain PyPI build.

probe_apple(platform, machine) -> {"mps": bool}
"""
import sys


def probe_apple(platform=sys.platform, machine=None) -> dict:
    """Apple silicon (darwin + arm64) has MPS through the plain PyPI torch build."""
    if machine is None:
        import platform as _platform
        machine = _platform.machine()
    return {"mps": platform == "darwin" and str(machine).lower() in ("arm64", "aarch64")}
