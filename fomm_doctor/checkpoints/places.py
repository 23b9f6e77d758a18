"""Where checkpoint files and their small JSON files live.

Folders searched, in this order:
  1. a folder given by the caller (`--dir`),
  2. the per-user data folder: $FOMM_CHECKPOINTS_DIR, else $FOMM_DOCTOR_HOME/checkpoints, else platformdirs'
     user data folder for fomm-doctor, then checkpoints ($XDG_DATA_HOME or ~/.local/share on Linux,
     ~/Library/Application Support on macOS, %LOCALAPPDATA% on Windows),
  3. the project's own `checkpoints/` (the bundled, self-trained checkpoint).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from platformdirs import PlatformDirs

from fomm_doctor.errors import UserError

APP = "fomm-doctor"


def user_data_dir() -> Path:
    """The per-user checkpoints folder (not created here)."""
    direct = os.environ.get("FOMM_CHECKPOINTS_DIR")
    if direct:
        return Path(direct).expanduser()
    home = os.environ.get("FOMM_DOCTOR_HOME")
    if home:
        return Path(home).expanduser() / "checkpoints"
    return Path(PlatformDirs(APP, appauthor=False).user_data_dir) / "checkpoints"


def project_dir() -> Path:
    from fomm_core.resources import checkpoints_dir
    return checkpoints_dir()


def store_dir(override=None) -> Path:
    """Where fetch/add/slim write: the --dir folder, else the per-user folder."""
    return Path(override).expanduser() if override else user_data_dir()


def checkpoint_dirs(override=None) -> list[Path]:
    """Folders searched for checkpoint files, first match wins (duplicates removed)."""
    dirs, seen = [], set()
    for d in ([Path(override).expanduser()] if override else []) + [user_data_dir(), project_dir()]:
        key = os.path.normcase(str(d.resolve() if d.exists() else d))
        if key not in seen:
            seen.add(key)
            dirs.append(d)
    return dirs


def read_json(path: Path, default):
    """A small JSON file's data; `default` when it does not exist; UserError naming it when unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable JSON ({type(exc).__name__}); fix or delete it.") from None


def write_json(path: Path, data) -> None:
    """Write a small JSON file atomically (a crash leaves the old one or the new one, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
