"""A batch from start to end: hold the output folder, decide what is left to do, run it on a pool, record it.

    with hold(outdir):
        plan = make_plan(jobs, outdir, settings)          # what the manifest says is done is checked, not trusted
        summary = run_plan(plan, LocalPool(2, settings), on_progress)

Skipped: a job whose output is recorded `done` under the same key (settings and inputs) and still has the
recorded sha256; a job that `failed` under the same key (its inputs have not changed, so it would fail the same
way) unless retry_failed. Everything else runs, and a job whose output is rewritten replaces it whole. Only
records sealed for this folder by this user count (fomm_doctor.batch.seal); the others are ignored, with a note.
No folder under the output folder is followed through a link: a job that would write through one is refused.
"""
from __future__ import annotations

import os
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from fomm_doctor.batch.jobs import Job
from fomm_doctor.batch.manifest import (DONE, ERROR, FAILED, MANIFEST, ManifestWriter, Record, fingerprint, job_key,
                                        read_records, verified)
from fomm_doctor.batch.seal import Seal
from fomm_doctor.batch.worker import Outcome, RunSettings, Task
from fomm_doctor.errors import UserError
from fomm_doctor.oslock import UnusableLock, locked

LOCK = ".fomm-batch.lock"


@contextmanager
def hold(outdir: Path):
    """Create the output folder and hold it for this run: a second batch into it is refused with a sentence."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise UserError(f"{outdir} is a file; give a folder for the batch's videos.")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"the output folder {outdir} could not be created ({exc.strerror or exc}).") from None
    busy = (lambda holder: UserError(f"another batch is writing to {outdir} ({holder}); let it finish, or give "
                                     "another output folder."))
    try:
        with locked(outdir / LOCK, 0.0, busy):
            yield outdir
    except UnusableLock as err:  # raised only on taking the lock, before the block runs
        raise UserError(err.sentence) from None


@dataclass
class Plan:
    outdir: Path
    jobs: list                                         # every job of the batch, in order
    tasks: list = field(default_factory=list)          # [(task id, Task)] to run now
    refused: list = field(default_factory=list)        # [(Job, key, sentence)]: fail before running (checkpoint)
    done: list = field(default_factory=list)           # [(Job, Record)] done earlier and verified
    failed: list = field(default_factory=list)         # [(Job, Record)] failed earlier, inputs unchanged
    notes: list = field(default_factory=list)          # sentences for the user (the checkpoint store's)
    seal: Optional[Seal] = None                        # signs this run's records for this folder


def _resolver(resolve, notes: list):
    """resolve(name) memoised: {name: (path, config) or the UserError sentence}; the store's notes (the bundled
    model standing in for a face model) are added to `notes` once each."""
    seen: dict = {}

    def lookup(name):
        if name not in seen:
            try:
                found = resolve(name)
                seen[name] = (str(found.path), found.config)
                if getattr(found, "note", None) and found.note not in notes:
                    notes.append(found.note)
            except UserError as err:
                seen[name] = str(err)
        return seen[name]
    return lookup


def make_plan(jobs: list[Job], outdir: Path, settings: RunSettings, retry_failed: bool = False,
              resolve: Optional[Callable] = None) -> Plan:
    """What this run does for each job (see the module's text). resolve(name or path or None) -> an object with
    .path and .config (default: the checkpoint store); a name it cannot resolve fails its jobs with its sentence."""
    if resolve is None:
        from fomm_doctor.checkpoints import resolve_checkpoint
        resolve = resolve_checkpoint
    plan = Plan(Path(outdir), list(jobs), seal=Seal.for_folder(outdir))
    records, ignored = read_records(outdir, plan.seal)
    if ignored:
        plan.notes.append(f"{ignored} record{'s' * (ignored != 1)} of {plan.outdir / MANIFEST} {_were(ignored)} not "
                          "written by your batches into this folder (planted, copied from elsewhere, or from an "
                          "older version): ignored, and their jobs run again.")
    lookup = _resolver(resolve, plan.notes)
    checked: set = set()
    for job in jobs:
        _check_folders(plan.outdir, job, checked)
        found = lookup(job.checkpoint)
        checkpoint, config = found if isinstance(found, tuple) else (None, None)
        config = job.config or config
        settings_used = dict(job.settings(), precision=settings.precision, checkpoint=checkpoint, config=config)
        inputs = {"source": fingerprint(job.source), "driving": fingerprint(job.driving),
                  "checkpoint": fingerprint(checkpoint) if checkpoint else ["unresolved", found]}
        if config and Path(config).is_file():
            inputs["config"] = fingerprint(config)
        key = job_key(settings_used, inputs)
        record = records.get(job.output)
        output = plan.outdir / job.output
        if verified(record, plan.outdir, key):
            plan.done.append((job, record))
        elif record is not None and record.status == FAILED and record.key == key and not retry_failed:
            plan.failed.append((job, record))
        elif checkpoint is None:
            plan.refused.append((job, key, found))
        else:
            plan.tasks.append((len(plan.tasks), Task(job, output, checkpoint, config, key)))
    _prepare_folders(plan)
    return plan


def _were(count: int) -> str:
    return "was" if count == 1 else "were"


def _check_folders(outdir: Path, job: Job, checked: set) -> None:
    """Every folder between the output folder and the job's output is a real folder (or not there yet): a link
    there would have the video written somewhere else."""
    folder = outdir
    for part in Path(job.output).parts[:-1]:
        folder = folder / part
        if folder in checked:
            continue
        try:
            mode = os.lstat(folder).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise UserError(f"{folder} cannot be read ({exc.strerror or exc}).") from None
        if stat.S_ISLNK(mode):
            raise UserError(f"{folder} is a link, and {job.where} would write through it to another place; a batch "
                            "writes only inside its output folder: remove the link, or give another output name.")
        if not stat.S_ISDIR(mode):
            raise UserError(f"{folder} is a file, where {job.where} needs a folder; give another output name.")
        checked.add(folder)


def _prepare_folders(plan: Plan) -> None:
    """Make the folders the outputs go in (one at a time, none through a link), and remove what a killed run's
    writers left beside them."""
    from fomm_core.media.video import writer_temp_paths
    for _, task in plan.tasks:
        folder = plan.outdir
        for part in Path(task.job.output).parts[:-1]:
            folder = folder / part
            try:
                os.mkdir(folder)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(folder).st_mode):
                    raise UserError(f"{folder} is not a folder (a link or a file appeared there); remove it, or "
                                    "give another output name.") from None
            except OSError as exc:
                raise UserError(f"the folder {folder} could not be created ({exc.strerror or exc}).") from None
        for pattern in writer_temp_paths(task.output, "*"):
            for stale in folder.glob(pattern.name):
                stale.unlink(missing_ok=True)


@dataclass
class Summary:
    """The run in numbers, as `--json` prints it."""
    outdir: str
    jobs: int
    backend: str = ""
    workers: int = 0
    done: int = 0              # written and verified in this run
    skipped: int = 0           # done earlier, verified again
    failed: int = 0            # bad input or settings (this run's and earlier unchanged ones)
    errors: int = 0            # outside the job (a worker died...): tried again on a rerun
    ran: int = 0               # jobs this run gave to workers and heard back from
    seconds: float = 0.0
    interrupted: bool = False
    failures: list = field(default_factory=list)   # [{"job", "where", "status", "error"}]
    manifest: str = ""

    @property
    def to_run(self) -> int:
        return self.jobs - self.skipped

    @property
    def finished(self) -> int:
        """Jobs of this run that have an answer, good or bad."""
        return self.done + self.failed + self.errors

    @property
    def jobs_per_second(self) -> float:
        return self.ran / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["jobs_per_second"] = round(self.jobs_per_second, 4)
        data["seconds"] = round(self.seconds, 3)
        return data


def _record(job: Job, key: str, outcome: Outcome) -> Record:
    return Record(job=job.output, status=outcome.status, key=key, seconds=outcome.seconds, sha256=outcome.sha256,
                  frames=outcome.frames, error=outcome.error, source=str(job.source), driving=str(job.driving),
                  row=job.row, worker=outcome.worker, notes=list(outcome.notes),
                  finished=datetime.now(timezone.utc).isoformat(timespec="milliseconds"))


def run_plan(plan: Plan, pool, on_progress: Optional[Callable[[Summary, Optional[Record]], None]] = None,
             backend: str = "local") -> Summary:
    """Run the plan's tasks on `pool` (LocalPool or RayPool), each result in the manifest as it comes.

    on_progress(summary, record) after each job (record None for the first call). A KeyboardInterrupt stops the
    pool (no partial output stays), marks the summary interrupted and is raised again.
    """
    summary = Summary(str(plan.outdir), len(plan.jobs), backend, getattr(pool, "workers", 0),
                      skipped=len(plan.done), manifest=str(plan.outdir / MANIFEST))
    for job, record in plan.failed:
        _count(summary, job, record)
    progress = on_progress or (lambda s, r: None)
    started = time.perf_counter()
    with ManifestWriter(plan.outdir, plan.seal) as manifest:
        def finished(job: Job, key: str, outcome: Outcome) -> None:
            record = _record(job, key, outcome)
            manifest.add(record)
            _count(summary, job, record)
            summary.seconds = time.perf_counter() - started
            progress(summary, record)

        progress(summary, None)
        for job, key, sentence in plan.refused:
            finished(job, key, Outcome(FAILED, error=sentence))

        def ran(task_id, task: Task, outcome: Outcome) -> None:
            summary.ran += 1
            finished(task.job, task.key, outcome)
        try:
            if plan.tasks:
                pool.run(plan.tasks, ran)
        except KeyboardInterrupt:
            summary.interrupted = True
            raise
        finally:
            summary.seconds = time.perf_counter() - started
            summary.backend = getattr(pool, "described", "") or backend
    return summary


def _count(summary: Summary, job: Job, record: Record) -> None:
    if record.status == DONE:
        summary.done += 1
        return
    if record.status == ERROR:
        summary.errors += 1
    else:
        summary.failed += 1
    summary.failures.append({"job": job.output, "where": job.where, "status": record.status, "error": record.error})
