"""What the web page does, as plain functions over the CLI's own: the same input checks, model loading,
pipeline, fetch and checks as `animate`, `checkpoints fetch` and `check`. Nothing here knows gradio; a
problem is a UserError or FommError with the CLI's sentence, which the page shows as it is.

progress(fraction or None, text) reports long work; the page turns it into its progress bar.
"""
from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from fomm_doctor.errors import UserError

Progress = Callable[[Optional[float], str], None]
AUTO_CHECKPOINT = "best face model present"
MODES = ("relative", "absolute", "avd")
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
    and measuring `fast` are the slow part of a first run; the next run with the same choices skips both)."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._loaded = None            # (key, animator, size)
        self._count = 0

    def _animator(self, request: AnimateRequest, progress: Progress):
        """(animator, model size, sentences about it) for the request, loaded once for the same choices."""
        from fomm_doctor.commands.animate import load_model
        name = None if request.checkpoint in (None, "", AUTO_CHECKPOINT) else request.checkpoint
        key = (name, request.mode, request.precision)
        if self._loaded is None or self._loaded[0] != key:
            self._loaded = None                      # the old model's memory goes before the new one loads
            progress(None, "loading the checkpoint")
            animator, size, resolved = load_model(
                name, None, "auto", request.precision, mode=request.mode,
                on_step=lambda done, total, what: progress(done / max(total, 1), what))
            about = [f"checkpoint {resolved.path.name} ({animator.FAMILY}) at {size}x{size}; inference path: "
                     f"{animator.path}", resolved.note, animator.note]
            self._loaded = (key, animator, size, [a for a in about if a])
        return self._loaded[1:]

    def _output(self, request: AnimateRequest) -> Path:
        self._count += 1
        return self.out_dir / f"{_safe_stem(request.source)}-{_safe_stem(request.driving)}-{self._count}.mp4"

    def animate(self, request: AnimateRequest, progress: Progress) -> Animated:
        """One `fomm-doctor animate`, its checks first; -> the video, the closing sentence and the notes."""
        from fomm_core.inference.pipeline import animate_video
        from fomm_doctor.commands.animate import check_inputs, result_sentence
        if not request.source:
            raise UserError("give a source photo first (upload one, or take a webcam snapshot).")
        if not request.driving:
            raise UserError("give a driving video first.")
        with self._lock:
            output = self._output(request)
            info = check_inputs(Path(request.source), Path(request.driving), output, request.mode, "auto",
                                 request.precision, 4)
            animator, size, about = self._animator(request, progress)
            total = max(info.frame_count, 1)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                result = animate_video(request.source, request.driving, output, animator, size=size,
                                       find_best_frame=request.find_best_frame, crop=request.crop,
                                       paste_back=request.paste_back,
                                       progress=lambda done, est: progress(done / max(est, total),
                                                                           f"animating: {done} frames"))
        notes = about + [str(w.message) for w in caught]
        if request.find_best_frame:
            notes.append(f"started from driving frame {result.best_frame}")
        return Animated(result.path, result_sentence(result, request.crop), notes)


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
    from fomm_doctor.commands.checkpoints import fetched_sentence
    if not name:
        raise UserError("choose a checkpoint to fetch.")

    def on_bytes(done, total):
        mb = f"{done / 1e6:,.1f}" + (f" of {total / 1e6:,.1f} MB" if total else " MB")
        progress(done / total if total else None, f"fetching {name}: {mb}")

    return fetched_sentence(fetch(name, progress=on_bytes))


CHECK_COLUMNS = ("check", "status", "what was found", "fix")


def check_rows(network: bool = False) -> list[list[str]]:
    """`fomm-doctor check` as table rows (CHECK_COLUMNS); without `network` the mirrors are not timed."""
    from fomm_doctor.checks import run_checks
    return [[r.id, r.status, r.summary, r.fix or ""] for r in run_checks(offline=not network)]
