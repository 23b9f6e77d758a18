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
