"""`fomm-doctor check` end to end on this machine: the real facts, row order, exit codes, languages."""
import json
import os
import sys

import pytest
from conftest import run_cli


@pytest.fixture(scope="module")
def offline_json():
    return run_cli("check", "--json", "--offline")


def test_reports_the_real_facts_of_this_machine(offline_json):
    out = offline_json
    data = json.loads(out.stdout)
    rows = {c["id"]: c for c in data["checks"]}
    import torch
    assert rows["python.version"]["details"]["version"].startswith(f"{sys.version_info[0]}.{sys.version_info[1]}.")
    assert rows["python.bits"]["status"] == "ok" and rows["python.bits"]["details"]["bits"] == 64
    assert rows["torch.import"]["status"] == "ok" and rows["torch.import"]["details"]["version"] == torch.__version__
    assert rows["torch.import"]["details"]["cuda"] == torch.version.cuda
    assert rows["ffmpeg.bundled"]["status"] == "ok"
    assert not any(i.startswith("mirror.") for i in rows)  # --offline
    for required in ("python.implementation", "python.venv", "pip.version", "pip.index", "gpu.driver",
                     "gpu.torch_cuda", "opencv.import", "ffmpeg.path", "disk.space", "memory.ram"):
        assert required in rows
    failed = any(c["status"] == "fail" for c in data["checks"])
    assert data["ok"] is not failed
    assert out.returncode == (1 if failed else 0)


def test_the_driver_row_matches_the_kernel_module(offline_json):
    """The NVIDIA kernel module's own version file, read here independently, against what the check found."""
    rows = {c["id"]: c for c in json.loads(offline_json.stdout)["checks"]}
    driver = rows["gpu.driver"]
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8", errors="replace") as f:
            module = f.read()
    except OSError:
        module = None
    if module is None:
        assert driver["details"]["driver_version"] is None and driver["status"] == "warn"
    else:
        assert driver["details"]["driver_version"] and driver["details"]["driver_version"] in module


def test_rows_come_in_a_fixed_order_offline(offline_json):
    ids = [c["id"] for c in json.loads(offline_json.stdout)["checks"]]
    assert ids[:15] == ["python.version", "python.bits", "python.implementation", "python.venv", "pip.version",
                        "pip.index", "gpu.driver", "gpu.torch_cuda", "gpu.other", "torch.import", "opencv.import",
                        "ffmpeg.bundled", "ffmpeg.path", "disk.space", "memory.ram"]
    assert all(i.startswith("checkpoints.") for i in ids[15:]) and len(ids) > 15


def test_a_failing_check_gives_exit_1(tmp_path):
    # A torch that raises on import is shadowed in via PYTHONPATH for the doctor's child probe.
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('DLL load failed')\n")
    out = run_cli("check", "--json", "--offline", env={"PYTHONPATH": str(tmp_path)})
    rows = {c["id"]: c for c in json.loads(out.stdout)["checks"]}
    assert rows["torch.import"]["status"] == "fail" and out.returncode == 1


def test_table_and_languages():
    en = run_cli("check", "--offline", "--lang", "en")
    assert "python.version" in en.stdout and "torch" in en.stdout
    zh = run_cli("check", "--offline", "--lang", "zh", env={"PYTHONIOENCODING": "utf-8"})
    assert "修复" in zh.stdout or "项" in zh.stdout
    env_zh = run_cli("check", "--offline", "--json", env={"LANG": "zh_CN.UTF-8", "LC_ALL": ""})
    assert "位" in json.loads(env_zh.stdout)["checks"][1]["summary"]


def test_usage_errors_exit_2():
    bad_lang = run_cli("check", "--lang", "fr")
    assert bad_lang.returncode == 2 and "Traceback" not in bad_lang.stderr and "--lang" in bad_lang.stderr
    bad_timeout = run_cli("check", "--timeout", "0")
    assert bad_timeout.returncode == 2 and "Traceback" not in bad_timeout.stderr
    assert run_cli("check", "--no-such-flag").returncode == 2


@pytest.mark.parametrize("encoding", ["ascii", "gbk"])
def test_consoles_that_cannot_print_everything(encoding):
    import subprocess
    out = subprocess.run([sys.executable, "-m", "fomm_doctor", "check", "--offline", "--lang", "zh"],
                         capture_output=True, timeout=120, env=dict(os.environ, PYTHONIOENCODING=encoding))
    assert b"Traceback" not in out.stderr and out.returncode in (0, 1)
    text = out.stdout.decode(encoding)  # strict: every byte is valid in the console's encoding
    assert "python.version" in text
    if encoding == "gbk":
        assert "项" in text  # a Chinese Windows console (GBK) gets Chinese
    else:
        assert "Nothing failed" in text or "failed" in text  # ASCII gets English
