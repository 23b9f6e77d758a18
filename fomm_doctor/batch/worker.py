"""One worker's side of a batch: run jobs one after another, with the models kept loaded between them.

The same JobRunner runs in a local worker process (fomm_doctor.batch.local) and in a Ray actor
(fomm_doctor.batch.on_ray), so a job gives the same file wherever it runs: the exact float32 path by default, the
same code, the same encoder settings. Every job is one `animate` with its guarantees: the inputs checked first,
the output written beside its name and renamed when complete, the audio kept, one sentence for what went wrong.
"""
from __future__ import annotations

import os
import platform
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from fomm_core.errors import FommError
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


def set_threads(threads: int) -> None:
    """Give this process `threads` torch threads (workers share the cores instead of fighting over them)."""
    if threads > 0:
        import torch
        torch.set_num_threads(threads)


class JobRunner:
    """Runs tasks in this process; keeps the last few models and animators loaded."""

    def __init__(self, settings: RunSettings):
        self.settings = settings
        self._models: OrderedDict = OrderedDict()
        self._animators: OrderedDict = OrderedDict()
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
            outcome = Outcome(FAILED, error=one_sentence(err))
        except MemoryError:
            outcome = Outcome(ERROR, error="out of memory while animating; use fewer workers (--workers).")
        except Exception as err:  # a worker must outlive any one job: the manifest says what it was
            outcome = Outcome(ERROR, error=f"unexpected {type(err).__name__}: {one_sentence(err)}")
        outcome.seconds = round(time.perf_counter() - started, 3)
        outcome.worker = self.describe()
        return outcome

    def _animate(self, task: Task) -> Outcome:
        from fomm_core.inference.pipeline import animate_video
        from fomm_doctor.commands.animate import check_inputs
        from fomm_doctor.net.download import file_sha256
        job, settings = task.job, self.settings
        check_inputs(job.source, job.driving, task.output, job.mode, settings.device, settings.precision,
                     settings.batch_size)
        animator, size = self.animator(task)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            result = animate_video(job.source, job.driving, task.output, animator, size=size,
                                   batch_size=settings.batch_size, side_by_side=job.side_by_side,
                                   audio=job.audio, find_best_frame=job.find_best_frame, crop=job.crop,
                                   paste_back=job.paste_back)
        notes = [str(w.message) for w in caught]
        return Outcome(DONE, sha256=file_sha256(result.path), frames=result.frames, notes=notes)

    def animator(self, task: Task):
        """(animator, model size) for the task's checkpoint, mode and scale, loaded once and kept."""
        from fomm_core.inference.engine import make_animator
        job = task.job
        key = (task.checkpoint, task.config, job.mode, job.adapt_scale)
        if key not in self._animators:
            model = self._model(task.checkpoint, task.config)
            animator = make_animator(model, device=self.device(), precision=self.settings.precision,
                                     size=model.size, mode=job.mode, adapt_movement_scale=job.adapt_scale)
            _keep(self._animators, key, (animator, model.size), ANIMATORS_KEPT)
        self._animators.move_to_end(key)
        return self._animators[key]

    def _model(self, checkpoint: str, config: Optional[str]):
        from fomm_core.model.checkpoint import load_model
        key = (checkpoint, config)
        if key not in self._models:
            _keep(self._models, key, load_model(config, Path(checkpoint), self.device()), MODELS_KEPT)
            for old in [k for k in self._animators if k[:2] not in self._models]:
                del self._animators[old]  # an animator holds its model: drop both together
        self._models.move_to_end(key)
        return self._models[key]


def _keep(cache: OrderedDict, key, value, limit: int) -> None:
    cache[key] = value
    while len(cache) > limit:
        cache.popitem(last=False)
