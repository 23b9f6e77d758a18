"""One module per command: each parses its options, calls the modules that do the work, and renders.

What every command shares is here.
"""
import sys

from fomm_doctor.checks.common import pip_cmd
from fomm_doctor.errors import UserError


def require_torch():
    """Import torch, or raise a UserError that names the command that installs the right build."""
    try:
        import torch  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install ("DLL load failed")
        reason = "is not installed" if isinstance(exc, ModuleNotFoundError) else f"failed to import ({exc})"
        extra = pip_cmd(sys.platform, 'install "fomm-doctor[torch]"')
        raise UserError(
            f"PyTorch {reason}; run `fomm-doctor install --yes` to install the right build for this machine "
            f"(or `{extra}`).",
        ) from None
    return torch
