"""The library's one-sentence errors: bad input the caller can fix (the CLI prints them, exit code 2)."""
from typing import Optional, Tuple


class FommError(Exception):
    """Bad input or a mismatch, explained in one sentence (`str(err)`), e.g. a checkpoint that fits another config.

    The sentence describes the way out in the library's own terms ("run it on the CPU"); `setting`, when given,
    names the setting that takes it as (name, value), e.g. ("device", "cpu"), so a front end can add its own
    spelling of it (a command line adds `--device cpu`, a page names its control).
    """

    def __init__(self, message: str, *, setting: Optional[Tuple[str, str]] = None):
        super().__init__(message)
        self.setting = setting
