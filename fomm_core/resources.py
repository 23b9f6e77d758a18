"""Where the shipped data lives: inside the installed wheel, or at the top of a source checkout."""
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def checkpoints_dir() -> Path:
    """The project's own `checkpoints/` folder (configs, bundled checkpoint, manifest)."""
    installed = _HERE / "_data" / "checkpoints"
    return installed if installed.is_dir() else _HERE.parent / "checkpoints"


def configs_dir() -> Path:
    return checkpoints_dir() / "configs"
