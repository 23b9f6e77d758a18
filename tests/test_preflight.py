"""preflight.py: runs on any Python (2.7 included) and says why an interpreter cannot work.

It is run under every interpreter this machine has among 2.7 and 3.6-3.13 (pyenv's, and pythonX.Y on PATH);
one that is missing is skipped with its name in the reason.
"""
import functools
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PREFLIGHT = REPO / "fomm_doctor" / "preflight.py"
TABLE = json.loads((REPO / "fomm_doctor" / "install" / "torch_builds.json").read_text(encoding="utf-8"))
EXPECTED = ["2.7"] + [f"3.{minor}" for minor in range(6, 14)]

sys.path.insert(0, str(PREFLIGHT.parent))
import preflight  # noqa: E402  (loaded as a plain script module, as users run it)


def pyenv_root() -> Path:
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv:
        out = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    return Path.home() / ".pyenv"


def minor_of(python: str):
    """'3.6' for an interpreter that runs and says so, else None (a pyenv shim of a version not selected
    fails here)."""
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def find_interpreters() -> dict:
    """{'3.6': path, ...} for every interpreter found, each checked by running it: once, in the test process that
    runs these tests (run at collection, every test process would start the eighteen)."""
    candidates = sorted(glob.glob(str(pyenv_root() / "versions" / "*" / "bin" / "python")))
    candidates += [shutil.which(f"python{mm}") for mm in EXPECTED]
    found = {}
    for python in filter(None, candidates):
        mm = minor_of(python)
        if mm in EXPECTED:
            found.setdefault(mm, python)
    return found


WHERE = f"looked for {pyenv_root() / 'versions' / '*' / 'bin' / 'python'} and pythonX.Y on PATH"


def interpreter(mm: str) -> str:
    if mm not in find_interpreters():
        pytest.skip(f"Python {mm} is not installed on this machine ({WHERE})")
    return find_interpreters()[mm]


def run(python, script=PREFLIGHT, **env):
    return subprocess.run([str(python), str(script)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, FOMM_DOCTOR_LANG="en", **env))


def newest_torch(mm: str):
    """Read straight from the table: releases are listed newest first."""
    return next((r["torch"] for r in TABLE["releases"] if mm in r["python"]), None)


def recommended() -> str:
    return min(TABLE["releases"][0]["python"], key=lambda v: tuple(map(int, v.split("."))))


@pytest.mark.parametrize("mm", EXPECTED)
def test_every_interpreter_gets_its_real_verdict(mm):
    out = run(interpreter(mm))
    text = out.stdout
    assert "Traceback" not in text + out.stderr
    assert f"fomm-doctor preflight: Python {mm}." in text
    want, current, newest = recommended(), TABLE["releases"][0]["torch"], newest_torch(mm)
    if tuple(map(int, mm.split("."))) < (3, 9):
        assert out.returncode == 1, text
        assert f"FAIL: Python {mm} is too old for fomm-doctor (it needs 3.9 or newer)" in text
        assert (f"the newest torch for it is {newest} (current: {current})" if newest
                else "no torch release supports it") in text
        assert f"Install Python {want} with " in text and f"`python{want} -m venv fomm-env`" in text
        assert "OK:" not in text
        return
    assert out.returncode == 0, text
    assert "FAIL" not in text and "OK: this interpreter can run fomm-doctor" in text
    if newest != current:
        assert f"note: Python {mm} can have torch up to {newest}; Python {want} gets {current}." in text
    else:
        assert "note:" not in text


def test_diagnose_32_bit_and_other_implementations():
    index = preflight.load_index()
    ok, problems, notes = preflight.diagnose((3, 11, 7), 32, "CPython", "Windows", index)
    assert not ok and "32-bit" in problems[0] and "winget" in notes[-1]
    ok, problems, _ = preflight.diagnose((3, 11, 7), 64, "PyPy", "Linux", index)
    assert not ok and "PyPy" in problems[0]
    ok, problems, notes = preflight.diagnose((3, 9, 18), 64, "CPython", "Darwin", index)
    assert ok and not problems and "up to 2.8;" in notes[0]
    ok, problems, _ = preflight.diagnose((3, 16, 0), 64, "CPython", "Linux", index)
    assert not ok


def test_the_policy_read_from_the_table():
    """The package asks the preflight for MIN_PYTHON, the version parser and 'which torch can this Python have'."""
    from fomm_doctor import preflight as policy
    from fomm_doctor.checks import python as check_python
    from fomm_doctor.install import builds
    from fomm_doctor.preflight import MIN_PYTHON, releases_for_python
    assert builds.version_key is policy.version_key and check_python.MIN_PYTHON is MIN_PYTHON
    assert MIN_PYTHON == (3, 9)
    assert releases_for_python(TABLE, "3.9")[0] == newest_torch("3.9")
    assert releases_for_python(TABLE, "3.12", "macos-x86_64") == ["2.2"]  # the last torch for Intel Macs
    assert releases_for_python(TABLE, "3.13", "macos-x86_64") == []
    assert builds.recommended_python() == recommended()
    assert preflight.version_key("2.14.1+cu126") == (2, 14, 1) and preflight.version_key("rocm6.4") == (6, 4)
    assert preflight.version_key(None) == () and preflight.version_key("580.65.06") == (580, 65, 6)


def test_a_lone_copy_works_without_the_index(tmp_path):
    """Users may download just this file: on this interpreter it still says OK, with no table beside it."""
    lone = tmp_path / "preflight.py"
    lone.write_text(PREFLIGHT.read_text(encoding="utf-8"), encoding="utf-8")
    out = run(sys.executable, lone)
    assert out.returncode == 0 and "Traceback" not in out.stderr and "OK:" in out.stdout


@pytest.mark.parametrize("mm", ["2.7", "3.6"])
def test_a_lone_copy_uses_its_own_table_on_an_old_python(tmp_path, mm):
    lone = tmp_path / "preflight.py"
    lone.write_text(PREFLIGHT.read_text(encoding="utf-8"), encoding="utf-8")
    out = run(interpreter(mm), lone)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    newest = preflight.FALLBACK_NEWEST_TORCH.get(mm)
    assert (f"the newest torch for it is {newest}" if newest else "no torch release supports it") in out.stdout
    assert f"Install Python {preflight.FALLBACK_RECOMMENDED} " in out.stdout


@pytest.mark.parametrize("mm", ["2.7", "3.6"])
@pytest.mark.parametrize("env", [{"FOMM_DOCTOR_LANG": "zh", "PYTHONIOENCODING": "utf-8"},
                                 {"FOMM_DOCTOR_LANG": "zh", "LANG": "C", "LC_ALL": "C", "PYTHONIOENCODING": "ascii"}])
def test_chinese_verdict_or_english_on_a_console_that_cannot_show_it(mm, env):
    out = subprocess.run([interpreter(mm), str(PREFLIGHT)], capture_output=True, timeout=60,
                         env=dict(os.environ, **env))
    assert out.returncode == 1 and b"Traceback" not in out.stderr
    text = out.stdout.decode("utf-8")
    if env["PYTHONIOENCODING"] == "utf-8":
        assert "太旧" in text and "修复" in text
    else:
        assert "too old" in text and text.isascii()
