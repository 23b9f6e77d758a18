"""One clear sentence instead of a traceback: the errors commands raise, and the exit code each one means."""
from enum import IntEnum
from typing import Optional


class ExitCode(IntEnum):
    """Every exit status of `fomm-doctor`, so a script can tell a bad flag from a dead network."""
    OK = 0
    PROBLEM = 1        # the command ran and found something wrong: a failing check, a failed verification
    USAGE = 2          # bad input the user can fix: a flag, a file, a missing piece (torch, ffmpeg, a checkpoint)
    NETWORK = 3        # a server could not be reached, or did not give the file it names
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, the shell's own convention


class UserError(Exception):
    """A problem the user can fix. `str(err)` is the one sentence shown; `exit_code` is what the CLI returns."""
    exit_code = ExitCode.USAGE

    def __init__(self, message: str, exit_code: Optional[ExitCode] = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = ExitCode(exit_code)


class NetworkError(UserError):
    """The network failed us (unreachable, timed out, a wrong or endless answer): exit 3, not a usage error."""
    exit_code = ExitCode.NETWORK


def core_sentence(err: BaseException) -> str:
    """A library error's sentence with the flag that applies its way out, e.g. '... instead (--device cpu).'

    fomm_core's errors describe the way out in words and name the setting as `err.setting` (name, value); the
    flag is the command line's spelling of it (a value of '' means the flag alone, e.g. ('no_window', ''))."""
    text = str(err)
    setting = getattr(err, "setting", None)
    if not setting:
        return text
    name, value = setting
    flag = f"--{name.replace('_', '-')}" + (f" {value}" if value else "")
    return f"{text.rstrip('.')} ({flag})."
