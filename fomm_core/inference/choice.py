"""Which path is `fast` on this machine: measured on first use, then cached.

    choice = resolve_path("fast", generator, kp_detector, size=256, threads=2, on_step=None)
    choice.precision   # 'int8', 'bf16' or 'fp32': what runs
    choice.runner      # the Int8Runner when int8 runs, else None
    choice.note        # one sentence: why this path (or why the one asked for is not used)
    choice.table       # the measured rows (fast only)

A speed claim holds for the CPU it was measured on: bf16 autocast is 3x the original code on an AMD EPYC with
AVX512-BF16 and slower than float32 on an Intel Xeon without AMX. So each candidate (fp32 exact, bf16, int8)
animates the same few frames of a shipped face on this machine, interleaved, and `fast` is the fastest that
keeps PSNR >= MIN_PSNR against float32; exact float32 wins unless another path is at least FASTER_BY faster.
The table is cached in the user cache folder, keyed by the weights, frame size, threads, CPU and library versions.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field

from fomm_core.cache import user_cache_dir
from fomm_core.inference.int8 import MIN_PSNR, Int8Refused, load_or_build, weights_fingerprint

FASTER_BY = 1.10       # a path that is not exact must beat exact float32 by this factor to be chosen
CANDIDATES = ("fp32", "bf16", "int8")
TABLE_VERSION = 2  # raised when an engine changes what a path costs: tables measured before are stale


@dataclass(frozen=True)
class Row:
    """One measured path: frames/s on this machine and PSNR (dB) against exact float32; error when it could not run."""
    precision: str
    fps: float = 0.0
    psnr: float = float("inf")
    error: str = ""

    @property
    def usable(self) -> bool:
        return not self.error and self.psnr >= MIN_PSNR


@dataclass
class Choice:
    precision: str
    note: str = ""
    runner: object = None
    table: list = field(default_factory=list)


def pick_fast(rows) -> tuple[str, str]:
    """(precision, why) from measured rows: the fastest usable one, exact float32 unless beaten by FASTER_BY."""
    usable = [r for r in rows if r.usable]
    exact = next((r for r in usable if r.precision == "fp32"), None)
    if not usable:
        return "fp32", "no path could be measured, so the exact float32 path runs"
    best = max(usable, key=lambda r: r.fps)
    others = ", ".join(f"{r.precision} {r.fps:.2f}" for r in rows if r is not best and not r.error)
    if exact is not None and best is not exact and best.fps < FASTER_BY * exact.fps:
        return "fp32", (f"fast = fp32: {best.precision} is only {best.fps / exact.fps:.2f}x exact float32 here "
                        f"({best.fps:.2f} vs {exact.fps:.2f} frames/s), not worth leaving the exact path")
    if best is exact:
        return "fp32", f"fast = fp32: the fastest path on this CPU ({exact.fps:.2f} frames/s; {others})"
    ratio = f", {best.fps / exact.fps:.1f}x exact float32" if exact else ""
    return best.precision, (f"fast = {best.precision}: {best.fps:.2f} frames/s{ratio} ({others}), "
                            f"PSNR {best.psnr:.1f} dB against float32")


# ----------------------------------------------------------------------------------------------------------------
# Measuring


def _key(fingerprint: str, size: int, threads: int) -> str:
    import torch
    from importlib.metadata import PackageNotFoundError, version
    from fomm_core.inference.engine import cpu_flags, cpu_name
    try:
        ov = version("openvino")  # the version string only: importing OpenVINO is not needed for a key
    except PackageNotFoundError:
        ov = "none"
    facts = [fingerprint, str(size), str(threads), cpu_name(), " ".join(sorted(cpu_flags())), torch.__version__,
             ov, str(TABLE_VERSION)]
    return hashlib.sha256("\n".join(facts).encode()).hexdigest()[:32]


def _fomm_factory(generator, kp_detector, size, threads, on_step, runner, fingerprint=None):
    """precision -> a FOMM Animator on the CPU (building or loading the int8 model when asked for it)."""
    from fomm_core.inference.engine import Animator
    state = {"runner": runner}

    def make(precision):
        if precision == "int8" and state["runner"] is None:
            state["runner"] = load_or_build(generator, kp_detector, size, threads=threads, on_step=on_step,
                                            fingerprint=fingerprint)
        return Animator(generator, kp_detector, device="cpu", precision=precision,
                        int8_runner=state["runner"] if precision == "int8" else None)
    return make


def _animators(make, candidates):
    """{precision: animator} for every candidate that can be built; {precision: error} for the others."""
    built, errors = {}, {}
    for precision in candidates:
        try:
            built[precision] = make(precision)
        except Int8Refused as err:
            errors[precision] = str(err)
    return built, errors


def _time(animator, source, driving):
    """(seconds, frames) of one animation of `driving` (source set first, not timed)."""
    animator.set_source(source)
    start = time.perf_counter()
    out = animator.animate(driving)
    return time.perf_counter() - start, out


def measure(generator, kp_detector, size: int, threads: int, on_step=None, runner=None, rounds: int = 2,
            fingerprint=None) -> list:
    """Rows for every FOMM candidate, timed interleaved on the same frames of a shipped face (after a warm-up)."""
    make = _fomm_factory(generator, kp_detector, size, threads, on_step, runner, fingerprint)
    return measure_paths(make, CANDIDATES, size, on_step, rounds)


def measure_paths(make, candidates, size: int, on_step=None, rounds: int = 2) -> list:
    """Rows for the animators make(precision) builds, timed interleaved on the same frames of a shipped face."""
    from fomm_core.inference.calibration import face_pairs
    from fomm_core.media.images import psnr
    built, errors = _animators(make, candidates)
    source, driving = face_pairs(size, seed=2, frames=4, synthetic=0)[0]
    outputs = {name: _time(a, source, driving)[1] for name, a in built.items()}  # also the warm-up
    seconds = {name: [] for name in built}
    for r in range(rounds):
        if on_step:
            on_step(r, rounds, f"timing {', '.join(built)} on this CPU")
        for name, animator in built.items():
            seconds[name].append(_time(animator, source, driving)[0])
    exact = outputs.get("fp32")
    rows = [Row(name, driving.shape[0] / min(seconds[name]),
                psnr(outputs[name], exact) if exact is not None and name != "fp32" else float("inf"))
            for name in built]
    return rows + [Row(name, error=text) for name, text in errors.items()]


def _load_table(path):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Row(**row) for row in data["rows"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_table(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    rows_json = [dict(asdict(r), psnr=min(r.psnr, 999.0)) for r in rows]  # JSON has no infinity
    from fomm_core.inference.engine import cpu_name
    tmp.write_text(json.dumps({"rows": rows_json, "cpu": cpu_name()}, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def measured_table(generator, kp_detector, size: int, threads: int, on_step=None, runner=None,
                   fingerprint=None) -> list:
    """The cached rows for these FOMM weights on this machine, measured now when there are none."""
    fingerprint = fingerprint or weights_fingerprint(generator, kp_detector)
    return cached_rows(fingerprint, size, threads,
                       lambda: measure(generator, kp_detector, size, threads, on_step, runner, fingerprint=fingerprint))


def cached_rows(fingerprint: str, size: int, threads: int, measure_now) -> list:
    """The rows cached for these weights, size and threads on this machine, else measure_now()'s (then cached)."""
    path = user_cache_dir("fast-path", _key(fingerprint, size, threads) + ".json")
    rows = _load_table(path)
    if rows is None:
        rows = measure_now()
        _save_table(path, rows)
    return rows


