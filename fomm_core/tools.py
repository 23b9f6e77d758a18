"""Finding external programs (ffmpeg, nvidia-smi, ...) on PATH only, as absolute paths. No torch, no numpy.

    find_tool("ffmpeg")                    # '/usr/bin/ffmpeg', or None
    resolve_tool("ffmpeg")                 # a bare name made absolute via find_tool; a path made absolute

Windows looks in the current folder before PATH (shutil.which does the same, and so does CreateProcess for a
bare name), so a planted `ffmpeg.exe` beside the user's files would run. This lookup skips the current folder,
empty and relative PATH entries on every platform, and callers run the absolute path it returns.
"""
from __future__ import annotations

import os
import sys
from typing import Optional

DEFAULT_PATHEXT = ".COM;.EXE;.BAT;.CMD"


def _is_windows(platform: str) -> bool:
    return platform.startswith("win")


def _current_folder() -> Optional[str]:
    try:
        return os.getcwd()
    except OSError:  # the current folder was deleted
        return None


def _same_folder(a: str, b: Optional[str]) -> bool:
    return b is not None and os.path.normcase(os.path.normpath(a)) == os.path.normcase(os.path.normpath(b))


def _is_absolute(entry: str, windows: bool) -> bool:
    if not windows:
        return entry.startswith("/")
    return entry.startswith(("/", "\\")) or (len(entry) > 2 and entry[1] == ":" and entry[2] in "/\\")


def _search_dirs(path: str, windows: bool, cwd: Optional[str]) -> list:
    """PATH entries worth searching: absolute ones only ('' and '.' mean the current folder)."""
    dirs = []
    for entry in path.split(";" if windows else ":"):
        entry = entry.strip().strip('"') if windows else entry
        if not _is_absolute(entry, windows) or (windows and _same_folder(entry, cwd)):
            continue
        dirs.append(entry)
    return dirs


def _names(name: str, windows: bool, pathext: Optional[str]) -> list:
    if not windows:
        return [name]
    # lower case: Windows matches either way, and so the lookup also runs on case-sensitive disks in tests
    exts = [e.strip().lower() for e in (pathext or os.environ.get("PATHEXT") or DEFAULT_PATHEXT).split(";")]
    exts = [e for e in exts if e]
    if any(name.lower().endswith(e) for e in exts):
        return [name]
    return [name + e for e in exts]


def _join(folder: str, name: str, windows: bool) -> str:
    sep = "\\" if windows and "\\" in folder else "/"
    return folder.rstrip("/\\") + sep + name


def find_tool(name: str, path: Optional[str] = None, platform: Optional[str] = None, cwd: Optional[str] = None,
              pathext: Optional[str] = None) -> Optional[str]:
    """The absolute path of program `name` in a PATH folder, or None; never the current folder.

    path, platform, cwd and pathext default to this process's PATH, sys.platform, current folder and PATHEXT.
    """
    platform = platform or sys.platform
    windows = _is_windows(platform)
    if not name or "/" in name or (windows and "\\" in name):
        return None
    path = os.environ.get("PATH", os.defpath) if path is None else path
    cwd = _current_folder() if cwd is None else cwd
    for folder in _search_dirs(path, windows, cwd):
        for candidate in _names(name, windows, pathext):
            full = _join(folder, candidate, windows)
            if os.path.isfile(full) and (windows or os.access(full, os.X_OK)):
                return full
    return None


def resolve_tool(exe: str) -> Optional[str]:
    """A program given by name ('ffmpeg') or path -> an absolute path (None when a bare name is not on PATH)."""
    if os.path.isabs(exe):
        return exe
    if os.sep in exe or (os.altsep and os.altsep in exe):
        return os.path.abspath(exe)  # a relative path was written on purpose (e.g. in IMAGEIO_FFMPEG_EXE)
    return find_tool(exe)
