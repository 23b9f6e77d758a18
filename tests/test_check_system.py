"""disk.space and memory.ram judges, and the disk probe on real folders."""
import os

import pytest

from fomm_doctor.checks import system

GB = 1024 ** 3


def test_probe_disk_groups_places_on_one_filesystem(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b" / "not-yet-created"
    a.mkdir()
    places = system.probe_disk({"checkpoints": str(a), "pip cache": str(b)})
    assert len(places) == 1 and places[0]["purpose"] == "checkpoints, pip cache"
    assert places[0]["free_bytes"] > 0


def test_disk_judge_thresholds():
    def places(*free):
        return [{"purpose": f"p{i}", "path": f"/d{i}", "free_bytes": f} for i, f in enumerate(free)]
    assert system.judge_disk(places(50 * GB, 100 * GB)).status == "ok"
    tight = system.judge_disk(places(50 * GB, 3 * GB))
    assert tight.status == "warn" and "/d1" in tight.fix
    assert system.judge_disk(places(0.5 * GB)).status == "fail"
    assert system.judge_disk([{"purpose": "x", "path": "/x", "free_bytes": None}]).status == "skipped"


def test_pip_cache_locations():
    assert system.pip_cache_dir("linux", {}, "/home/u") == "/home/u/.cache/pip"
    assert system.pip_cache_dir("linux", {"PIP_CACHE_DIR": "/c"}, "/home/u") == "/c"
    assert system.pip_cache_dir("darwin", {}, "/Users/u") == "/Users/u/Library/Caches/pip"
    assert system.pip_cache_dir("win32", {"LOCALAPPDATA": "L"}, "H").replace("\\", "/") == "L/pip/Cache"


def test_ram_judge():
    assert system.judge_ram({"total_bytes": 16 * GB, "available_bytes": 9 * GB}).status == "ok"
    assert system.judge_ram({"total_bytes": 3 * GB, "available_bytes": 2.5 * GB}).status == "warn"
    assert system.judge_ram({"total_bytes": 16 * GB, "available_bytes": 1 * GB}).status == "warn"
    fail = system.judge_ram({"total_bytes": 1.5 * GB, "available_bytes": 1 * GB})
    assert fail.status == "fail" and fail.fix and "1.6 GB RAM" in fail.summary  # 1.5 GiB, in decimal units
    unknown = system.judge_ram({"total_bytes": None, "available_bytes": None, "error": "psutil is not installed"})
    assert unknown.status == "skipped" and "psutil is not installed" in unknown.summary


def _meminfo_bytes() -> dict:
    """/proc/meminfo read here, independently of the probe: {'MemTotal': bytes, ...}."""
    values = {}
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def test_ram_probe_gives_plausible_numbers():
    facts = system.probe_ram()
    assert 0 < facts["available_bytes"] <= facts["total_bytes"] and "error" not in facts


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="/proc/meminfo is Linux's")
def test_ram_probe_agrees_with_proc_meminfo():
    facts = system.probe_ram()
    meminfo = _meminfo_bytes()
    assert facts["total_bytes"] == meminfo["MemTotal"]  # the kernel's total is fixed while the machine runs
    assert system.judge_ram(facts).details["total_bytes"] == meminfo["MemTotal"]
