"""gpu.* : nvidia-smi probing (real fake executables), driver/CUDA tables, and torch-build fit judgements."""
import os
import stat
import subprocess

import pytest

from fomm_doctor.checks.gpu import nvidia
from fomm_doctor.resources import load_wheels_index

INDEX = load_wheels_index()
LINUX = {"platform": "linux", "os": "linux"}
WINDOWS = {"platform": "win32", "os": "windows"}
MACOS = {"platform": "darwin", "os": "macos"}


def fake_smi(tmp_path, script_body):
    exe = tmp_path / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + script_body)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


def test_probe_reads_a_real_nvidia_smi(tmp_path):
    exe = fake_smi(tmp_path, 'echo "580.65.06, NVIDIA GeForce RTX 3060, 8.6"\n'
                             'echo "580.65.06, NVIDIA GeForce GTX 1080 Ti, 6.1"\n')
    nv = nvidia.probe_nvidia(platform="linux", which=lambda name: exe, read_file=lambda p: None)
    assert nv["driver_version"] == "580.65.06" and nv["source"] == exe and nv["wsl"] is False
    assert nv["gpus"] == [{"name": "NVIDIA GeForce RTX 3060", "compute_capability": "8.6"},
                          {"name": "NVIDIA GeForce GTX 1080 Ti", "compute_capability": "6.1"}]


def test_probe_falls_back_when_driver_lacks_compute_cap(tmp_path):
    # Old drivers reject the compute_cap field; the probe asks again without it.
    exe = fake_smi(tmp_path, 'case "$1" in *compute_cap*) echo "Field compute_cap is not a valid field" >&2; exit 2;; esac\n'
                             'echo "470.82.01, Tesla K80"\n')
    nv = nvidia.probe_nvidia(platform="linux", which=lambda name: exe, read_file=lambda p: None)
    assert nv["driver_version"] == "470.82.01"
    assert nv["gpus"] == [{"name": "Tesla K80", "compute_capability": None}]


def test_probe_uses_kernel_version_file_without_nvidia_smi():
    text = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\nGCC version: 12"
    files = {"/proc/driver/nvidia/version": text}

    def no_smi(cmd, **kw):
        raise FileNotFoundError(cmd[0])
    nv = nvidia.probe_nvidia(run=no_smi, platform="linux", which=lambda n: None, read_file=files.get)
    assert nv == {"driver_version": "550.54.14", "gpus": [], "source": "/proc/driver/nvidia/version", "errors": []}
    sysfs = nvidia.probe_nvidia(run=no_smi, platform="linux", which=lambda n: None,
                             read_file={"/sys/module/nvidia/version": "535.183.01\n"}.get)
    assert sysfs["driver_version"] == "535.183.01"
    none = nvidia.probe_nvidia(run=no_smi, platform="linux", which=lambda n: None, read_file=lambda p: None)
    assert none["driver_version"] is None and none["source"] is None


def test_windows_locations_are_tried():
    tried = []

    def run(cmd, **kw):
        tried.append(cmd[0])
        if cmd[0].endswith(r"System32\nvidia-smi.exe"):
            return subprocess.CompletedProcess(cmd, 0, "560.94, NVIDIA GeForce RTX 4090, 8.9\n", "")
        raise FileNotFoundError(cmd[0])
    nv = nvidia.probe_nvidia(run=run, platform="win32", which=lambda n: None)
    assert nv["driver_version"] == "560.94" and nv["source"].endswith(r"System32\nvidia-smi.exe")
    assert tried[0] == r"C:\Windows\System32\nvidia-smi.exe" or tried[0].endswith(r"System32\nvidia-smi.exe")


def test_probe_on_this_machine_finds_no_driver():
    # This machine has no NVIDIA GPU (see field notes); the probe must say so, not crash.
    if os.path.exists("/proc/driver/nvidia/version"):
        pytest.skip("this machine has an NVIDIA driver")
    assert nvidia.probe_nvidia()["driver_version"] is None


@pytest.mark.parametrize("driver,osn,expected", [
    ("580.65.06", "linux", "cu132"), ("580.65.06", "windows", "cu132"),
    ("570.86.10", "linux", "cu129"), ("528.33", "windows", "cu129"), ("527.41", "windows", "cu118"),
    ("525.60.13", "linux", "cu129"), ("470.82.01", "linux", "cu118"), ("450.80.02", "linux", "cu118"),
    ("418.39", "linux", None), (None, "linux", None), ("580.65.06", "macos", None),
])
def test_max_cuda_for_driver(driver, osn, expected):
    got = nvidia.max_cuda_for_driver(driver, osn)
    assert (str(got) if got else None) == expected


def nv(driver, *gpus):
    return {"driver_version": driver, "gpus": [{"name": n, "compute_capability": cc} for n, cc in gpus],
            "source": "nvidia-smi" if driver else None}


