"""Where the original code of a family is looked for: a variable naming its folder, else the folder beside this
checkout that the project keeps it in (shared/reference/NAME)."""
from __future__ import annotations

import os
from pathlib import Path


def reference_folder(variable: str, name: str) -> Path | None:
    """$variable when set, else, in a source checkout, shared/reference/`name` beside it (it may not exist); None
    for an installed package without the variable."""
    given = os.environ.get(variable)
    if given:
        return Path(given).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / "pyproject.toml").is_file():
        return None
    return checkout.parent / "shared" / "reference" / name


def liveportrait_reference_dir() -> Path | None:
    """Where the original LivePortrait code is looked for (it may not exist): $FOMM_LIVEPORTRAIT_REFERENCE, else,
    in a source checkout, shared/reference/liveportrait beside it; None for an installed package without it."""
    return reference_folder("FOMM_LIVEPORTRAIT_REFERENCE", "liveportrait")


def holds_the_code(folder) -> bool:
    """Whether `folder` (None: not looked for) holds the original LivePortrait code."""
    return folder is not None and (Path(folder) / "src" / "modules" / "spade_generator.py").is_file()
