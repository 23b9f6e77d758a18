"""torch.import / opencv.import: probed in a child Python against the real install and real broken modules."""
import subprocess
import sys

import pytest

from fomm_doctor.checks import opencv as cvchk
from fomm_doctor.checks import torch as torchchk

LINUX = {"platform": "linux", "os": "linux"}
WINDOWS = {"platform": "win32", "os": "windows"}


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A fresh virtual environment of this Python: neither torch nor cv2 in it."""
    where = tmp_path_factory.mktemp("bare")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    return str(where / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python"))


def fake_package(tmp_path, name, body):
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(body)
    return {"PYTHONPATH": str(tmp_path)}


def test_real_torch_on_this_machine():
    facts = torchchk.probe_torch()
    import torch
    assert facts["ok"] and facts["version"] == torch.__version__ and facts["cuda"] == torch.version.cuda
    assert facts["tensor_op"] is True
    r = torchchk.judge_import(facts, LINUX)
    assert r.status == "ok" and torch.__version__ in r.summary


def test_torch_raising_on_import_is_a_failed_row(tmp_path):
    env = fake_package(tmp_path, "torch", 'raise ImportError("DLL load failed while importing _C: '
                                          'The specified module could not be found.")\n')
    facts = torchchk.probe_torch(timeout=30, env=env)
    assert facts["ok"] is False and facts["installed"] is True and "DLL load failed" in facts["error"]
    linux = torchchk.judge_import(facts, LINUX)
    assert linux.status == "fail" and "DLL load failed" in linux.summary and "fomm-doctor install" in linux.fix
    win = torchchk.judge_import(facts, WINDOWS)
    assert "vc_redist.x64.exe" in win.fix


def test_hanging_torch_import_is_cut_off_at_the_limit(tmp_path):
    env = fake_package(tmp_path, "torch", "import time\ntime.sleep(600)\n")
    facts = torchchk.probe_torch(timeout=1.5, env=env)
    assert facts["timed_out"] is True and facts["ok"] is False and facts["installed"] is None
    assert facts["error"] == "import did not finish within 1.5 s"
    row = torchchk.judge_import(facts, LINUX)
    assert row.status == "fail" and "1.5 s" in row.summary


def test_torch_crashing_the_interpreter(tmp_path):
    env = fake_package(tmp_path, "torch", "import os\nos.abort()\n")
    facts = torchchk.probe_torch(timeout=30, env=env)
    assert facts["ok"] is False and "signal" in facts["error"]
    assert torchchk.judge_import(facts, LINUX).status == "fail"


def test_torch_whose_tensor_op_breaks(tmp_path):
    env = fake_package(tmp_path, "torch", "__version__ = '9.9'\nclass version:\n    cuda = None\n")
    facts = torchchk.probe_torch(timeout=30, env=env)
    assert facts["ok"] is False and facts["version"] == "9.9" and "AttributeError" in facts["error"]


def test_missing_torch_and_cv2(bare_python):
    facts = torchchk.probe_torch(timeout=30, python=bare_python)
    assert facts["installed"] is False
    r = torchchk.judge_import(facts, LINUX)
    assert r.status == "fail" and r.fix == "fomm-doctor install --yes"
    cv = cvchk.probe_opencv(timeout=30, python=bare_python)
    assert cv["installed"] is False
    assert cvchk.judge_import(cv, WINDOWS).fix == "py -m pip install opencv-python"


def test_real_cv2_and_a_broken_one(tmp_path):
    import cv2
    facts = cvchk.probe_opencv()
    assert facts["ok"] and facts["version"] == cv2.__version__ and facts["image_op"]
    assert cvchk.judge_import(facts, LINUX).status == "ok"
    env = fake_package(tmp_path, "cv2", 'raise ImportError("libGL.so.1: cannot open shared object file")\n')
    broken = cvchk.probe_opencv(timeout=30, env=env)
    r = cvchk.judge_import(broken, LINUX)
    assert r.status == "fail" and "libGL.so.1" in r.summary and r.fix.startswith("python3 -m pip")


def test_two_opencv_distributions_warn():
    facts = {"installed": True, "ok": True, "version": "4.10.0",
             "distributions": ["opencv-python==4.10.0", "opencv-python-headless==4.9.0"]}
    r = cvchk.judge_import(facts, WINDOWS)
    assert r.status == "warn"
    assert r.fix == ("py -m pip uninstall -y opencv-python opencv-python-headless && "
                     "py -m pip install opencv-python")


def test_a_broken_import_without_a_message_still_gets_its_row():
    for judge, name in ((cvchk.judge_import, "cv2"), (torchchk.judge_import, "torch")):
        row = judge({"installed": True, "ok": False, "error": "  \n"}, LINUX)
        assert row.status == "fail" and row.summary == f"{name} is broken: ?" and row.fix
