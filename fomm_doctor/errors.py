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
