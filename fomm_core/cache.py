"""The per-user cache folder, one place for every cached thing (downloads, int8 models, the measured path choice).

    $FOMM_DOCTOR_CACHE when set, else platformdirs' user cache folder for fomm-doctor:
    $XDG_CACHE_HOME (or ~/.cache)/fomm-doctor on Linux, ~/Library/Caches/fomm-doctor on macOS,
    %LOCALAPPDATA%\\fomm-doctor on Windows (opinion=False: no extra `Cache` level, so downloads begun before
    platformdirs was used still resume).
"""
from __future__ import annotations

import os
from pathlib import Path

from platformdirs import PlatformDirs


def user_cache_dir(*parts: str) -> Path:
    """The cache root, or a folder inside it (not created here)."""
    env = os.environ.get("FOMM_DOCTOR_CACHE")
    if env:
        root = Path(env)
    else:
        root = Path(PlatformDirs("fomm-doctor", appauthor=False, opinion=False).user_cache_dir)
    return root.joinpath(*parts)


def downloads_dir() -> Path:
    """Where partial downloads wait to be resumed: one folder for wheels and checkpoints alike, so a file keyed
    by its sha256 continues whichever command began it."""
    return user_cache_dir("downloads")
