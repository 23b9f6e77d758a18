"""The runner: judge_all over whole machines described by facts, and isolation of crashing probes/judges."""
import pytest

from fomm_doctor import checks
from fomm_doctor.checks import checkpoints as ckchk
from fomm_doctor.report import results_to_json
from fomm_doctor.resources import load_wheels_index

INDEX = load_wheels_index()
GB = 1024 ** 3


@pytest.fixture
def fresh_checkpoints(tmp_path, monkeypatch):
    """The checkpoint facts of a machine with nothing downloaded, from the real probe (an empty user store and
    the project's bundled checkpoint), so that a change in their shape shows here."""
    monkeypatch.setenv("FOMM_CHECKPOINTS_DIR", str(tmp_path / "store"))
    return ckchk.probe_checkpoints()


def windows_gamer_facts(checkpoints):
    """A Windows box: 32-bit-free but old pip, an RTX 3060 on a 560 driver, a cu130 torch it cannot run."""
    return {
        "platform": {"platform": "win32", "os": "windows", "machine": "AMD64", "python_version": "3.12.4",
                     "implementation": "CPython", "bits": 64, "executable": r"C:\Python312\python.exe",
                     "prefix": r"C:\Python312", "base_prefix": r"C:\Python312", "home": r"C:\Users\u", "env": {}},
        "pip_index": {"index_url": "https://pypi.org/simple", "extra_index_urls": [], "find_links": [],
                      "sources": {"index_url": "default"}, "files_read": [], "errors": []},
        "pip_version": {"version": "22.3"},
        "nvidia": {"driver_version": "560.94", "gpus": [{"name": "NVIDIA GeForce RTX 3060",
                                                         "compute_capability": "8.6"}], "source": "nvidia-smi"},
        "torch": {"installed": True, "ok": True, "version": "2.13.0+cu130", "cuda": "13.0", "cuda_available": False,
                  "arch_list": ["sm_75", "sm_80", "sm_86", "sm_90", "sm_120"], "tensor_op": True},
        "opencv": {"installed": True, "ok": True, "version": "4.10.0", "distributions": ["opencv-python==4.10.0"]},
        "ffmpeg_bundled": {"installed": True, "path": "ffmpeg.exe", "version": "7.1",
                           "encode": {"ok": True, "has_audio": True}},
        "ffmpeg_path": {"path": None},
        "disk": [{"purpose": "checkpoints, pip cache", "path": r"C:\Users\u", "free_bytes": 40 * GB}],
        "ram": {"total_bytes": 16 * GB, "available_bytes": 10 * GB},
        "checkpoints": checkpoints,
    }


def test_a_whole_windows_machine(fresh_checkpoints):
    rows = {r.id: r for r in checks.judge_all(windows_gamer_facts(fresh_checkpoints), INDEX)}
    assert rows["python.venv"].status == "warn" and rows["python.venv"].fix.startswith("py -m venv")
    assert rows["pip.version"].status == "warn" and rows["pip.version"].fix == "py -m pip install --upgrade pip"
    # 560 runs CUDA 12 only, and torch 2.15 ships CUDA 13 builds only: the driver holds this machine at 2.14
    assert rows["gpu.driver"].status == "warn" and "2.14" in rows["gpu.driver"].summary
    assert rows["gpu.torch_cuda"].status == "fail"  # cu130 needs a 580 driver
    assert not any(i.startswith("mirror.") for i in rows)
    # the bundled checkpoint verified, the published ones offered; no row saying the facts could not be read
    assert rows["checkpoints.synth-64"].status == "ok" and rows["checkpoints.published"].status == "warn"
    assert "checkpoints.manifest" not in rows
    assert results_to_json(list(rows.values()))["ok"] is False


def test_a_crashing_probe_or_judge_is_one_failed_row(fresh_checkpoints):
    facts = windows_gamer_facts(fresh_checkpoints)
    facts["opencv"] = {"probe_error": "RuntimeError: boom"}
    facts["ram"] = {"total_bytes": "not a number", "available_bytes": 1}  # makes the judge raise
    rows = {r.id: r for r in checks.judge_all(facts, INDEX)}
    assert rows["opencv.import"].status == "fail" and "boom" in rows["opencv.import"].summary
    assert rows["memory.ram"].status == "fail" and "crashed" in rows["memory.ram"].summary
    assert rows["torch.import"].status == "ok"  # the others are untouched


def test_mirrors_judged_when_probed(fresh_checkpoints):
    facts = windows_gamer_facts(fresh_checkpoints)
    urls = {"official": INDEX["mirrors"]["official"]["url"]}
    facts["mirror_urls"] = urls
    facts["mirrors"] = {"official": {"ok": True, "latency_ms": 120, "error": None}}
    rows = {r.id: r for r in checks.judge_all(facts, INDEX, lang="zh")}
    assert rows["mirror.official"].status == "ok" and "120 ms" in rows["mirror.official"].summary
