"""What the web page does, as plain functions over the CLI's own: the same input checks, model loading,
pipeline, fetch and checks as `animate`, `checkpoints fetch` and `check`. Nothing here knows gradio; a
problem is a UserError or FommError with the CLI's sentence, which the page shows as it is.

progress(fraction or None, text) reports long work; the page turns it into its progress bar.
"""
from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from fomm_doctor import animation
from fomm_doctor.errors import UserError
from fomm_doctor.ui import session
from fomm_doctor.units import byte_size

Progress = Callable[[Optional[float], str], None]
AUTO_CHECKPOINT = "best face model present"
MODES = tuple(m for m in animation.MODES if m != "standard")  # one name for absolute motion on the page
PRECISIONS = ("auto", "fast", "fp32", "bf16", "fp16", "int8")


@dataclass
class AnimateRequest:
    source: Optional[str]          # the photo's path (an upload or a webcam snapshot), None when not given
    driving: Optional[str]         # the driving video's path
    checkpoint: Optional[str] = None   # a name from checkpoint_choices(); None or AUTO_CHECKPOINT: the default
    mode: str = "relative"
    find_best_frame: bool = False
    crop: bool = True
    paste_back: bool = False
    precision: str = "auto"


@dataclass
class Animated:
    path: Path                     # the mp4 written
    sentence: str                  # the CLI's closing line
    notes: list                    # sentences worth showing (no face found, how the start frame was chosen)


def _safe_stem(path: str) -> str:
    """A file-name part from an uploaded file's name: letters, digits, '-' and '_' only, at most 40."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(path).stem).strip("_")
    return stem[:40] or "file"


class Animations:
    """Animates requests into `out_dir`, one at a time, keeping the last model loaded (loading a checkpoint
    and measuring `fast` are the slow part of a first run; the next run with the same choices skips both).
    A video never replaces a file already there; `keep` videos at most stay (the oldest go first)."""

    def __init__(self, out_dir: Path, keep: int = session.KEEP_RESULTS):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._lock = threading.Lock()
        self._models = animation.Models()
        self._told: set = set()          # sentences about a model, said with its first animation only
        self._count = 0

    def _output(self, request: AnimateRequest) -> Path:
        """A name not taken yet (a file of an earlier run, or one planted there, is never written over)."""
        session.prune_results(self.out_dir, self.keep - 1)
        while True:
            self._count += 1
            path = self.out_dir / f"{_safe_stem(request.source)}-{_safe_stem(request.driving)}-{self._count}.mp4"
            if not os.path.lexists(path):
                return path

    def _load(self, choice: animation.ModelChoice, progress: Progress) -> tuple:
        """(the loaded model, the sentences about it not yet shown)."""
        progress(None, "loading the checkpoint")
        loaded = self._models.load(choice, on_step=lambda done, total, what: progress(done / max(total, 1), what))
        about = [s for s in [loaded.describe(), *loaded.notes] if s not in self._told]
        self._told.update(about)
        return loaded, about

    def animate(self, request: AnimateRequest, progress: Progress) -> Animated:
        """One `fomm-doctor animate`, its checks first; -> the video, the closing sentence and the notes."""
        if not request.source:
            raise UserError("give a source photo first (upload one, or take a webcam snapshot).")
        if not request.driving:
            raise UserError("give a driving video first.")
        name = None if request.checkpoint in (None, "", AUTO_CHECKPOINT) else request.checkpoint
        choice = animation.ModelChoice(name, precision=request.precision, mode=request.mode)
        layout = animation.Layout(find_best_frame=request.find_best_frame, crop=request.crop,
                                  paste_back=request.paste_back)
        source, driving = Path(request.source), Path(request.driving)
        with self._lock:
            output = self._output(request)
            info = animation.check_request(source, driving, output, choice, layout)
            loaded, about = self._load(choice, progress)
            total = max(info.frame_count, 1)
            done = animation.animate(source, driving, output, loaded, layout,
                                     progress=lambda n, est: progress(n / max(est, total), f"animating: {n} frames"))
        return Animated(done.result.path, done.sentence, about + done.told())


def checkpoint_choices() -> list[str]:
    """AUTO_CHECKPOINT, then the name of every checkpoint present on this machine."""
    from fomm_doctor.checkpoints.store import list_checkpoints
    return [AUTO_CHECKPOINT] + [row["name"] for row in list_checkpoints(hash_files=False) if row["present"]]


def fetchable() -> list[str]:
    """Names of the published checkpoints not yet here (what the fetch button can get)."""
    from fomm_doctor.checkpoints.store import list_checkpoints
    return [row["name"] for row in list_checkpoints(hash_files=False) if row["sources"] and not row["present"]]


def fetch_checkpoint(name: Optional[str], progress: Progress) -> str:
    """`fomm-doctor checkpoints fetch NAME`; -> the sentence saying where it is and how it was verified."""
    from fomm_doctor.checkpoints.fetch import fetch
    if not name:
        raise UserError("choose a checkpoint to fetch.")

    def on_bytes(done, total):
        mb = byte_size(done) + (f" of {byte_size(total)}" if total else "")
        progress(done / total if total else None, f"fetching {name}: {mb}")

    return fetch(name, progress=on_bytes).sentence()


CHECK_COLUMNS = ("check", "status", "what was found", "fix")


def check_rows(network: bool = False) -> list[list[str]]:
    """`fomm-doctor check` as table rows (CHECK_COLUMNS); without `network` the mirrors are not timed."""
    from fomm_doctor.checks import run_checks
    return [[r.id, r.status, r.summary, r.fix or ""] for r in run_checks(offline=not network)]
