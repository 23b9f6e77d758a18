"""Choosing the torch wheel from facts (OS, bitness, Python, driver, GPU) against recorded index pages."""
import sys
from pathlib import Path

import pytest

from fomm_doctor.install import plan as installer, sources as mirrors
from fomm_doctor.install.target import compute_tags, probe_interpreter
from fomm_doctor.install.index import parse_html_page, parse_json_page
from fomm_doctor.resources import load_wheels_index
from fomm_doctor.install.choose import NoFit

DATA = Path(__file__).parent / "data" / "index"
IDX = load_wheels_index()
PIP = {"index_url": "https://pypi.org/simple/", "extra_index_urls": [], "find_links": []}


def py(version="3.11.9", platform="linux", machine="x86_64", bits=64, glibc="2.35", macos=None):
    facts = {"version": version, "platform": platform, "machine": machine, "bits": bits, "glibc": glibc,
             "macos": macos, "implementation": "cpython", "executable": "/target/python", "in_venv": True}
    facts["tags"] = compute_tags(facts)
    return facts


def nv(driver=None, *gpus):
    return {"driver_version": driver, "gpus": [{"name": n, "compute_capability": cc} for n, cc in gpus]}


def recorded(sources, timeout, retries):
    """Answer each source from the recorded pages, as the live indexes would."""
    out, errors = [], {}
    for s in sources:
        if "pypi.org" in s.url or "tsinghua" in s.url:
            out.append((s, parse_json_page((DATA / "pypi_torch.json").read_text(), s.url + "torch/")))
        elif "/whl/" in s.url:
            backend = s.url.rstrip("/").rsplit("/", 1)[1]
            page = DATA / f"pytorch_{backend}.html"
            out.append((s, parse_html_page(page.read_text(), s.url + "torch/") if page.exists() else []))
        else:
            out.append((s, []))
            errors[s.url] = "unreachable"
    return out, errors


def plan(p, n=None, backend="auto", torch=None, mirror=None):
    opts = installer.InstallOptions(backend=backend, torch=torch, mirror=mirror, only=["torch"])
    return installer.make_plan(opts, py=p, nv=n or nv(), pip_cfg=PIP, idx=IDX, read=recorded,
                               installed=lambda exe: None)["torch"]


def test_linux_cpu_comes_from_pytorch_index_not_pypi_cuda_bundle():
    t = plan(py())
    assert t["version"] == "2.13.0+cpu" and t["backend"] == "cpu"
    assert t["file"] == "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert t["urls"][0].startswith("https://download-r2.pytorch.org/whl/cpu/") and len(t["sha256"]) == 64
    assert t["links_elsewhere"] == ["download-r2.pytorch.org"]


def test_windows_and_apple_silicon_get_pypi_cpu_build():
    w = plan(py(platform="win32", machine="AMD64", glibc=None))
    assert w["file"] == "torch-2.13.0-cp311-cp311-win_amd64.whl" and w["backend"] == "cpu"
    assert w["urls"][0].startswith("https://files.pythonhosted.org/")
    m = plan(py("3.12.1", platform="darwin", machine="arm64", glibc=None, macos="14.2"))
    assert m["file"] == "torch-2.13.0-cp312-cp312-macosx_11_0_arm64.whl"


def test_intel_mac_stops_at_2_2_2_and_says_so_for_new_python():
    t = plan(py("3.11.4", platform="darwin", machine="x86_64", glibc=None, macos="13.6"))
    assert t["file"] == "torch-2.2.2-cp311-cp311-macosx_10_9_x86_64.whl"
    with pytest.raises(NoFit, match=r"last torch for Intel Macs \(2.2.2\) supports Python up to 3.12"):
        plan(py("3.13.0", platform="darwin", machine="x86_64", glibc=None, macos="14.0"))


def test_32_bit_python_gets_a_sentence_not_a_crash():
    with pytest.raises(NoFit) as err:
        plan(py(platform="win32", machine="AMD64", bits=32, glibc=None))
    assert str(err.value) == "Torch has no wheels for 32-bit Python; install 64-bit Python 3.11."


@pytest.mark.parametrize("version,expect", [("3.8.18", "2.4.1+cpu"), ("3.9.18", "2.8.0+cpu"),
                                            ("3.10.13", "2.13.0+cpu"), ("3.12.1", "2.13.0+cpu"),
                                            ("3.13.0", "2.13.0+cpu"), ("3.14.0", "2.13.0+cpu")])
def test_newest_torch_per_python(version, expect):
    assert plan(py(version))["version"] == expect


def test_old_python_with_new_torch_explains():
    with pytest.raises(NoFit) as err:
        plan(py("3.8.18"), torch="2.6.0")
    assert str(err.value) == ("Python 3.8 is older than any torch >= 2.5 supports: the newest you can have is 2.4.1 "
                              "(`--torch 2.4.1`), or install Python 3.11.")
    with pytest.raises(NoFit, match="Python 3.5 is older than any torch we know supports; install Python 3.11"):
        plan(py("3.5.10"))
    with pytest.raises(NoFit, match="the last torch for Python 3.7 is 1.13.1.*install Python 3.11 for current torch"):
        plan(py("3.7.16"))
    with pytest.raises(NoFit, match="Python 3.15 is newer than any torch release supports yet"):
        plan(py("3.15.0"))


