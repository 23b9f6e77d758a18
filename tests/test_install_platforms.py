"""The platforms a plan used to shrug at, planned with `install --dry-run --json` for another machine against
127.0.0.1 indexes: the recorded real PyPI page of torch, and PyTorch-index pages built from the published build
matrix (tests/data/index/make_pages.py; the win_arm64 rows cite the listings they come from).

- Windows on ARM64: PyPI has no torch wheel; the PyTorch index's CPU page has win_arm64 builds, so it is read.
- An AMD GPU on Windows: the PyTorch index has no ROCm build for Windows; the plan takes the CPU build and its
  `why` names AMD's own index, where the Windows ROCm builds are.
- A CPU-only Linux ARM machine: PyPI's aarch64 wheel is a CUDA 13 build (it requires the CUDA runtime); the plan
  takes the PyTorch index's +cpu build, and with no PyTorch index the last PyPI wheel that is a CPU build."""
import json
import os
from pathlib import Path

from conftest import run_cli
from httpfaults import FaultServer, Reply

DATA = Path(__file__).parent / "data" / "index"
ENV = {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_INDEX_URL": "", "PIP_EXTRA_INDEX_URL": ""}


def _pypi_page(req):
    return Reply(200, (DATA / "pypi_torch.json").read_bytes(), {"Content-Type": "application/vnd.pypi.simple.v1+json"})


def _pytorch_routes(names):
    return {f"/whl/{b}/torch/": (DATA / f"pytorch_{b}.html").read_bytes() for b in names}


def _dry_run(platform: str, *extra, pages=("cpu", "cu126", "cu130", "cu132", "rocm7.2", "rocm7.14", "xpu")):
    """(process, paths the PyTorch index was asked for) of a dry-run plan for Python 3.12 on `platform`."""
    with FaultServer({"/simple/torch/": _pypi_page}) as pypi, FaultServer(_pytorch_routes(pages)) as pt:
        proc = run_cli("install", "--dry-run", "--json", "--only", "torch", "--mirror", pypi.url("/simple/"),
                       "--pytorch-index", pt.url("/whl/"), "--official-pypi", pypi.url("/simple/"),
                       "--official-pytorch", pt.url("/whl/"), "--platform", platform, "--python-version", "3.12",
                       *extra, env=ENV, timeout=120)
        return proc, {h.path for h in pt.hits()}


def test_windows_on_arm64_gets_the_cpu_build_from_the_pytorch_index():
    proc, read = _dry_run("win_arm64", "--driver", "none")
    assert proc.returncode == 0, proc.stderr[-1500:]
    t = json.loads(proc.stdout)["plan"]["torch"]
    assert t["file"] == "torch-2.15.0+cpu-cp312-cp312-win_arm64.whl" and t["backend"] == "cpu"
    assert read == {"/whl/cpu/torch/"}  # no GPU page: Windows on ARM64 has no GPU build


def test_windows_on_arm64_with_only_pypi_says_where_the_builds_are():
    proc, _ = _dry_run("win_arm64", "--driver", "none", pages=())
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "windows-arm64" in lines[0] and "Traceback" not in proc.stderr, proc.stderr[-1500:]


def test_an_amd_gpu_on_windows_gets_the_cpu_build_and_the_why_names_amds_index():
    proc, read = _dry_run("win_amd64", "--driver", "none", "--gpu-arch", "gfx1100")
    assert proc.returncode == 0, proc.stderr[-1500:]
    t = json.loads(proc.stdout)["plan"]["torch"]
    assert t["backend"] == "cpu" and t["file"] == "torch-2.15.0-cp312-cp312-win_amd64.whl"
    assert "https://repo.radeon.com/rocm/windows/" in t["why"] and "Linux only on the PyTorch index" in t["why"]
    assert not any("rocm" in p for p in read)  # the PyTorch index has no Windows ROCm page to read


def test_an_explicit_rocm_backend_on_windows_is_one_sentence_naming_amds_index():
    proc, read = _dry_run("win_amd64", "--driver", "none", "--gpu-arch", "gfx1100", "--backend", "rocm7.2")
    assert proc.returncode == 2, proc.stderr[-1500:]
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "repo.radeon.com/rocm/windows/" in lines[0] and "--backend cpu" in lines[0]
    assert not read  # refused before any index was read


def test_a_cpu_only_linux_arm_machine_never_gets_the_cuda_wheel():
    proc, read = _dry_run("manylinux_2_28_aarch64", "--driver", "none")
    assert proc.returncode == 0, proc.stderr[-1500:]
    t = json.loads(proc.stdout)["plan"]["torch"]
    assert t["file"] == "torch-2.15.0+cpu-cp312-cp312-manylinux_2_28_aarch64.whl" and t["backend"] == "cpu"
    assert read == {"/whl/cpu/torch/"}


def test_a_cpu_only_linux_arm_machine_without_the_pytorch_index_takes_the_last_cpu_wheel_pypi_had():
    # PyPI's aarch64 wheels are CUDA 13 builds from 2.11 on (they require the CUDA runtime) and CPU builds
    # before (torch_builds.json, `pypi` cells): with no PyTorch index, 2.10.0 is the newest that needs no CUDA
    proc, _ = _dry_run("manylinux_2_28_aarch64", "--driver", "none", pages=())
    assert proc.returncode == 0, proc.stderr[-1500:]
    t = json.loads(proc.stdout)["plan"]["torch"]
    assert (t["file"], t["backend"]) == ("torch-2.10.0-cp312-cp312-manylinux_2_28_aarch64.whl", "cpu")
