"""What the web page does, as plain functions over the CLI's own: the same input checks, model loading,
pipeline, fetch, add and checks as `animate`, `checkpoints fetch`, `checkpoints add` and `check`. Nothing here
knows gradio; a problem is a UserError or FommError with the CLI's sentence, which the page shows as it is.

progress(fraction or None, text) reports long work; `Run` keeps the latest report of an animation running on a
thread of its own, so the page can show it every moment and stop it between two batches.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
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
    model: str = ""                # "checkpoint NAME (FAMILY) at 256x256": the name the person chose
    details: list = field(default_factory=list)   # the technical facts (files, the inference path's words)


class Stopped(Exception):
    """Stop was pressed: the run ended between two batches and wrote no video."""

    def __init__(self, frames: int = 0):
        self.frames = frames
        done = f" after {frames} frame{'s' if frames != 1 else ''}" if frames else ""
        super().__init__(f"stopped{done}; no video was written.")


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

    def busy(self) -> bool:
        """Whether an animation is under way (the next one waits for it)."""
        return self._lock.locked()

    def _output(self, request: AnimateRequest) -> Path:
        """A name not taken yet (a file of an earlier run, or one planted there, is never written over)."""
        session.prune_results(self.out_dir, self.keep - 1)
        while True:
            self._count += 1
            path = self.out_dir / f"{_safe_stem(request.source)}-{_safe_stem(request.driving)}-{self._count}.mp4"
            if not os.path.lexists(path):
                return path

    def _load(self, choice: animation.ModelChoice, name: str, progress: Progress) -> tuple:
        """(the loaded model, the sentences about it not yet shown). Not stopped half way: what it builds once
        (the int8 model, the `fast` measurement) is cached for every later run."""
        progress(None, f"loading the checkpoint {name}".strip())
        loaded = self._models.load(choice, on_step=lambda done, total, what: progress(done / max(total, 1), what))
        about = [s for s in loaded.notes if s not in self._told]
        self._told.update(about)
        return loaded, about

    def animate(self, request: AnimateRequest, progress: Progress, stopped=lambda: False) -> Animated:
        """One `fomm-doctor animate`, its checks first; -> the video, the closing sentence and the notes.
        Stopped (Stopped raised, nothing written) when `stopped()` is true once the model is loaded or after a
        batch."""
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
            loaded, about = self._load(choice, name or "", progress)
            _stop_here(stopped)
            progress(None, "finding the faces" if layout.crop else "preparing the frames")
            total = max(info.frame_count, 1)

            def batch_done(n, estimate):
                _stop_here(stopped, n)
                progress(n / max(estimate, total), f"animating: frame {n} of {max(estimate, total)}")
            done = animation.animate(source, driving, output, loaded, layout, progress=batch_done)
        model = f"checkpoint {name or loaded.name} ({loaded.animator.FAMILY}) at {loaded.size}x{loaded.size}"
        details = [f"checkpoint file: {loaded.checkpoint.path}", f"inference path: {loaded.animator.path}",
                   f"video: {done.result.path}"]
        return Animated(done.result.path, done.sentence, about + done.told(), model, details)


def _stop_here(stopped, frames: int = 0) -> None:
    if stopped():
        raise Stopped(frames)


class Run:
    """One animation on a thread of its own, as the page follows it: the latest report (what, how far, since
    when that step began) to show at any moment, and stop() to end it between two batches. Nothing is written
    by a run that is stopped (the video appears only when complete)."""

    def __init__(self, animations: Animations, request: AnimateRequest):
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self.text, self.fraction, self.since = "checking the photo and the video", None, time.monotonic()
        self.result: Optional[Animated] = None
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._work, args=(animations, request), daemon=True,
                                        name="fomm-doctor page run")

    def start(self) -> "Run":
        self._thread.start()
        return self

    def _work(self, animations: Animations, request: AnimateRequest) -> None:
        try:
            self.result = animations.animate(request, self._report, self._stop.is_set)
        except BaseException as err:  # noqa: BLE001 - handed to the page, which shows it
            self.error = err

    def _report(self, fraction: Optional[float], text: str) -> None:
        with self._guard:
            if text.split(":")[0] != self.text.split(":")[0]:   # a new step ("animating: frame 8 of 40" is one)
                self.since = time.monotonic()
            self.text, self.fraction = text, fraction

    def now(self) -> tuple:
        """(fraction or None, what is being done, seconds since that step began)."""
        with self._guard:
            return self.fraction, self.text, time.monotonic() - self.since

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds` for the run to end; -> whether it has."""
        self._thread.join(seconds)
        return not self._thread.is_alive()


class Runs:
    """The run each visitor of the page started (by the visitor's session), so Stop ends that visitor's run and
    nobody else's."""

    def __init__(self):
        self._runs: dict = {}
        self._guard = threading.Lock()

    def start(self, owner: str, animations: Animations, request: AnimateRequest) -> Run:
        run = Run(animations, request)
        with self._guard:
            self._runs[owner] = run
        return run.start()

    def stop(self, owner: str) -> bool:
        """Stop `owner`'s run; -> whether one was running."""
        with self._guard:
            run = self._runs.get(owner)
        if run is None or run.wait(0):
            return False
        run.stop()
        return True

    def forget(self, owner: str, run: Run) -> None:
        with self._guard:
            if self._runs.get(owner) is run:
                del self._runs[owner]


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


def add_checkpoint(paths: list, name: Optional[str], scratch: Path) -> tuple[str, str]:
    """`fomm-doctor checkpoints add` for the page: one file (a .pth.tar) or folder, or the files of a set
    uploaded together (gathered into one folder in `scratch` first, removed after); -> (the name it is
    registered under, the sentence saying so)."""
    from fomm_doctor.checkpoints.add import add
    paths = [Path(p) for p in paths if p]
    if not paths:
        raise UserError("give a checkpoint file: upload it, or type its path on this machine.")
    name = (name or "").strip() or None
    if len(paths) == 1:
        added = add(paths[0], name=name)
    else:
        folder = Path(tempfile.mkdtemp(prefix="set-", dir=scratch))
        try:
            for path in paths:
                _link_or_copy(path, folder / path.name)
            added = add(folder, name=name)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    checked = f"; its {added.verified_by} matches the published one" if added.verified_by in ("sha256", "md5") else ""
    notes = "".join(f" Note: {n}." for n in added.notes)
    return added.name, (f"added {added.name} ({byte_size(added.size)}{checked}); it is chosen for the next "
                        f"animation.{notes}")


def _link_or_copy(src: Path, dest: Path) -> None:
    """A set's file gathered into its folder: a hard link where the drive allows (no second copy of a large
    file), else a copy."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


CHECK_COLUMNS = ("check", "status", "what was found", "fix")


def check_rows(network: bool = False) -> list[list[str]]:
    """`fomm-doctor check` as table rows (CHECK_COLUMNS); without `network` the mirrors are not timed."""
    from fomm_doctor.checks import run_checks
    return [[r.id, r.status, r.summary, r.fix or ""] for r in run_checks(offline=not network)]