def test_driver_535_ampere_gets_cu128_not_cu130():
    t = plan(py(), nv("535.104.05", ("NVIDIA GeForce RTX 3090", "8.6")))
    assert (t["version"], t["backend"]) == ("2.13.0+cu128", "cu128")


def test_new_driver_blackwell_gets_pypi_cu130_default():
    t = plan(py(), nv("580.82.07", ("NVIDIA GeForce RTX 5090", "12.0")))
    assert t["file"] == "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl" and t["backend"] == "cu130"
    # the yanked 2.13.1 on the same page was not taken


def test_pascal_gets_cu126_because_cu128_has_no_kernels_for_it():
    t = plan(py(), nv("580.82.07", ("NVIDIA GeForce GTX 1080", "6.1")))
    assert t["backend"] == "cu126" and t["version"] == "2.13.0+cu126"
    with pytest.raises(NoFit, match=r"cu128 build has no kernels for your NVIDIA GeForce GTX 1080 \(compute "
                                    r"capability 6.1; cu128 covers 7.0 to 12.0\).*newest usable is cu126"):
        plan(py(), nv("580.82.07", ("NVIDIA GeForce GTX 1080", "6.1")), backend="cu128")


def test_old_driver_470():
    with pytest.raises(NoFit) as err:
        plan(py(), nv("470.239.06", ("Tesla T4", "7.5")), backend="cu128")
    assert str(err.value) == ("No CUDA 12.8 build for your driver 470 (it needs 525.60.13 or newer); newest "
                              "usable is cu118.")
    t = plan(py(), nv("470.239.06", ("Tesla T4", "7.5")))
    assert (t["version"], t["backend"]) == ("2.7.1+cu118", "cu118")


def test_kepler_gpu_falls_back_to_cpu():
    t = plan(py(), nv("470.239.06", ("Tesla K80", "3.5")))
    assert t["backend"] == "cpu" and "CPU build" in t["why"]


def test_windows_cuda_and_explicit_backend_and_torch():
    t = plan(py(platform="win32", machine="AMD64", glibc=None), nv("560.94", ("RTX 4070", "8.9")))
    assert t["file"] == "torch-2.13.0+cu128-cp311-cp311-win_amd64.whl"
    t = plan(py(), nv("560.94", ("RTX 4070", "8.9")), backend="cu118", torch="2.4.1")
    assert t["file"] == "torch-2.4.1+cu118-cp311-cp311-manylinux_2_28_x86_64.whl"
    with pytest.raises(NoFit, match="Macs have no NVIDIA CUDA builds"):
        plan(py(platform="darwin", machine="arm64", glibc=None, macos="14.0"), backend="cu126")
    with pytest.raises(NoFit, match="needs an NVIDIA driver and none was found"):
        plan(py(), backend="cu126")


def test_mirror_names_and_urls():
    m = mirrors.resolve_mirror("tsinghua", IDX, PIP)
    src = mirrors.torch_sources(m, "cpu", py(), PIP)
    assert [s.url for s in src] == ["https://pypi.tuna.tsinghua.edu.cn/simple/", "https://download.pytorch.org/whl/cpu/"]
    src = mirrors.torch_sources(m, "cpu", py(platform="win32", machine="AMD64", glibc=None), PIP)
    assert [s.role for s in src] == ["pypi"]  # Windows CPU torch is on PyPI: Tsinghua is enough
    m = mirrors.resolve_mirror("aliyun-pytorch", IDX, PIP)
    src = mirrors.torch_sources(m, "cu121", py(), PIP)
    assert src[-1].kind == "find-links" and src[-1].url == "https://mirrors.aliyun.com/pytorch-wheels/cu121/"
    with pytest.raises(Exception, match="not a mirror we know"):
        mirrors.resolve_mirror("nope", IDX, PIP)


def test_auto_mirror_takes_the_fastest_that_answers():
    def probe(urls, timeout):
        lat = {"tsinghua": 40, "official": 300, "ustc": 25, "sjtug-pytorch": 60, "pytorch": 500}
        return {n: {"ok": True, "latency_ms": lat[n], "status": 200} if n in lat
                else {"ok": False, "latency_ms": None, "status": None} for n in urls}
    m = mirrors.resolve_mirror("auto", IDX, PIP, probe=probe)
    assert m["pypi_name"] == "ustc" and m["pytorch"]["name"] == "sjtug-pytorch"


def test_tags_computed_like_packaging_for_this_interpreter():
    facts = probe_interpreter(sys.executable)
    assert facts["tags_source"] == "packaging"
    assert compute_tags(facts) == facts["tags"] or set(compute_tags(facts)) == set(facts["tags"])


def test_old_interpreter_without_packaging_still_answers():
    old = Path.home() / ".pyenv/versions/3.8.18/bin/python"
    if not old.exists():
        pytest.skip("pyenv 3.8 not installed")
    facts = probe_interpreter(str(old))
    assert facts["version"].startswith("3.8.") and facts["bits"] == 64
    assert any(t.startswith("cp38-cp38-manylinux") for t in facts["tags"])
