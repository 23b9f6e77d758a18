"""python.* judges over facts for every OS, 32/64-bit, Python 3.6 .. 3.14 (and one torch has not reached)."""
import pytest

from fomm_doctor.checks import python as pychk
from fomm_doctor.install import builds
from fomm_doctor.resources import load_wheels_index

INDEX = load_wheels_index()
TABLE = builds.load()
NEWEST = TABLE["releases"][0]["torch"]


def facts(version="3.11.7", os="linux", bits=64, impl="CPython", machine="x86_64", venv=True, env=None):
    platform = {"linux": "linux", "windows": "win32", "macos": "darwin"}[os]
    return {"platform": platform, "os": os, "machine": machine, "python_version": version, "implementation": impl,
            "bits": bits, "executable": "python", "prefix": "/venv" if venv else "/usr",
            "base_prefix": "/usr", "home": "/home/u", "env": env or {}}


def newest_for(mm, key):
    return next((r["torch"] for r in TABLE["releases"] if mm in r["python"] and r["builds"].get(key)), None)


@pytest.mark.parametrize("os,key", [("linux", "linux-x86_64"), ("windows", "windows-x86_64"), ("macos", "macos-arm64")])
@pytest.mark.parametrize("minor", range(6, 16))
def test_version_judged_against_torch_support(os, key, minor):
    mm = f"3.{minor}"
    r = pychk.judge_version(facts(f"{mm}.2", os=os, machine="arm64" if os == "macos" else "x86_64"), INDEX)
    newest_for_mm = newest_for(mm, key)
    assert r.id == "python.version"
    assert r.details["newest_torch"] == newest_for_mm
    if minor < 9:
        assert r.status == "fail" and "3.9" in r.summary and r.fix
    elif newest_for_mm != NEWEST:
        assert r.status == "warn" and newest_for_mm in r.summary and "3.11" in r.fix
    else:
        assert r.status == "ok" and r.fix is None


def test_fix_names_the_platforms_way_to_get_python():
    assert "winget" in pychk.judge_version(facts("3.8.10", os="windows"), INDEX).fix
    assert "py -3.11 -m venv" in pychk.judge_version(facts("3.8.10", os="windows"), INDEX).fix
    assert "brew" in pychk.judge_version(facts("3.8.10", os="macos"), INDEX).fix
    assert "python3.11 -m venv" in pychk.judge_version(facts("3.8.10", os="linux"), INDEX).fix


def test_python_no_torch_supports_yet_fails():
    r = pychk.judge_version(facts("3.16.0"), INDEX)
    assert r.status == "fail" and r.details["newest_torch"] is None


def test_intel_mac_is_capped_at_the_last_x86_64_torch():
    last_intel = next(r["torch"] for r in TABLE["releases"] if r["builds"].get("macos-x86_64"))
    r = pychk.judge_version(facts("3.11.4", os="macos", machine="x86_64"), INDEX)
    # no Python gets more on an Intel Mac, so 3.11 is as good as it gets there
    assert r.status == "ok" and r.details["newest_torch"] == last_intel and last_intel in r.summary
    assert pychk.judge_version(facts("3.13.1", os="macos", machine="x86_64"), INDEX).status == "fail"
    assert pychk.judge_version(facts("3.13.1", os="macos", machine="arm64"), INDEX).status == "ok"


@pytest.mark.parametrize("os", ["linux", "windows", "macos"])
def test_32_bit_python_fails_with_the_reason(os):
    r = pychk.judge_bits(facts(bits=32, os=os, machine="x86"), INDEX)
    assert r.status == "fail" and "32-bit" in r.summary and "64" in r.fix
    assert pychk.judge_bits(facts(bits=64, os=os), INDEX).status == "ok"


def test_implementation():
    assert pychk.judge_implementation(facts(), INDEX).status == "ok"
    r = pychk.judge_implementation(facts(impl="PyPy"), INDEX)
    assert r.status == "fail" and "PyPy" in r.summary


def test_venv_detection_and_platform_specific_fix():
    assert pychk.judge_venv(facts(venv=True), INDEX).status == "ok"
    conda = pychk.judge_venv(facts(venv=False, env={"CONDA_PREFIX": "/c", "CONDA_DEFAULT_ENV": "fomm"}), INDEX)
    assert conda.status == "ok" and "fomm" in conda.summary
    win = pychk.judge_venv(facts(venv=False, os="windows"), INDEX)
    assert win.status == "warn" and win.fix.startswith("py -m venv") and r"Scripts\activate" in win.fix
    lin = pychk.judge_venv(facts(venv=False, os="linux"), INDEX)
    assert lin.fix.startswith("python3 -m venv") and "bin/activate" in lin.fix


def test_chinese_summaries():
    r = pychk.judge_bits(facts(bits=32), INDEX, lang="zh")
    assert "32 位" in r.summary


def test_probe_platform_reports_this_interpreter():
    import struct
    import sys
    f = pychk.probe_platform()
    assert f["python_version"].startswith(f"{sys.version_info[0]}.{sys.version_info[1]}.")
    assert f["bits"] == struct.calcsize("P") * 8 and f["executable"] == sys.executable
