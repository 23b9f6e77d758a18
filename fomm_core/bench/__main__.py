"""`python -m fomm_core.bench`: the benchmark's own command line (and its workers' entry point)."""
from __future__ import annotations

import argparse
import json
import sys

import fomm_core.bench
from fomm_core.bench.runners import DEFAULT_CONFIG


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fomm_core.bench",
                                description=fomm_core.bench.__doc__.splitlines()[0])
    p.add_argument("--model", choices=tuple(DEFAULT_CONFIG), default=None,
                   help="the family to benchmark (its published vox config unless --config is given; liveportrait "
                        "has one config)")
    p.add_argument("--config", default=None)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--paths", default=None, help="comma-separated (default: the family's own)")
    p.add_argument("--weights", default="stress", help="stress (random, scaled so the output spans 0..1), "
                   "random, or a checkpoint file (with its --config and --size; for liveportrait a folder of its "
                   "five files)")
    p.add_argument("--smoke", action="store_true", help="128x128 frames in (liveportrait: 256 out), 2 frames, "
                   "one pass per path and no warm-up: every path runs, its frames/s is no measurement (for CI)")
    p.add_argument("--memory", action="store_true",
                   help="peak resident memory of our paths (--paths, default exact) streaming 4 and 16 frames, "
                        "instead of the timings")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (int8 runs on the CPU only)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--clips", default=None, help="with --memory: the clip lengths the memory is read at (default 4,16)")
    p.add_argument("--one-pass", action="store_true", help=argparse.SUPPRESS)  # a --smoke child
    return p


def _run(ns) -> str:
    """The report, as text or JSON."""
    paths = ns.paths.split(",") if ns.paths else None
    if ns.memory:
        from fomm_core.bench.memory import CLIPS, format_memory, parse_clips, run_memory
        report = run_memory(ns.config, ns.size, paths or ["exact"], weights=ns.weights, threads=ns.threads,
                            device=ns.device, clips=parse_clips(ns.clips) if ns.clips else CLIPS)
        return json.dumps(report, indent=2) if ns.json else format_memory(report)
    from fomm_core.bench.report import format_text, run_benchmark
    if ns.clips:
        from fomm_core.bench.memory import CLIPS_WITHOUT_MEMORY
        from fomm_core.errors import FommError
        raise FommError(CLIPS_WITHOUT_MEMORY)
    report = run_benchmark(ns.config, ns.size, ns.frames, ns.runs, ns.threads, paths, weights=ns.weights,
                           device=ns.device, one_pass=ns.smoke)
    return json.dumps(report, indent=2) if ns.json else format_text(report)


def main(argv=None) -> int:
    ns = _parser().parse_args(argv)
    if ns.child:
        from fomm_core.bench.memory import save_peaks
        from fomm_core.bench.worker import run_worker
        (save_peaks if ns.clips else run_worker)(ns)
        return 0
    from fomm_core.bench.report import smoke_settings
    from fomm_core.errors import FommError
    ns.config = ns.config or DEFAULT_CONFIG[ns.model or "fomm"]
    try:
        if ns.smoke:
            ns.size, ns.frames, ns.runs = smoke_settings(ns.config)
        print(_run(ns))
    except FommError as err:  # its way out in words; this command line's flag for it after
        flag = f" (--{err.setting[0]} {err.setting[1]})." if err.setting else ""
        print(f"error: {str(err).rstrip('.') + flag if flag else err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
