"""`fomm-doctor bench --smoke`: every path really runs in its own process and is compared with the reference."""
import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow(90)  # seconds on 2 cores: run among the first (conftest.py)

from conftest import run_cli

pytest.importorskip("torch", reason="torch is not installed")

from fomm_core.device import BF16_WITHOUT_KERNELS, cpu_has_bf16_kernels  # noqa: E402


def test_bench_smoke_json_compares_every_path():
    result = run_cli("bench", "--smoke", "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["size"] == 128 and report["frames"] == 2
    env = report["environment"]
    assert env["threads"] == 1 and env["torch"] and isinstance(env["avx512_bf16"], bool)
    rows = {row["name"]: row for row in report["rows"]}
    if not cpu_has_bf16_kernels():   # timing it would take up to 300x exact's time: its row says why it was not run
        assert rows.pop("bf16") == {"name": "bf16", "skipped": BF16_WITHOUT_KERNELS}
    assert all("error" not in rows[name] for name in ("exact", "fast", "bf16") if name in rows), rows
    assert report["weights"] == "stress"
    for row in rows.values():
        assert row["fps"] > 0 and row["peak_rss_mb"] > 50
        assert set(row["stages"]) == {"keypoints", "dense motion", "generator"}
        assert all(v >= 0 for v in row["stages"].values())
    assert rows["fast"]["psnr_vs_exact"] >= 35
    if report["reference_available"]:
        assert rows["exact"]["max_abs_vs_reference"] <= 1e-4
        assert rows["exact"]["speedup"] > 0 and "fps" in rows["reference"]


def test_bench_table_fits_80_columns_and_says_what_fast_picks():
    result = run_cli("bench", "--smoke", "--threads", "1", "--paths", "exact,fast", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    exact = [line for line in lines if line.startswith("exact ")]
    assert len(exact) == 1 and float(exact[0].split()[1]) > 0
    fast = [line for line in lines if line.startswith("fast: ")]
    assert len(fast) == 1 and "fast = " in fast[0] and "frames/s" in fast[0], lines
    assert "AVX512-BF16" in result.stdout


@pytest.mark.parametrize("args, words", [
    (("--size", "100"), "multiple of 128"),
    (("--paths", "turbo"), "unknown path"),
    (("--frames", "0"), "at least 1"),
    (("--weights", "no-such-file.pth"), "--weights must be"),
    (("--device", "cuda:7"), "cuda:7"),    # no such GPU here (a CPU torch, or fewer GPUs): one sentence
    (("--clips", "2,8"), "--clips sets the clip lengths of --memory; add --memory or leave --clips out."),
])
def test_bench_bad_options_say_one_sentence(args, words):
    result = run_cli("bench", *args)
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr


BEFORE_TORCH = textwrap.dedent("""
    import contextlib, io, json, sys
    from fomm_doctor.cli import main
    said = []
    for args in json.loads(sys.argv[1]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                main(["bench", *args])
            except SystemExit as exit:
                said.append([exit.code, err.getvalue()])
    print(json.dumps({"torch": "torch" in sys.modules, "said": said}))
""")


def test_bench_flags_are_refused_before_torch_loads():
    """Every flag but --device is checked before torch is imported (a second or more): each bad one is its
    sentence at once, for every family and for --memory."""
    cases = [["--size", "100"], ["--paths", "turbo"], ["--frames", "0"], ["--weights", "no-such-file.pth"],
             ["--clips", "2,8"], ["--model", "tpsmm", "--size", "64"], ["--config", "no-such-config"],
             ["--model", "liveportrait", "--size", "128"], ["--model", "liveportrait", "--paths", "exact,int8"],
             ["--model", "liveportrait", "--weights", "random"],
             ["--model", "liveportrait", "--memory", "--paths", "reference"],
             ["--model", "liveportrait", "--memory", "--clips", "16,4"]]
    proc = subprocess.run([sys.executable, "-c", BEFORE_TORCH, json.dumps(cases)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [code for code, _ in out["said"]] == [2] * len(cases), out
    assert all(text.startswith("error: ") and text.count("\n") == 1 for _, text in out["said"]), out
    assert not out["torch"], "a bad flag waited for torch to load"
    assert "--size must be a multiple of 128 for vox-256" in out["said"][0][1]
    assert "--size is 256 for liveportrait" in out["said"][7][1]


def test_bench_tpsmm_smoke_runs_the_original_tpsmm_code_and_our_paths():
    result = run_cli("bench", "--model", "tpsmm", "--smoke", "--threads", "1", "--json", "--paths",
                     "reference,exact,fast", timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["config"] == "tpsmm-vox-256" and report["size"] == 128
    rows = {row["name"]: row for row in report["rows"]}
    assert set(rows) >= {"exact", "fast"} and rows["fast"]["precision"] in ("fp32", "bf16", "int8")
    assert all("error" not in row and row["fps"] > 0 for row in rows.values())
    assert rows["fast"]["psnr_vs_exact"] >= 35
    if report["reference_available"]:  # ../shared/reference/tpsmm, or $FOMM_TPSMM_REFERENCE
        assert "original TPSMM code" in rows["reference"]["path"]
        # the TPS fits amplify float32 rounding; the original differs from itself by this much too (see
        # tests/test_tpsmm_equivalence.py): a PSNR, not a max difference, says the output is the same
        assert rows["exact"]["psnr_vs_reference"] > 80
    int8 = run_cli("bench", "--model", "liveportrait", "--paths", "exact,int8")
    assert int8.returncode == 2 and "unknown path int8 for liveportrait" in int8.stderr


def test_a_bf16_path_this_cpu_has_no_kernels_for_is_a_row_that_says_why():
    """Timing bf16 without kernels would take hours at the published size; its row (the speed table's and the
    memory table's) says why it was not run, in 80 columns, and only bf16 paths are left out."""
    from fomm_core.bench.memory import format_memory
    from fomm_core.bench.report import environment, format_text
    from fomm_core.bench.runners import ENGINE_PATHS, not_run_here
    from fomm_core.device import BF16_WITHOUT_KERNELS, cpu_has_bf16_kernels
    left_out = {path for path in ENGINE_PATHS if not_run_here(path, "cpu")}
    bf16_paths = {path for path, how in ENGINE_PATHS.items() if how["precision"] == "bf16"}
    assert left_out == (set() if cpu_has_bf16_kernels() else bf16_paths) and not_run_here("bf16", "cuda") == ""
    skipped = {"name": "bf16", "skipped": BF16_WITHOUT_KERNELS}
    speed = {"config": "vox-256", "size": 256, "frames": 4, "runs": 3, "weights": "stress",
             "environment": environment(1), "rows": [skipped]}
    memory = {"config": "liveportrait", "size": 256, "output_size": 512, "weights": "stress", "clips": [4, 16],
              "frame_mb": 3.0, "rows": [skipped]}
    for text in (format_text(speed), format_memory(memory)):
        lines = text.splitlines()
        assert all(len(line) <= 80 for line in lines), lines
        said = " ".join(" ".join(lines[lines.index(next(l for l in lines if l.startswith("bf16 "))):]).split())
        assert said.startswith("bf16 not run: " + BF16_WITHOUT_KERNELS), lines
