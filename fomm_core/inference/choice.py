"""Which path is `fast` on this machine: measured on first use, then cached. Any model family: the family gives
the engines to measure, this module knows none of them.

    choice = settle("fast", make, fingerprint, size=256, threads=2, int8=None, int8_refusal="...")
    choice.precision   # 'int8', 'bf16' or 'fp32': what runs
    choice.runner      # the int8 runner when int8 runs, else None
    choice.note        # one sentence: why this path (or why the one asked for is not used)
    choice.table       # the measured rows

make(precision) builds a CPU engine of the family at that precision; int8() the family's int8 runner (None for a
family without an int8 build). A speed claim holds for the CPU it was measured on: bf16 autocast is 3x the
original code on an AMD EPYC with AVX512-BF16 and slower than float32 on an Intel Xeon without AMX. So each
candidate (fp32 exact, bf16, and int8 where the family has it) animates the same few frames of a shipped face on
this machine, interleaved, fed as the caller will feed it (`batch` frames a call: 1 for the webcam), and `fast` is
the fastest that keeps PSNR >= MIN_PSNR against float32; exact float32 wins unless another path is at least
FASTER_BY faster. bf16 is not timed where torch has no bf16 kernels for the CPU (AVX2 and older: up to 300x
slower than float32, minutes a frame for LivePortrait); the note says so. Where exact float32 is then the only
candidate left, nothing is timed. The table is cached in the user cache folder, keyed by the weights, frame size,
batch, threads, CPU and library versions.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field

from fomm_core.cache import user_cache_dir
from fomm_core.device import BF16_WITHOUT_KERNELS, cpu_flags, cpu_has_bf16_kernels, cpu_name
from fomm_core.errors import FommError
from fomm_core.inference.int8 import MIN_PSNR, Int8Refused
from fomm_core.private import create_new, private_dir

FASTER_BY = 1.10       # a path that is not exact must beat exact float32 by this factor to be chosen
# A path's timed rounds that differ by more than this (slowest over fastest) were taken while something else
# used the CPU: such a table is used for this run and measured again next time, never cached.
MAX_SPREAD = 1.25
FLOAT_CANDIDATES = ("fp32", "bf16")  # every family's; int8 where the family has an int8 build
NOT_TIMED = "not timed: "   # a row's error that says why a candidate was left out, not that it failed
# exact float32's row when no other candidate can run here (bf16 without kernels, no int8 build): timing it alone
# chooses nothing, and cost a LivePortrait model 30 s at 128 px on an AMD EPYC Zen 3
ONLY_PATH = "the only path that runs here, so there is nothing to time it against"
TABLE_VERSION = 3  # raised when an engine changes what a path costs: tables measured before are stale


@dataclass(frozen=True)
class Row:
    """One measured path: frames/s on this machine and PSNR (dB) against exact float32; error when it could not run."""
    precision: str
    fps: float = 0.0
    psnr: float = float("inf")
    error: str = ""
    spread: float = 1.0    # slowest timed round over the fastest

    @property
    def steady(self) -> bool:
        return bool(self.error) or self.spread <= MAX_SPREAD

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
        return "fp32", _nothing_timed(rows)
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


def _nothing_timed(rows) -> str:
    """Why exact float32 runs when no row was timed: it was the only candidate, or nothing could be measured."""
    if any(r.precision == "fp32" and r.error == NOT_TIMED + ONLY_PATH for r in rows):
        return "fast = fp32: " + ONLY_PATH
    return "no path could be measured, so the exact float32 path runs"


# ----------------------------------------------------------------------------------------------------------------
# Measuring


def _key(fingerprint: str, size: int, threads: int, batch: int) -> str:
    import torch
    from importlib.metadata import PackageNotFoundError, version
    try:
        ov = version("openvino")  # the version string only: importing OpenVINO is not needed for a key
    except PackageNotFoundError:
        ov = "none"
    facts = [fingerprint, str(size), str(threads), f"batch {batch}", cpu_name(), " ".join(sorted(cpu_flags())), torch.__version__,
             ov, str(TABLE_VERSION)]
    return hashlib.sha256("\n".join(facts).encode()).hexdigest()[:32]


def _animators(make, candidates):
    """{precision: animator} for every candidate that can be built and is worth timing; {precision: error} for the
    others. bf16 without kernels for this CPU is left out: timing it would take up to 300x exact's time to learn
    that it loses (minutes a frame for LivePortrait)."""
    built, errors = {}, {}
    for precision in candidates:
        if precision == "bf16" and not cpu_has_bf16_kernels():
            errors[precision] = NOT_TIMED + BF16_WITHOUT_KERNELS
            continue
        try:
            built[precision] = make(precision)
        except Int8Refused as err:
            errors[precision] = str(err)
    return built, errors


def _time(animator, source, driving, batch: int):
    """(seconds, frames) of one animation of `driving`, `batch` frames a call (source set first, not timed)."""
    import torch
    animator.set_source(source)
    start = time.perf_counter()
    out = torch.cat([animator.animate(driving[i:i + batch]) for i in range(0, driving.shape[0], batch)])
    return time.perf_counter() - start, out


def measure(make, candidates, size: int, on_step=None, rounds: int = 2, batch: int = 4) -> list:
    """Rows for the animators make(precision) builds, timed interleaved on the same frames of a shipped face
    (after a warm-up), `batch` frames a call."""
    from fomm_core.inference.calibration import face_pairs
    from fomm_core.media.images import psnr
    built, errors = _animators(make, candidates)
    if list(built) == ["fp32"]:
        return [Row("fp32", error=NOT_TIMED + ONLY_PATH)] + [Row(name, error=text) for name, text in errors.items()]
    source, driving = face_pairs(size, seed=2, frames=max(4, batch), synthetic=0)[0]
    if on_step:  # from here on the CPU is being timed
        on_step(0, rounds, f"timing {', '.join(built)} on this CPU")
    outputs = {name: _time(a, source, driving, batch)[1] for name, a in built.items()}  # also the warm-up
    seconds = {name: [] for name in built}
    for r in range(rounds):
        if on_step:
            on_step(r, rounds, f"timing {', '.join(built)} on this CPU")
        for name, animator in built.items():
            seconds[name].append(_time(animator, source, driving, batch)[0])
    exact = outputs.get("fp32")
    rows = [Row(name, driving.shape[0] / min(seconds[name]),
                psnr(outputs[name], exact) if exact is not None and name != "fp32" else float("inf"),
                spread=max(seconds[name]) / max(min(seconds[name]), 1e-9))
            for name in built]
    return rows + [Row(name, error=text) for name, text in errors.items()]


def _load_table(path):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Row(**row) for row in data["rows"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_table(path, rows) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    rows_json = [dict(asdict(r), psnr=min(r.psnr, 999.0)) for r in rows]  # JSON has no infinity
    try:
        fd = create_new(tmp)
    except FileExistsError:
        return  # a leftover or planted name: measured again next time rather than written through it
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps({"rows": rows_json, "cpu": cpu_name()}, indent=2))
    os.replace(tmp, path)


def _private_folder():
    """The table folder when it is ours alone, else None: a table another user could write would choose our path."""
    try:
        return private_dir(user_cache_dir("fast-path"))
    except FommError:
        return None


def cached_rows(fingerprint: str, size: int, threads: int, measure_now, batch: int = 4) -> list:
    """The rows cached for these weights, size, threads and batch on this machine, else measure_now()'s (then
    cached, unless a path's rounds disagree by more than MAX_SPREAD: a busy machine's figures are not kept)."""
    folder = _private_folder()
    path = folder / (_key(fingerprint, size, threads, batch) + ".json") if folder else None
    rows = _load_table(path) if path and not path.is_symlink() else None
    if rows is None:
        rows = measure_now()
        if path and all(r.steady for r in rows):
            _save_table(path, rows)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# The policy


def settle(requested: str, make, fingerprint: str, size: int, *, threads: int, int8=None, int8_refusal: str = "",
           on_step=None, batch: int = 4) -> Choice:
    """What runs on the CPU for `requested` ('fast' or 'int8'), with the sentence that says why.

    make(precision) -> a CPU engine at that precision (int8 included where the family has it); int8() -> the
    family's int8 runner (Int8Refused says why not), or None for a family without one, `int8_refusal` saying so.
    batch: how many frames the caller gives each animate call (measured so, and cached per batch).
    """
    candidates = FLOAT_CANDIDATES + (("int8",) if int8 is not None else ())

    def rows():
        return cached_rows(fingerprint, size, threads, lambda: measure(make, candidates, size, on_step, batch=batch),
                           batch)
    if requested == "int8":
        try:
            if int8 is None:
                raise Int8Refused(int8_refusal)
            return Choice("int8", runner=int8())
        except Int8Refused as err:
            table = rows()
            fallback, why = pick_fast([r for r in table if r.precision != "int8"])
            return Choice(fallback, note=f"{str(err).rstrip('.')}; using {fallback} instead ({why}).", table=table)
    table = rows()
    precision, why = pick_fast(table)
    why += "".join(f" ({r.precision} {r.error})" for r in table
                   if r.error.startswith(NOT_TIMED) and r.precision != "fp32")  # fp32's is the note itself
    if not all(r.steady for r in table):
        why += " (measured while the machine was busy, so it is measured again next time)"
    return Choice(precision, note=why + ".", runner=int8() if precision == "int8" else None, table=table)
