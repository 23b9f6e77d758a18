"""`bench --model liveportrait`: the original LivePortrait code (../shared/reference/liveportrait, or
$FOMM_LIVEPORTRAIT_REFERENCE) and our engine's paths on the same seeded weights and frames, each in its own process;
without the original code, one sentence; and our engine's peak memory streaming 512-px frames, flat with clip
length. A LivePortrait frame costs seconds on a CPU, so these runs take minutes.
"""
import json
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow(75)  # seconds on 2 cores: run among the first (conftest.py)

from conftest import run_cli

pytest.importorskip("torch", reason="torch is not installed")

from fomm_core.bench.reference import reference_available  # noqa: E402
from fomm_core.device import BF16_WITHOUT_KERNELS, cpu_has_bf16_kernels  # noqa: E402
from liveportrait_oracle import load_reference, reference_dir, seeded_set  # noqa: E402

FRAME_MB = 3 * 512 * 512 * 4 / 2 ** 20  # one output frame, float32


def needs_the_original():
    if not reference_available("liveportrait"):
        pytest.skip(f"the original LivePortrait code is not at {reference_dir()} (set FOMM_LIVEPORTRAIT_REFERENCE): "
                    "the stress weights are its networks, seeded")


def bench(*args, env=None, timeout=1500):
    """`python -m fomm_core.bench ARGS` in a subprocess (its own command line, as CI runs it)."""
    import os
    return subprocess.run([sys.executable, "-m", "fomm_core.bench", *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=timeout)


def test_smoke_runs_the_original_pipeline_and_our_paths_on_the_same_weights():
    needs_the_original()
    # `fast` is left out: its measurement costs a minute of frames here, and choosing by measurement is tested for
    # every family in tests/test_int8.py
    result = bench("--model", "liveportrait", "--smoke", "--threads", "1", "--paths", "reference,exact,bf16", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["config"], report["size"], report["output_size"], report["frames"], report["runs"]) == \
        ("liveportrait", 128, 256, 2, 1)  # a quarter of the published crop's pixels: the size is not the point
    assert report["reference_available"] and report["weights"] == "stress"
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == ["reference", "exact", "bf16"]
    if not cpu_has_bf16_kernels():   # two frames would take minutes (a conv3d 50x float32's time): its row says so
        assert rows.pop("bf16") == {"name": "bf16", "skipped": BF16_WITHOUT_KERNELS}
    assert all("error" not in row for row in rows.values()), rows
    assert "original LivePortrait code" in rows["reference"]["path"]
    assert "relative motion" in rows["exact"]["path"]
    for row in rows.values():
        # each process holds the five networks (130 M parameters, 520 MB in float32), never two sets of them
        assert row["fps"] > 0 and 500 < row["peak_rss_mb"] < 4000, row
        assert set(row["stages"]) == {"keypoints", "warp", "generator"} and all(v > 0 for v in row["stages"].values())
    # one frame at a time, as the original: bit for bit on the CPU, so at least within float32 rounding
    assert rows["exact"]["max_abs_vs_reference"] <= 1e-4 and rows["exact"]["psnr_vs_reference"] >= 80
    # bf16 autocasts the convolutions: these random weights amplify its rounding (26-28 dB), real ones less
    if "bf16" in rows:
        assert rows["bf16"]["precision"] == "bf16" and 20 < rows["bf16"]["psnr_vs_exact"] < 80


def test_without_the_original_code_the_stress_weights_are_one_sentence(tmp_path):
    absent = tmp_path / "absent"
    env = {"FOMM_LIVEPORTRAIT_REFERENCE": str(absent)}
    for result in (bench("--model", "liveportrait", "--smoke", "--paths", "reference", env=env, timeout=120),
                   run_cli("bench", "--model", "liveportrait", "--smoke", "--paths", "reference", env=env)):
        assert result.returncode == 2 and "Traceback" not in result.stderr
        message = result.stderr.strip()
        assert message.count("\n") == 0 and f"is not at {absent}" in message, message
        assert "set FOMM_LIVEPORTRAIT_REFERENCE" in message and "a folder of LivePortrait's five files" in message


def test_without_the_original_code_a_weights_folder_drops_the_reference_as_for_tpsmm(tmp_path):
    """As TPSMM's: the reference path is left out and the command says where the code was looked for (the five
    files here are never read: no path is left to run)."""
    folder = tmp_path / "set"
    folder.mkdir()
    for name in ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator",
                 "stitching_retargeting_module"):
        (folder / f"{name}.pth").write_bytes(b"")
    result = run_cli("bench", "--model", "liveportrait", "--smoke", "--paths", "reference", "--weights", folder,
                     env={"FOMM_LIVEPORTRAIT_REFERENCE": str(tmp_path / "absent")})
    assert result.returncode == 0, result.stderr
    assert "liveportrait 128px in, 256px out" in result.stdout and "reference " not in result.stdout
    assert f"is not at {tmp_path / 'absent'}: set FOMM_LIVEPORTRAIT_REFERENCE" in result.stderr


