"""One clear sentence instead of a traceback: the errors commands raise for bad input or a missing piece."""


class UserError(Exception):
    """A problem the user can fix. `str(err)` is the one sentence shown; `exit_code` is what the CLI returns."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def pip_command(args: str) -> str:
    """`py -m pip ...` on Windows, `python3 -m pip ...` elsewhere (the form that targets the right interpreter)."""
    import sys
    return f"py -m pip {args}" if sys.platform == "win32" else f"{sys.executable or 'python3'} -m pip {args}"


def require_torch():
    """Import torch, or raise a UserError that names the command that installs the right build."""
    try:
        import torch  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install ("DLL load failed")
        reason = "is not installed" if isinstance(exc, ModuleNotFoundError) else f"failed to import ({exc})"
        extra = pip_command('install "fomm-doctor[torch]"')
        raise UserError(
            f"PyTorch {reason}; run `fomm-doctor install --yes` to install the right build for this machine "
            f"(or `{extra}`).",
            exit_code=2,
        ) from None
    return torch
