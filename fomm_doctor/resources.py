"""Where the doctor's shipped data lives: inside the installed wheel, or at the top of a source checkout."""
import json
from functools import lru_cache
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def wheels_index_path() -> Path:
    installed = _HERE / "_data" / "wheels_index.json"
    return installed if installed.is_file() else _HERE.parent / "wheels_index.json"


@lru_cache(maxsize=1)
def load_wheels_index() -> dict:
    """The parsed `wheels_index.json` (torch releases, CUDA/driver tables, mirrors)."""
    with open(wheels_index_path(), encoding="utf-8") as f:
        return json.load(f)