def resolve_float_path(requested: str, make, fingerprint: str, size: int, *, threads: int, on_step=None,
                       int8_refusal: str = "") -> Choice:
    """`fast` among the torch paths only (fp32, bf16), for a model without an int8 build; int8 asked for runs
    the fast pick, with `int8_refusal` saying why."""
    rows = cached_rows(fingerprint, size, threads,
                       lambda: measure_paths(make, ("fp32", "bf16"), size, on_step))
    precision, why = pick_fast(rows)
    if requested == "int8":
        return Choice(precision, note=f"{int8_refusal.rstrip('.')}; using {precision} instead ({why}).",
                      table=rows)
    return Choice(precision, note=why + ".", table=rows)


# ----------------------------------------------------------------------------------------------------------------
# The policy


def _without_int8(generator, kp_detector, size, threads, on_step, fingerprint) -> str:
    rows = measured_table(generator, kp_detector, size, threads, on_step, fingerprint=fingerprint)
    rows = [r for r in rows if r.precision != "int8"]
    return pick_fast(rows)[0]


def resolve_path(requested: str, generator, kp_detector, size: int, *, threads: int, on_step=None) -> Choice:
    """What runs on the CPU for `requested` ('fast' or 'int8'), with the sentence that says why."""
    fingerprint = weights_fingerprint(generator, kp_detector)  # once: it keys both caches
    if requested == "int8":
        try:
            return Choice("int8", runner=load_or_build(generator, kp_detector, size, threads=threads,
                                                       on_step=on_step, fingerprint=fingerprint))
        except Int8Refused as err:
            fallback = _without_int8(generator, kp_detector, size, threads, on_step, fingerprint)
            return Choice(fallback, note=f"{str(err).rstrip('.')}; using {fallback} instead.")
    rows = measured_table(generator, kp_detector, size, threads, on_step, fingerprint=fingerprint)
    precision, why = pick_fast(rows)
    runner = None
    if precision == "int8":
        runner = load_or_build(generator, kp_detector, size, threads=threads, on_step=on_step,
                               fingerprint=fingerprint)
    return Choice(precision, note=why + ".", runner=runner, table=rows)