def test_driver_judge_no_old_new():
    none = nvidia.judge_driver(nv(None), LINUX, INDEX)
    assert none.status == "warn" and "nvidia.com/drivers" in none.fix
    ancient = nvidia.judge_driver(nv("390.157", ("GeForce GT 730", "3.5")), WINDOWS, INDEX)
    assert ancient.status == "warn" and ancient.details["max_cuda"] is None
    old = nvidia.judge_driver(nv("470.82.01", ("Tesla T4", "7.5")), LINUX, INDEX)
    assert old.status == "warn" and old.details["max_cuda"] == "cu118"
    assert old.details["newest_torch_for_driver"] == "2.7"  # the last release with cu118 (torch_builds.json)
    mid = nvidia.judge_driver(nv("535.104.05", ("RTX 3060", "8.6")), LINUX, INDEX)
    assert mid.status == "warn" and mid.details["newest_torch_for_driver"] == "2.14"  # 2.15 is CUDA 13 only
    new = nvidia.judge_driver(nv("580.65.06", ("NVIDIA GeForce RTX 3060", "8.6")), LINUX, INDEX)
    assert new.status == "ok" and "cu132" in new.summary and "RTX 3060" in new.summary
    assert nvidia.judge_driver(nv(None), MACOS, INDEX).status == "skipped"


def torch_facts(version="2.13.0+cu126", cuda="12.6", available=True, arch_list=None):
    return {"ok": True, "installed": True, "version": version, "cuda": cuda, "cuda_available": available,
            "arch_list": arch_list}


def test_torch_cuda_fits_driver_and_arch():
    ok = nvidia.judge_torch_cuda(torch_facts(), nv("560.94", ("RTX 3060", "8.6")), WINDOWS, INDEX)
    assert ok.status == "ok"
    # cu130 needs 580+: a 560 driver cannot run it
    old_driver = nvidia.judge_torch_cuda(torch_facts("2.13.0+cu130", "13.0"), nv("560.94", ("RTX 3060", "8.6")),
                                      WINDOWS, INDEX)
    assert old_driver.status == "fail" and old_driver.details["max_cuda"] == "cu129"
    assert "fomm-doctor install" in old_driver.fix
    # a GTX 1080 (Pascal, 6.1) on a cu128 build: no kernels
    pascal = nvidia.judge_torch_cuda(torch_facts("2.8.0+cu128", "12.8"), nv("575.51", ("GTX 1080", "6.1")),
                                  LINUX, INDEX)
    assert pascal.status == "fail" and "no kernel image" in pascal.summary
    assert nvidia.judge_torch_cuda(torch_facts("2.8.0+cu126", "12.6"), nv("575.51", ("GTX 1080", "6.1")),
                                LINUX, INDEX).status == "ok"


def test_torch_arch_list_wins_over_table():
    facts = torch_facts("2.13.0+cu128", "12.8", arch_list=["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"])
    assert nvidia.judge_torch_cuda(facts, nv("580.65.06", ("RTX 3060", "8.6")), LINUX, INDEX).status == "ok"
    assert nvidia.judge_torch_cuda(facts, nv("580.65.06", ("Titan V", "7.0")), LINUX, INDEX).status == "fail"
    ptx = torch_facts("2.13.0+cu128", "12.8", arch_list=["sm_80", "compute_80"])
    assert nvidia.judge_torch_cuda(ptx, nv("580.65.06", ("H100", "9.0")), LINUX, INDEX).status == "ok"


def test_cpu_build_and_missing_driver_cases():
    cpu = torch_facts("2.13.0+cpu", None, False)
    assert nvidia.judge_torch_cuda(cpu, nv(None), LINUX, INDEX).status == "ok"
    wasted = nvidia.judge_torch_cuda(cpu, nv("580.65.06", ("RTX 4090", "8.9")), LINUX, INDEX)
    assert wasted.status == "warn" and wasted.fix == "fomm-doctor install --yes"
    no_driver = nvidia.judge_torch_cuda(torch_facts(available=False), nv(None), LINUX, INDEX)
    assert no_driver.status == "warn"
    assert nvidia.judge_torch_cuda({"ok": False}, nv(None), LINUX, INDEX).status == "skipped"
    not_available = nvidia.judge_torch_cuda(torch_facts(available=False), nv("560.94", ("RTX 3060", "8.6")),
                                         LINUX, INDEX)
    assert not_available.status == "warn"


def test_rocm_build_is_not_judged_against_nvidia():
    rocm = dict(torch_facts("2.13.0+rocm6.4", None, True), hip="6.4.1")
    assert nvidia.judge_torch_cuda(rocm, nv(None), LINUX, INDEX).status == "skipped"


def test_open_kernel_module_version_file():
    text = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.113.01  Release Build  (dvs-builder@U16)"
    assert nvidia.parse_proc_version(text) == "535.113.01"


def test_wsl_uses_the_windows_driver_table():
    # 527.41 is enough for cu121+ on Linux's table but not on Windows' (528.33): WSL runs the Windows driver.
    wsl = dict(nv("527.41", ("RTX 3060", "8.6")), wsl=True)
    assert nvidia.judge_driver(wsl, LINUX, INDEX).details["max_cuda"] == "cu118"
    assert nvidia.judge_driver(nv("527.41", ("RTX 3060", "8.6")), LINUX, INDEX).details["max_cuda"] == "cu129"
