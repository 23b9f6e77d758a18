"""Jobs on this machine: N worker processes, each with its models loaded, fed one task at a time.

Processes, not threads: each worker's torch owns its threads, and a job that crashes its process (a decoder
fault, the kernel's out-of-memory killer) costs that job, not the batch; the worker is replaced. On Linux workers
are forked by multiprocessing's fork server: a process that has imported torch and our worker code and never runs
either, so a worker starts without importing torch again (about 2 s of CPU each; one that replaces a worker that
died starts at once). Forking the driver itself would be unsafe once torch has started threads there. Elsewhere
workers are spawned: Windows has nothing else, and macOS's system libraries are not safe to fork once loaded.
Ctrl-C: the driver stops the workers with SIGTERM, which each turns into KeyboardInterrupt, so the video being
written is removed by its writer; whatever remains of a worker that could not clean up is removed by the driver.
A worker whose driver is gone (killed) stops by itself.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import replace
from contextlib import suppress
from typing import Callable, Iterable

from fomm_doctor.batch.manifest import ERROR
from fomm_doctor.batch.worker import JobRunner, Outcome, RunSettings, Task, set_threads

POLL_SECONDS = 0.5       # how often the driver looks for a dead worker while it waits
STOP_SECONDS = 10.0      # a stopped worker's time to remove its partial video before it is killed


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _exit_with_parent() -> None:
    """A thread that ends this worker when its driver dies (the driver's SIGKILL does not reach us)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        multiprocessing.connection.wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)  # the handler unwinds the job: its partial video is removed
        time.sleep(STOP_SECONDS)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


# what a worker imports before its first job: in the fork server, once (an import it cannot make is skipped there
# and made by the worker, as under spawn)
PRELOAD = ["torch", "fomm_doctor.batch.local", "fomm_core.inference.factory", "fomm_core.inference.pipeline",
           "fomm_core.model.checkpoint"]


def worker_context():
    """multiprocessing's fork server on Linux, else spawn."""
    if sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def worker_main(index: int, tasks, results, settings: RunSettings) -> None:
    """A worker process: take (task id, Task) from `tasks` until None, put (index, task id, Outcome)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the whole group: the driver decides
    signal.signal(signal.SIGTERM, _interrupt)
    _exit_with_parent()
    try:
        set_threads(settings.threads)
        runner = JobRunner(gpu_of(settings, index))
        while True:
            item = tasks.get()
            if item is None:
                return
            task_id, task = item
            results.put((index, task_id, runner.run(task)))
    except KeyboardInterrupt:
        return


def gpu_of(settings: RunSettings, index: int) -> RunSettings:
    """Worker `index`'s settings: on a machine with several GPUs, 'cuda' (or 'auto') means its own, cuda:index."""
    if settings.device not in ("auto", "cuda"):
        return settings
    try:
        import torch
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # no usable CUDA: the device stays as asked, and the job's check says why
        count = 0
    return replace(settings, device=f"cuda:{index % count}") if count > 1 else settings


class LocalPool:
    """`workers` processes; run(tasks, on_result) feeds them and calls on_result(task id, Task, Outcome) in the
    driver as each task finishes."""

    def __init__(self, workers: int, settings: RunSettings):
        self.workers = max(1, int(workers))
        self.settings = settings
        self._ctx = worker_context()
        self._results = self._ctx.Queue()
        self._procs: list = [None] * self.workers
        self._inboxes: list = [None] * self.workers

    def _start(self, index: int) -> None:
        inbox = self._ctx.Queue()
        proc = self._ctx.Process(target=worker_main, args=(index, inbox, self._results, self.settings),
                                 name=f"fomm-batch-{index}", daemon=True)
        proc.start()
        self._procs[index], self._inboxes[index] = proc, inbox

    def run(self, tasks: Iterable[tuple[int, Task]], on_result: Callable[[int, Task, Outcome], None]) -> None:
        todo = deque(tasks)
        busy: dict[int, tuple[int, Task]] = {}
        try:
            for index in range(min(self.workers, len(todo))):
                self._start(index)
                self._give(index, todo, busy)
            while busy:
                self._collect(todo, busy, on_result)
        finally:
            self.stop()
            for index, (_, task) in busy.items():  # a worker that could not clean up (Windows: no SIGTERM)
                _remove_partial(task, self._procs[index].pid)

    def _give(self, index: int, todo: deque, busy: dict) -> None:
        if todo:
            busy[index] = todo.popleft()
            self._inboxes[index].put(busy[index])

    def _collect(self, todo: deque, busy: dict, on_result) -> None:
        """Take one result (or wait POLL_SECONDS for one), then look for workers that died."""
        try:
            index, task_id, outcome = self._results.get(timeout=POLL_SECONDS)
        except queue.Empty:
            index, task_id = None, None
        if index is not None and busy.get(index, (None,))[0] == task_id:
            _, task = busy.pop(index)
            on_result(task_id, task, outcome)
            self._give(index, todo, busy)
        # else: a worker's last words after it was declared dead and replaced: its job is already an error
        self._replace_dead(todo, busy, on_result)

    def _replace_dead(self, todo: deque, busy: dict, on_result) -> None:
        """A worker that died mid-job: its job is an ERROR (a rerun tries it again), and a new worker takes over."""
        for index, (task_id, task) in list(busy.items()):
            proc = self._procs[index]
            if proc.is_alive():
                continue
            busy.pop(index)
            _remove_partial(task, proc.pid)
            code = proc.exitcode
            why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            on_result(task_id, task, Outcome(ERROR, error=f"the worker process stopped ({why}) during this job, "
                                                          "likely out of memory; it is tried again on a rerun."))
            self._start(index)
            self._give(index, todo, busy)

    def stop(self) -> None:
        """Stop every worker: None to an idle one, SIGTERM to a busy one, a kill to one that does not stop."""
        for index, proc in enumerate(self._procs):
            if proc is not None and proc.is_alive():
                with suppress(Exception):  # a full or broken queue: terminate() follows anyway
                    self._inboxes[index].put(None)
                proc.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for proc in self._procs:
            if proc is not None:
                proc.join(max(0.1, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)


def _remove_partial(task: Task, pid) -> None:
    """The temp files a killed worker's writer left beside the task's output."""
    from fomm_core.media.video import writer_temp_paths
    for partial in writer_temp_paths(task.output, pid):
        partial.unlink(missing_ok=True)
