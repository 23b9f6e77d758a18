"""preflight.py: runs on any Python (2.7 included) and says why an interpreter cannot work."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PREFLIGHT = REPO / "fomm_doctor" / "preflight.py"
PYENV = Path.home() / ".pyenv" / "versions"

sys.path.insert(0, str(PREFLIGHT.parent))
import preflight  # noqa: E402  (loaded as a plain script module, as users run it)


def run(python):
    import os
    return subprocess.run([str(python), str(PREFLIGHT)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, FOMM_DOCTOR_LANG="en"))


@pytest.mark.parametrize("version", ["2.7.18", "3.6.15", "3.7.16"])
def test_old_interpreters_get_a_verdict_not_a_traceback(version):
    python = PYENV / version / "bin" / "python"
    if not python.exists():
        pytest.skip(f"pyenv {version} not installed")
    out = run(python)
    assert out.returncode == 1
    assert "Traceback" not in out.stdout + out.stderr
    want = preflight.recommended_python(preflight.load_index())
    assert "too old" in out.stdout and f"Install Python {want}" in out.stdout and "-m venv" in out.stdout
    assert version.rsplit(".", 1)[0] in out.stdout


def test_this_interpreter_passes():
    out = run(sys.executable)
    assert out.returncode == 0 and "OK" in out.stdout


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


def test_a_lone_copy_works_without_the_index(tmp_path):
    """Users may download just this file: it falls back to its own small table."""
    lone = tmp_path / "preflight.py"
    lone.write_text(PREFLIGHT.read_text())
    python = PYENV / "3.6.15" / "bin" / "python"
    out = subprocess.run([str(python if python.exists() else sys.executable), str(lone)], capture_output=True,
                         text=True, timeout=60)
    assert "Traceback" not in out.stderr
    assert out.returncode == (1 if python.exists() else 0)
    if python.exists():
        assert preflight.FALLBACK_NEWEST_TORCH["3.6"] in out.stdout


@pytest.mark.parametrize("version", ["2.7.18", "3.6.15"])
@pytest.mark.parametrize("env", [{"FOMM_DOCTOR_LANG": "zh", "PYTHONIOENCODING": "utf-8"},
                                 {"FOMM_DOCTOR_LANG": "zh", "LANG": "C", "LC_ALL": "C", "PYTHONIOENCODING": "ascii"}])
def test_chinese_verdict_or_english_on_a_console_that_cannot_show_it(version, env):
    import os
    python = PYENV / version / "bin" / "python"
    if not python.exists():
        pytest.skip(f"pyenv {version} not installed")
    out = subprocess.run([str(python), str(PREFLIGHT)], capture_output=True, timeout=60,
                         env=dict(os.environ, **env))
    assert out.returncode == 1 and b"Traceback" not in out.stderr
    text = out.stdout.decode("utf-8")
    if env["PYTHONIOENCODING"] == "utf-8":
        assert "太旧" in text and "修复" in text
    else:
        assert "too old" in text and text.isascii()
