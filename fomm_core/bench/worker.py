"""A path's own process (`python -m fomm_core.bench --child PATH`), and the parent's handle on it: the line
protocol ('ready', then 'run' -> 'time S', 'done' -> the result saved) that times the paths interleaved."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fomm_core.bench.runners import make_runner
from fomm_core.bench.stages import STAGES
from fomm_core.bench.weights import family


def _peak_rss_mb() -> float:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_worker(ns) -> None:
    """A path's own process: warm up, say 'ready', then time one run per 'run' line; 'done' saves and exits.
    With --one-pass (the bench's --smoke) the path runs once, its stages timed, before 'ready'.

    The parent sends 'run' to each path in turn, so that the paths are timed interleaved: a neighbour's load
    on a shared machine slows all of them alike instead of one path's whole measurement.
    """
    import torch
    torch.set_num_threads(ns.threads)
    description, run = make_runner(ns.child, ns.config, ns.size, ns.frames, weights=ns.weights, device=ns.device)
    stages = dict.fromkeys(STAGES[family(ns.config)], 0.0)
    if ns.one_pass:  # --smoke: one pass proves the path runs and gives its output; its time is no measurement
        t = time.perf_counter()
        output = run(stages)
        seconds = [time.perf_counter() - t]
        _answer_runs(lambda: seconds[0])
    else:
        warm = run()  # warm-up (and torch.compile's compile, where asked)
        output, seconds = _timed_runs(run, warm)
        run(stages)  # one more pass with per-stage timers (a stage the path cannot time is dropped)
    result = {"path": description, "fps": ns.frames / statistics.median(seconds), "seconds": seconds,
              "stages": {k: v / ns.frames for k, v in stages.items()}, "peak_rss_mb": _peak_rss_mb(),
              "output": output, "precision": getattr(run, "precision", ns.child), "note": getattr(run, "note", "")}
    tmp = ns.out + ".partial"
    torch.save(result, tmp)
    os.replace(tmp, ns.out)


def _answer_runs(run_seconds) -> None:
    """Say 'ready', then answer each 'run' line with 'time S' (S = run_seconds()) until 'done'."""
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "run":
            print(f"time {run_seconds()}", flush=True)
        elif line.strip() == "done":
            break


def _timed_runs(run, output) -> tuple:
    """One timed run per 'run' line: -> (the last output, else `output`; the seconds of each)."""
    seconds, outputs = [], [output]

    def timed():
        t = time.perf_counter()
        outputs[:] = [run()]
        seconds.append(time.perf_counter() - t)
        return seconds[-1]
    _answer_runs(timed)
    return outputs[0], seconds


def child_command(path, args, threads, out, *extra) -> tuple:
    """(command, environment) of a path's own process, its torch threads set before torch starts."""
    cmd = [sys.executable, "-m", "fomm_core.bench", "--child", path, "--config", args.config,
           "--size", str(args.size), "--frames", str(args.frames), "--threads", str(threads),
           "--weights", str(args.weights), "--device", str(args.device), "--out", str(out),
           *(["--one-pass"] if getattr(args, "one_pass", False) else []), *extra]
    return cmd, dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


class Worker:
    """The parent's handle on one path's process."""

    def __init__(self, path, args, threads, workdir):
        self.path, self.out = path, Path(workdir) / f"{path}.pt"
        self.err = open(Path(workdir) / f"{path}.err", "w+", encoding="utf-8")
        cmd, env = child_command(path, args, threads, self.out)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                     text=True, env=env)
        self.error = None

    def ask(self, command, expect):
        """Send a command line; True once the worker answers with a line starting with `expect`."""
        if self.error:
            return False
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        return self.wait_for(expect)

    def wait_for(self, expect):
        line = self.proc.stdout.readline()
        if line.startswith(expect):
            return True
        self.fail()
        return False

    def fail(self):
        self.proc.kill()
        self.proc.wait()
        self.err.seek(0)
        tail = self.err.read().strip().splitlines()[-1:] or ["the worker stopped without a message"]
        self.error = tail[0]

    def finish(self) -> dict:
        if not self.error:
            try:
                self.proc.stdin.write("done\n")
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            if self.proc.wait() != 0:
                self.fail()
        self.err.close()
        if self.error:
            return {"error": self.error}
        import torch
        return torch.load(self.out, weights_only=True)


def start_workers(paths, args, threads, workdir, on_path) -> list:
    workers = []
    for path in paths:  # one at a time: set-up and warm-up are not timed, but should not crowd each other
        on_path(f"{path}: building and warming up")
        worker = Worker(path, args, threads, workdir)
        worker.wait_for("ready")
        workers.append(worker)
    return workers


def run_workers(workers, runs, on_path) -> dict:
    """Time `runs` rounds, interleaved (every path once per round); then each path's result by name."""
    for r in range(runs):
        for worker in workers:
            on_path(f"{worker.path}: run {r + 1} of {runs}")
            worker.ask("run", "time")
    results = {}
    for worker in workers:
        on_path(f"{worker.path}: stage timings")
        results[worker.path] = worker.finish()
    return results