@pytest.mark.parametrize("args, words", [
    (("--size", "128"), "--size is 256 for liveportrait"),
    (("--paths", "exact,int8"), "unknown path int8 for liveportrait; choose from: reference, exact, bf16, fast, cached, fast-unfused."),
    (("--weights", "random"), "--weights must be stress or a folder of LivePortrait's five files"),
    (("--memory", "--paths", "reference"), "leave reference out of --paths"),
    (("--memory", "--clips", "16,4"), "--clips takes two or more frame counts, smallest first, like 4,16; not 16,4."),
])
def test_bad_options_say_one_sentence(args, words):
    needs_the_original()  # checked after these options, the stress weights need it
    result = run_cli("bench", "--model", "liveportrait", *args)
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr


def test_memory_streaming_512_px_frames_does_not_grow_with_the_clip():
    """Our exact engine streams 2 frames after the first in its own process; its memory is read after 1 and after
    2 (the bench's default is 4 and 16). Leaking one output frame per frame would add 3 MiB to the peak and to the
    live memory (freed memory handed back first); without a leak each moves by 0.3 MB at most (measured over 5
    frames in ten runs): the child fixes glibc's mmap threshold, so the peak no longer depends on where the heap
    happened to reuse its free space (it did by up to 87 MB). Half a leaked frame is the bar. The run's seeded set
    is given as --weights: the same networks the bench would seed."""
    needs_the_original()
    result = bench("--model", "liveportrait", "--memory", "--clips", "1,2", "--threads", "1", "--json",
                   "--weights", seeded_set(load_reference()))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["output_size"] == 512 and report["clips"] == [1, 2] and report["frame_mb"] == FRAME_MB
    assert report["fixed_mmap_threshold"] is (platform.libc_ver()[0] == "glibc")
    (row,) = report["rows"]
    assert row["name"] == "exact" and row["precision"] == "fp32", row
    peak, live = row["peak_mb"], row["live_mb"]
    assert live["1"] > 500 and peak["1"] > live["1"]  # the networks, and a frame's temporaries on top at its peak
    assert live["2"] - live["1"] < FRAME_MB / 2, row
    assert peak["2"] - peak["1"] < FRAME_MB / 2, row


def test_the_memory_reading_sees_a_leaked_frame(monkeypatch):
    """What the test above bars, shown: an engine that keeps each 512-px frame it returns raises the live memory
    and the peak by a frame per frame, read as the bench reads them (here in this process)."""
    import torch
    from fomm_core.bench import memory
    kept = []

    class Leaking:
        path, precision = "leaking", "fp32"

        def set_source(self, source):
            pass

        def animate(self, driving):
            kept.append(torch.rand(1, 3, 512, 512))   # [1, 3, 512, 512] float32: FRAME_MB, never freed
            return kept[-1]
    monkeypatch.setattr(memory, "make_engine", lambda *args, **kwargs: Leaking())
    monkeypatch.setattr(memory, "clip", lambda config, size, n: (torch.zeros(1, 3, 8, 8), torch.zeros(n, 3, 8, 8)))
    result = memory.stream_peaks("exact", "liveportrait", 256, clips=(1, 3))
    for reading in ("live_mb", "peak_mb"):
        grown = result[reading]["3"] - result[reading]["1"]
        assert 1.5 * FRAME_MB < grown < 3 * FRAME_MB, (reading, grown)   # two frames kept: 6 MiB


def test_the_memory_table_says_what_the_peak_is():
    from fomm_core.bench.memory import format_memory
    row = {"name": "exact", "peak_mb": {"4": 1430.2, "16": 1430.4}, "live_mb": {"4": 994.1, "16": 994.2},
           "growth_mb_per_frame": {"peak_mb": 0.02, "live_mb": 0.01}, "how": "peak"}
    report = {"config": "liveportrait", "size": 256, "output_size": 512, "weights": "stress", "clips": [4, 16],
              "frame_mb": FRAME_MB, "rows": [row], "fixed_mmap_threshold": True}
    text = format_memory(report)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert ["exact", "1430", "1430", "994", "994", "0.01"] in [line.split() for line in lines]
    assert "peak: what the engine holds at once (glibc was told to hand back every block of 128 KiB or more when " \
           "freed)" in " ".join(lines)
    assert "glibc" not in format_memory(dict(report, fixed_mmap_threshold=False))
