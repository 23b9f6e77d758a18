"""Peak memory against clip length: does our engine's resident memory stay flat over a video?

    python -m fomm_core.bench --model liveportrait --memory [--paths exact,bf16] [--json]

Each engine path streams one clip in its own process (`--child PATH --clips 4,16`) as animate_video does: the
source set once, one driving frame per `animate` call, each output dropped once read. After the first frame
(weights loaded, buffers sized: a one-time cost that would hide everything else) the process's peak resident set
is reset (Linux: /proc/self/clear_refs), then read after 4 and after 16 more frames, with the live memory (the
resident set once freed memory is handed back). A per-frame leak of one output frame (512x512x3 float32 for
LivePortrait: 3 MiB) would raise both by 12 frames' worth (36 MiB). Where the peak cannot be reset (macOS,
Windows), the largest resident set sampled after each frame stands in for it.

glibc's malloc raises its mmap threshold to the largest block freed so far; blocks under it then come from a heap
whose free space is reused in place or not, as it happens, and the peak landed anywhere within 90 MB from one run
to the next (LivePortrait at 512 px: 1520-1626 MB after 1 frame, moving by 0-87 MB over the next 2). Each child
therefore sets the threshold (MALLOC_MMAP_THRESHOLD_, to glibc's own default of 128 KiB; setting it turns the
moving off): every larger block goes back to the system when freed, and the peak is what the engine holds at
once (1430 MB, the same to 0.3 MB in every run). Other C libraries ignore the setting.
"""
from __future__ import annotations

import json
import platform
import subprocess
import tempfile
import textwrap
import types
from pathlib import Path

from fomm_core.bench.report import check_options, environment, output_side, unrun_lines
from fomm_core.bench.runners import make_engine, not_run_here
from fomm_core.bench.weights import clip, worker_weights
from fomm_core.bench.worker import child_command

CLIPS = (4, 16)  # frames streamed after the first when the peak is read
FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}  # glibc's, read at start: see above
CLIPS_WITHOUT_MEMORY = "--clips sets the clip lengths of --memory; add --memory or leave --clips out."


def parse_clips(text) -> tuple:
    """--clips 'A,B': the clip lengths the memory is read at (B > A >= 1 frames after the first); FommError if not."""
    from fomm_core.errors import FommError
    try:
        clips = tuple(int(n) for n in str(text).split(","))
    except ValueError:
        clips = ()
    if len(clips) < 2 or clips[0] < 1 or list(clips) != sorted(set(clips)):
        raise FommError(f"--clips takes two or more frame counts, smallest first, like 4,16; not {text}.")
    return clips


def check_memory_options(config, size, paths, weights, threads=None) -> None:
    """Raise FommError with one sentence for options --memory cannot run with (the timings' own, and no reference)."""
    from fomm_core.errors import FommError
    check_options(config, size, 1, 1, threads, list(paths), weights)
    if "reference" in paths:
        raise FommError("--memory measures our engine's paths; leave reference out of --paths.")


