"""`fomm-doctor bench --smoke`: every path really runs in its own process and is compared with the reference."""
import json

import pytest

from conftest import run_cli

pytest.importorskip("torch", reason="torch is not installed")


def test_bench_smoke_json_compares_every_path():
    result = run_cli("bench", "--smoke", "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["size"] == 128 and report["frames"] == 2
    env = report["environment"]
    assert env["threads"] == 1 and env["torch"] and isinstance(env["avx512_bf16"], bool)
    rows = {row["name"]: row for row in report["rows"]}
    assert "error" not in rows["exact"] and "error" not in rows["fast"]
    for row in rows.values():
        assert row["fps"] > 0 and row["peak_rss_mb"] > 50
        assert set(row["stages"]) == {"keypoints", "dense motion", "generator"}
        assert all(v >= 0 for v in row["stages"].values())
    assert rows["fast"]["psnr_vs_exact"] >= 35
    if report["reference_available"]:
        assert rows["exact"]["max_abs_vs_reference"] <= 1e-4
        assert rows["exact"]["speedup"] > 0 and "fps" in rows["reference"]


def test_bench_table_for_one_path():
    result = run_cli("bench", "--smoke", "--threads", "1", "--paths", "exact", env={"COLUMNS": "220"})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip("│ ").startswith("exact")]
    assert len(lines) == 1 and "fp32 exact" in lines[0]
    fps = float(lines[0].split("│")[2])
    assert fps > 0
    assert "AVX512-BF16" in result.stdout


@pytest.mark.parametrize("args, words", [
    (("--size", "100"), "multiple of 128"),
    (("--paths", "turbo"), "unknown path"),
    (("--frames", "0"), "at least 1"),
])
def test_bench_bad_options_say_one_sentence(args, words):
    result = run_cli("bench", *args)
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr
