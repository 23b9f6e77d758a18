"""One worker's side of a batch: run jobs one after another, with the models kept loaded between them.

The same JobRunner runs in a local worker process (fomm_doctor.batch.local) and in a Ray actor
(fomm_doctor.batch.on_ray), so a job gives the same file wherever it runs: the exact float32 path by default, the
same code, the same encoder settings. Every job is one `animate` with its guarantees: the inputs checked first,
the output written beside its name and renamed when complete, the audio kept, one sentence for what went wrong.
"""
from __future__ import annotations

import errno
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from fomm_core.errors import FommError
from fomm_doctor import animation
from fomm_doctor.batch.jobs import Job
from fomm_doctor.batch.manifest import DONE, ERROR, FAILED
from fomm_doctor.errors import UserError

MODELS_KEPT = 2      # checkpoints loaded at once in a worker: a batch mixing a few models does not reload per job
ANIMATORS_KEPT = 4   # (checkpoint, mode, scale) combinations kept ready
# one worker's peak memory animating at 256 px in fp32 (measured about 1.0 GB, ffmpeg included), with a margin:
# how many workers a machine holds, and what each Ray actor reserves
WORKER_MEMORY = int(1.25 * 2 ** 30)


@dataclass(frozen=True)
class RunSettings:
    """What every job of a run shares. fp32 is the default because it is the path whose frames are the same on
    every machine; the measured `fast` path can differ between CPUs, so it is for a user who asks."""
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 4
    threads: int = 1         # torch threads in each worker (the same in all: the count changes float sums)


@dataclass(frozen=True)
class Task:
    """A job made ready to run: where it writes, and the checkpoint file (and config) it resolved to."""
    job: Job
    output: Path
    checkpoint: str
    config: Optional[str]
    key: str


@dataclass
class Outcome:
    """What became of one task, as the worker saw it."""
    status: str                      # DONE, FAILED or ERROR (fomm_doctor.batch.manifest)
    seconds: float = 0.0
    sha256: str = ""
    frames: int = 0
    error: str = ""
    worker: str = ""
    notes: list = field(default_factory=list)


def one_sentence(err: BaseException) -> str:
    """The first line of an error's text, bounded: a manifest line and a summary row, never a traceback."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 400 else text[:397] + "..."


# what this machine lacked, not what the job asked: a full disk or quota, a size limit, a read-only or failing
# drive, memory, file handles, a permission. A job failed by one is an ERROR, tried again on the next run.
ENVIRONMENT_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EIO", "ENOMEM", "EMFILE", "ENFILE", "EACCES", "EPERM", "EAGAIN")
    if hasattr(errno, name))


def environment_failure(err: BaseException) -> str:
    """Why a job's error is this machine's rather than its input's, or '': an OSError of ENVIRONMENT_ERRNOS
    behind it (a sentence made `from None` still keeps it as its context), or a failure while the output video
    was being written (ffmpeg stopped by a full disk or a file size limit says little more than its exit code),
    which no input causes once the input checks have passed."""
    seen = set()
    cause = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in ENVIRONMENT_ERRNOS:
            return os.strerror(cause.errno)
        cause = cause.__cause__ or cause.__context__
    from fomm_core.media.video import WriteError
    if isinstance(err, WriteError):
        return "the output could not be written"
    return ""


def set_threads(threads: int) -> None:
    """Give this process `threads` torch threads (workers share the cores instead of fighting over them)."""
    if threads > 0:
        import torch
        torch.set_num_threads(threads)


class JobRunner:
    """Runs tasks in this process; keeps the last few models and animators loaded."""

    def __init__(self, settings: RunSettings):
        from fomm_doctor.checkpoints import ResolvedCheckpoint
        self.settings = settings
        # a task names a file the run already resolved (or shipped to this node): it is loaded as it is
        self.models = animation.Models(MODELS_KEPT, ANIMATORS_KEPT,
                                       resolve=lambda path: ResolvedCheckpoint(Path(path)))
        self._device = None

    def describe(self) -> str:
        """'host pid 4242, torch 2.13.0+cpu, cpu': which worker wrote a manifest line."""
        import torch
        return (f"{platform.node() or 'host'} pid {os.getpid()}, torch {torch.__version__}, {self.device()}, "
                f"{torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)}")

    def device(self):
        if self._device is None:
            from fomm_core.device import resolve_device
            self._device = resolve_device(self.settings.device)
        return self._device

    def run(self, task: Task) -> Outcome:
        """Animate one task; every failure becomes an Outcome with its sentence (Ctrl-C is let through)."""
        started = time.perf_counter()
        try:
            outcome = self._animate(task)
        except (UserError, FommError) as err:
            why = environment_failure(err)
            outcome = (Outcome(ERROR, error=f"{one_sentence(err).rstrip('.')} ({why}); it is tried again on a "
                                           "rerun.") if why else Outcome(FAILED, error=one_sentence(err)))
        except MemoryError:
            outcome = Outcome(ERROR, error="out of memory while animating; use fewer workers (--workers).")
        except Exception as err:  # a worker must outlive any one job: the manifest says what it was
            outcome = Outcome(ERROR, error=f"unexpected {type(err).__name__}: {one_sentence(err)}; it is tried again "
                                           "on a rerun.")
        outcome.seconds = round(time.perf_counter() - started, 3)
        outcome.worker = self.describe()
        return outcome

    def choice(self, task: Task) -> animation.ModelChoice:
        return animation.ModelChoice(task.checkpoint, task.config, str(self.device()), self.settings.precision,
                                     task.job.mode, task.job.adapt_scale, batch=self.settings.batch_size)

    def _animate(self, task: Task) -> Outcome:
        from fomm_doctor.net.digests import file_sha256
        job, settings = task.job, self.settings
        layout = animation.Layout(settings.batch_size, job.side_by_side, job.audio, job.find_best_frame, job.crop,
                                  job.paste_back)
        choice = self.choice(task)
        animation.check_request(job.source, job.driving, task.output, choice, layout)
        done = animation.animate(job.source, job.driving, task.output, self.models.load(choice), layout)
        return Outcome(DONE, sha256=file_sha256(done.result.path), frames=done.result.frames, notes=done.notes)
