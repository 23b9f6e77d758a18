"""The source photos of a live session: one image, or a folder of them that n/p step through."""
from __future__ import annotations

from pathlib import Path

from fomm_core.errors import FommError
from fomm_core.media.images import IMAGE_EXTENSIONS


def list_sources(path) -> list[Path]:
    """An image file -> [it]; a folder -> its images sorted by name (n/p step through them)."""
    path = Path(path).expanduser()
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise FommError(f"the folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        return images
    if not path.is_file():
        raise FommError(f"source image {path} does not exist; give an image file or a folder of images.")
    return [path]