def _status_mb(field) -> float | None:
    """A field of /proc/self/status in MiB (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class PeakMeter:
    """This process's peak resident set from now on: Linux's own high-water mark, reset here; elsewhere the
    largest resident set seen by `sample`."""

    def __init__(self):
        try:
            Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak resident set to the current one
            self.how = "peak" if _status_mb("VmHWM") is not None else "sampled"
        except OSError:
            self.how = "sampled"
        self.largest = 0.0

    def sample(self) -> None:
        import psutil
        self.largest = max(self.largest, psutil.Process().memory_info().rss / 2 ** 20)

    def read(self) -> float:
        return _status_mb("VmHWM") if self.how == "peak" else self.largest


def live_mb() -> float:
    """The resident set once freed memory is handed back (glibc's malloc_trim; elsewhere as it is): what the process
    still holds, which a leak raises and the allocator's leftovers from the last frame do not."""
    import ctypes
    import gc

    import psutil
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    return psutil.Process().memory_info().rss / 2 ** 20


def stream_peaks(path, config, size, clips=CLIPS, weights="stress", device="cpu") -> dict:
    """In this process: our engine at `path` streams max(clips) frames after the first, one per call; -> after each
    clip length, the peak resident MiB so far and the live MiB (`live_mb`), and how the peak was read."""
    animator = make_engine(path, config, size, weights, device)
    source, driving = clip(config, size, max(clips) + 1)
    animator.set_source(source)
    animator.animate(driving[:1])  # the reference frame: weights in place, buffers sized, before the reset
    live_mb()
    meter, peaks, live = PeakMeter(), {}, {}
    for i in range(1, max(clips) + 1):
        frame = animator.animate(driving[i:i + 1])   # [1, 3, S, S] float32
        float(frame.mean())                          # read, as a writer would, then dropped
        del frame
        meter.sample()
        if i in clips:
            peaks[str(i)], live[str(i)] = meter.read(), live_mb()
    return {"path": animator.path, "precision": animator.precision, "peak_mb": peaks, "live_mb": live,
            "how": meter.how}


def save_peaks(ns) -> None:
    """The child's part (`--child PATH --clips 4,16`): its stream_peaks as JSON in --out."""
    import torch
    torch.set_num_threads(ns.threads)
    clips = parse_clips(ns.clips)
    result = stream_peaks(ns.child, ns.config, ns.size, clips, ns.weights, ns.device)
    Path(ns.out).write_text(json.dumps(result), encoding="utf-8")


def _measure(path, args, threads, clips, workdir) -> dict:
    """One path's child process and its row (or the last line it wrote to stderr, as the row's error)."""
    out = Path(workdir) / f"{path}.memory.json"
    cmd, env = child_command(path, args, threads, out, "--clips", ",".join(map(str, clips)))
    done = subprocess.run(cmd, env=dict(env, **FIXED_MMAP_THRESHOLD), capture_output=True, text=True)
    if done.returncode != 0 or not out.is_file():
        tail = done.stderr.strip().splitlines()[-1:] or ["the worker stopped without a message"]
        return {"name": path, "error": tail[0]}
    result = json.loads(out.read_text(encoding="utf-8"))
    short, long = str(min(clips)), str(max(clips))
    per_frame = {k: (result[k][long] - result[k][short]) / (max(clips) - min(clips)) for k in ("peak_mb", "live_mb")}
    return {"name": path, **result, "growth_mb_per_frame": per_frame}


def run_memory(config="liveportrait", size=256, paths=("exact",), weights="stress", threads=None, device="cpu",
               clips=CLIPS, on_path=None) -> dict:
    """Peak resident memory of our engine's paths streaming clips of each length in `clips`; a JSON-able dict."""
    import os
    from fomm_core.device import resolve_device
    check_memory_options(config, size, paths, weights, threads)
    threads = threads or max(1, min(os.cpu_count() or 1, 4))
    device = str(resolve_device(device))
    on_path = on_path or (lambda _message: None)
    side = output_side(config, size)
    with tempfile.TemporaryDirectory(prefix="fomm-bench-") as workdir:
        args = types.SimpleNamespace(config=config, size=size, frames=max(clips), device=device,
                                     weights=worker_weights(config, weights, workdir))
        rows = []
        for path in paths:
            why = not_run_here(path, device)
            if why:
                rows.append({"name": path, "skipped": why})
                continue
            on_path(f"{path}: streaming {max(clips)} frames")
            rows.append(_measure(path, args, threads, clips, workdir))
    return {"config": config, "size": size, "output_size": side, "weights": str(weights), "clips": list(clips),
            "frame_mb": 3 * side * side * 4 / 2 ** 20, "environment": environment(threads, device), "rows": rows,
            "fixed_mmap_threshold": platform.libc_ver()[0] == "glibc"}


def format_memory(report) -> str:
    """The memory report in 80 columns."""
    short, long = (str(n) for n in (min(report["clips"]), max(report["clips"])))
    lines = textwrap.wrap(f"{report['config']} {report['size']}px in, {report['output_size']}px out, "
                          f"{report['weights']} weights: resident MB streaming {short}, then {long} frames (a leaked "
                          f"frame: {report['frame_mb']:.1f} MB)", 80)
    lines += [f"{'path':<12}{'peak ' + short:>10}{'peak ' + long:>10}{'live ' + short:>10}{'live ' + long:>10}"
              f"{'live +MB/frame':>16}"]
    for row in report["rows"]:
        if unrun_lines(row):
            lines += unrun_lines(row)
            continue
        peak, live, growth = row["peak_mb"], row["live_mb"], row["growth_mb_per_frame"]  # the peak's: in --json
        lines.append(f"{row['name']:<12}{peak[short]:>10.0f}{peak[long]:>10.0f}{live[short]:>10.0f}{live[long]:>10.0f}"
                     f"{growth['live_mb']:>16.2f}")
    if report.get("fixed_mmap_threshold"):
        lines += textwrap.wrap("peak: what the engine holds at once (glibc was told to hand back every block of "
                               "128 KiB or more when freed)", 80)
    if any(row.get("how") == "sampled" for row in report["rows"]):
        lines.append("peak: the largest resident set sampled after each frame (this system keeps no high-water mark)")
    return "\n".join(lines)
