"""The library's one-sentence errors: bad input the caller can fix (the CLI prints them, exit code 2)."""


class FommError(Exception):
    """Bad input or a mismatch, explained in one sentence (`str(err)`), e.g. a checkpoint that fits another config."""
