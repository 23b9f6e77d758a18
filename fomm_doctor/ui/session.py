"""The page's own folder: each start of the page makes a fresh private folder inside the results folder and
serves only that (its uploads and the videos it made), never the results folder itself nor anything else
there. Old session folders of the page, and old uploads and videos of a session, are pruned by count; only
folders and files the page named as its own (a session name it makes, a real folder owned by us, never
through a link) are ever deleted.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

from fomm_core.errors import FommError
from fomm_core.private import check_private, private_dir
from fomm_doctor.errors import UserError

KEEP_SESSIONS = 5          # session folders kept in the results folder, this one included
KEEP_RESULTS = 20          # videos kept in a session folder
KEEP_UPLOADS = 20          # upload folders (gradio's, one per file) kept in a session folder
SESSION = re.compile(r"page-\d{8}-\d{6}-[A-Za-z0-9_]{8}")
UPLOAD = re.compile(r"[0-9a-f]{64}")       # gradio keeps each upload in a folder named by its sha256


def open_session(results: Path) -> Path:
    """A new private folder `page-DATE-TIME-RANDOM` in `results` (made if missing), after pruning all but the
    newest KEEP_SESSIONS - 1 earlier ones; FommError when the results folder cannot hold it."""
    results = Path(results)
    try:
        results.mkdir(parents=True, exist_ok=True)
        prune_sessions(results, KEEP_SESSIONS - 1)
        folder = Path(tempfile.mkdtemp(prefix=time.strftime("page-%Y%m%d-%H%M%S-"), dir=results))
    except OSError as err:
        raise FommError(f"cannot create a folder for the page's results in {results} "
                        f"({err.strerror or err}).") from None
    return private_dir(folder)


def _ours(path: Path) -> bool:
    """A session folder the page made: its name, a real folder (not a link), owned by us."""
    if not SESSION.fullmatch(path.name):
        return False
    try:
        check_private(path, os.lstat(path))
    except (OSError, FommError):
        return False
    return True


def prune_sessions(results: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` session folders of the page in `results`; -> those deleted."""
    sessions = sorted((p for p in results.iterdir() if _ours(p)), key=lambda p: p.name)
    gone = sessions[:max(len(sessions) - keep, 0)]
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)   # rmtree never follows links inside it
    return gone


def _age_order(paths: list) -> list:
    def key(p):
        try:
            return os.lstat(p).st_mtime_ns, p.name
        except OSError:
            return 0, p.name
    return sorted(paths, key=key)


def prune_uploads(session: Path, keep: int = KEEP_UPLOADS) -> None:
    """Delete all but the newest `keep` upload folders in `session` (gradio makes one real folder per file;
    links, files and other folders are left alone)."""
    folders = [p for p in session.iterdir() if UPLOAD.fullmatch(p.name) and stat.S_ISDIR(_lmode(p))]
    for path in _age_order(folders)[:max(len(folders) - keep, 0)]:
        shutil.rmtree(path, ignore_errors=True)


def prune_results(session: Path, keep: int = KEEP_RESULTS) -> None:
    """Delete all but the newest `keep` videos the page made in `session` (regular files ending in .mp4)."""
    videos = [p for p in session.glob("*.mp4") if stat.S_ISREG(_lmode(p))]
    for path in _age_order(videos)[:max(len(videos) - keep, 0)]:
        path.unlink(missing_ok=True)


def _lmode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


def upload_path(session: Path, given: str) -> Path:
    """The file an upload of this page is, from the path gradio hands a handler: only a plain file whose real
    place is inside the session folder (gradio checks its own uploads too, but lets a URL through; the page reads
    nothing else); UserError otherwise."""
    path = Path(given)
    try:
        real = Path(os.path.realpath(path))
        ours = path.is_absolute() and real.is_relative_to(os.path.realpath(session)) and \
            stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise UserError(f"{path.name or 'the file'} is not among this page's uploads any more (a page keeps its "
                        f"newest {KEEP_UPLOADS}); upload it again.")
    return path
