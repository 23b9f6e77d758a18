"""Choosing torch for 30+ real machines against real listings: the PyPI page of torch recorded through pip's
index (tests/data/index/pypi_torch.json, every release to 2.15.0) and PyTorch-index pages built from the
published build matrix (tests/data/index/make_pages.py, each row's source in fomm_doctor/install/torch_builds.json).
"""
import sys
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import pytest

from fomm_doctor.install import plan as installer
from fomm_doctor.install import sources as mirrors
from fomm_doctor.install.backend import Backend
from fomm_doctor.install.choose import NoFit
from fomm_doctor.install.index import parse_html_page, parse_json_page
from fomm_doctor.install.machine import AmdGpu, Gpus, Interpreter, Nvidia, NvidiaGpu
from fomm_doctor.install.options import InstallOptions, Probes
from fomm_doctor.install.target import compute_tags, probe_interpreter
from fomm_doctor.resources import load_wheels_index

DATA = Path(__file__).parent / "data" / "index"
IDX = load_wheels_index()
PIP = {"index_url": "https://pypi.org/simple/", "extra_index_urls": [], "find_links": []}


def py(version="3.12.3", platform="linux", machine="x86_64", bits=64, glibc="2.35", macos=None):
    facts = {"version": version, "platform": platform, "machine": machine, "bits": bits, "glibc": glibc,
             "macos": macos, "implementation": "cpython", "executable": "/target/python", "in_venv": True}
    facts["tags"] = compute_tags(facts)
    return Interpreter.from_facts(facts)


WIN = dict(platform="win32", machine="AMD64", glibc=None)
ARM = dict(machine="aarch64")
MAC = dict(platform="darwin", machine="arm64", glibc=None, macos="14.5")
INTEL_MAC = dict(platform="darwin", machine="x86_64", glibc=None, macos="13.6")


def gpus(driver=None, *cards, amd=()):
    return Gpus(Nvidia(driver, tuple(NvidiaGpu(n, cc) for n, cc in cards)), tuple(AmdGpu(n, g) for n, g in amd))


def no_mirror_probe(urls, timeout):
    raise AssertionError("no mirror is probed unless --mirror auto")


def probes(g):
    return Probes(gpus=lambda: g, mirrors=no_mirror_probe)


@lru_cache(maxsize=None)
def _page(url):
    if "pypi.org" in url:
        return tuple(parse_json_page((DATA / "pypi_torch.json").read_text(), url + "torch/"))
    backend = url.rstrip("/").rsplit("/", 1)[1]
    page = DATA / f"pytorch_{backend}.html"
    return tuple(parse_html_page(page.read_text(), url + "torch/")) if page.exists() else ()  # 404: no such build


def recorded(sources, timeout, retries):
    """Answer each source from the recorded pages, as the live indexes would."""
    return [(s, list(_page(s.url))) for s in sources], {}


def plan(p, g=None, backend="auto", torch=None):
    opts = InstallOptions(backend=None if backend == "auto" else Backend.parse(backend), torch=torch, only=("torch",))
    return installer.make_plan(opts, probes(g or gpus()), py=p, pip_cfg=PIP, idx=IDX, read=recorded,
                               installed=lambda exe: None).torch


RTX3060, RTX2060, RTX4090, RTX5090 = ("RTX 3060", "8.6"), ("RTX 2060", "7.5"), ("RTX 4090", "8.9"), ("RTX 5090", "12.0")
GTX750TI, GTX1060, V100, A100, H100 = ("GTX 750 Ti", "5.0"), ("GTX 1060", "6.1"), ("V100", "7.0"), ("A100", "8.0"), \
    ("H100", "9.0")
GB10, K80, T4 = ("GB10", "12.1"), ("Tesla K80", "3.7"), ("Tesla T4", "7.5")

MACHINES = [
    # (what, interpreter, gpus, expected version, expected backend, expected file or None)
    ("linux cpu 3.12", py(), gpus(), "2.15.0+cpu", "cpu", None),
    ("linux cpu 3.10: 2.15 needs 3.11", py("3.10.14"), gpus(), "2.14.1+cpu", "cpu", None),
    ("linux cpu 3.9", py("3.9.19"), gpus(), "2.8.0+cpu", "cpu", None),
    ("linux cpu 3.8", py("3.8.18"), gpus(), "2.4.1+cpu", "cpu", None),
    ("linux cpu 3.14", py("3.14.0"), gpus(), "2.15.0+cpu", "cpu", None),
    ("driver 525 A100", py(), gpus("525.60.13", A100), "2.14.1+cu126", "cu126", None),
    ("driver 535 RTX 3060", py(), gpus("535.104.05", RTX3060), "2.14.1+cu126", "cu126", None),
    ("driver 550 H100", py(), gpus("550.54.14", H100), "2.14.1+cu126", "cu126", None),
    ("driver 560 RTX 4090", py(), gpus("560.35.03", RTX4090), "2.14.1+cu126", "cu126", None),
    ("driver 570 RTX 4090", py(), gpus("570.86.10", RTX4090), "2.14.1+cu126", "cu126", None),
    ("driver 580 RTX 5090: PyPI's own cu132 wheel", py(), gpus("580.82.07", RTX5090), "2.15.0", "cu132",
     "torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl"),
    ("driver 580 GTX 1060: 2.14 is the last for Pascal", py(), gpus("580.82.07", GTX1060), "2.14.1+cu126", "cu126", None),
    ("driver 580 V100: cu130 starts at sm_75", py(), gpus("580.82.07", V100), "2.14.1+cu126", "cu126", None),
    ("driver 535 GTX 750 Ti", py(), gpus("535.104.05", GTX750TI), "2.14.1+cu126", "cu126", None),
    ("driver 580 RTX 2060", py("3.11.9"), gpus("580.82.07", RTX2060), "2.15.0", "cu132", None),
    ("driver 470 T4: CUDA 11.8", py(), gpus("470.239.06", T4), "2.7.1+cu118", "cu118", None),
    ("driver 470 K80 (3.7): cu118 carries sm_37", py("3.11.9"), gpus("470.239.06", K80), "2.7.1+cu118", "cu118", None),
    ("driver 452 Linux T4: below CUDA 11's 450.80.02? no: runs cu118", py(), gpus("452.39", T4), "2.7.1+cu118", "cu118",
     None),
    ("driver 418 K80: nothing runs, CPU", py(), gpus("418.87.01", K80), "2.15.0+cpu", "cpu", None),
    ("driver 580 mixed GTX 1060 + RTX 4090: kernels for both", py(), gpus("580.82.07", RTX4090, GTX1060), "2.14.1+cu126",
     "cu126", None),
    ("3.14 driver 535 RTX 3060", py("3.14.0"), gpus("535.104.05", RTX3060), "2.14.1+cu126", "cu126", None),
    ("3.13 driver 580 H100", py("3.13.1"), gpus("580.82.07", H100), "2.15.0", "cu132", None),
    ("3.8 driver 535 RTX 3060", py("3.8.18"), gpus("535.104.05", RTX3060), "2.4.1+cu124", "cu124", None),
    ("aarch64 cpu: the +cpu wheel, not PyPI's CUDA one", py(**ARM), gpus(), "2.15.0+cpu", "cpu",
     "torch-2.15.0+cpu-cp312-cp312-manylinux_2_28_aarch64.whl"),
    ("aarch64 GB10 (12.1) driver 580: sm_120 SASS runs on 12.1", py(**ARM), gpus("580.95.05", GB10), "2.15.0", "cu132",
     "torch-2.15.0-cp312-cp312-manylinux_2_28_aarch64.whl"),
    ("aarch64 H100 driver 550: cu126 for arm carries 8.0/9.0", py(**ARM), gpus("550.54.14", H100), "2.14.1+cu126", "cu126",
     None),
    ("windows cpu", py(**WIN), gpus(), "2.15.0", "cpu", "torch-2.15.0-cp312-cp312-win_amd64.whl"),
    ("windows driver 560 RTX 3060", py(**WIN), gpus("560.94", RTX3060), "2.14.1+cu126", "cu126",
     "torch-2.14.1+cu126-cp312-cp312-win_amd64.whl"),
    ("windows driver 581 RTX 5090", py(**WIN), gpus("581.57", RTX5090), "2.15.0+cu132", "cu132", None),
    ("windows 3.9 driver 537 RTX 2060", py("3.9.13", **WIN), gpus("537.58", RTX2060), "2.8.0+cu129", "cu129", None),
    ("windows 3.11 driver 452 (CUDA 11 on Windows)", py("3.11.9", **WIN), gpus("452.39", T4), "2.7.1+cu118", "cu118",
     None),
    ("mac arm64 14.5", py(**MAC), gpus(), "2.15.0", "cpu", "torch-2.15.0-cp312-cp312-macosx_14_0_arm64.whl"),
    ("mac arm64 13.6: 2.12+ need macOS 14", py(**dict(MAC, macos="13.6")), gpus(), "2.11.0", "cpu", None),
    ("intel mac 3.11", py("3.11.9", **INTEL_MAC), gpus(), "2.2.2", "cpu",
     "torch-2.2.2-cp311-none-macosx_10_9_x86_64.whl"),
    ("AMD gfx1100 linux", py(), gpus(amd=[("Radeon RX 7900 XTX", "gfx1100")]), "2.14.1+rocm7.14", "rocm7.14", None),
    ("AMD gfx90a linux 3.11", py("3.11.9"), gpus(amd=[("Instinct MI250X", "gfx90a")]), "2.14.1+rocm7.14", "rocm7.14",
     None),
    ("AMD gfx1100 on windows: CPU", py(**WIN), gpus(amd=[("Radeon RX 7900 XTX", "gfx1100")]), "2.15.0", "cpu", None),
]


@pytest.mark.parametrize("what,p,g,version,backend,file", MACHINES, ids=[m[0] for m in MACHINES])
def test_machine(what, p, g, version, backend, file):
    t = plan(p, g)
    assert (t.version, str(t.backend)) == (version, backend), t.why
    if file:
        assert t.file == file
    assert t.why and t.urls and all(s.ok for s in t.sources)


NO_FIT = [
    # the reason, then how to install the Python that works, the platform's way
    ("32-bit Windows", py(bits=32, **WIN), gpus(), {},
     r"^Torch has no wheels for 32-bit Python\. Install Python 3\.11 with `winget install Python\.Python\.3\.11` "
     r"\(64-bit.*`py -3\.11 -m venv fomm-env`"),
    ("Intel Mac 3.13", py("3.13.0", **INTEL_MAC), gpus(), {},
     r"^The last torch for Intel Macs \(2\.2\) supports Python up to 3\.12, not 3\.13\. Install Python 3\.12 with "
     r"`brew install python@3\.12`"),
    ("Python 3.16", py("3.16.0"), gpus(), {}, r"^Python 3\.16 is newer than any torch release supports yet \(newest 2\.15\)"),
    ("Python 3.5", py("3.5.10"), gpus(), {},
     r"^Python 3\.5 is older than any torch we know supports\. Install Python 3\.11 with .*`python3\.11 -m venv"),
    ("3.8 asks for 2.6", py("3.8.18"), gpus(), {"torch": "2.6.0"},
     r"^Python 3\.8 is older than any torch >= 2\.5 supports: the newest you can have is 2\.4 \(`--torch 2\.4`\)"),
    ("cu130 on driver 535", py(), gpus("535.104.05", RTX3060), {"backend": "cu130"},
     r"^No CUDA 13\.0 build runs on your driver 535\.104\.05 \(it needs 580\.65\.06 or newer\)"),
    ("cu128 for a GTX 1060", py(), gpus("580.82.07", GTX1060), {"backend": "cu128"},
     r"^Torch 2\.11\.0\+cu128 does not fit: its cu128 build has no kernels for the GTX 1060 \(compute capability 6\.1; "
     r"it carries sm_75 to sm_120\); `--backend auto` takes the newest build that fits\.$"),
    ("cu126 on a Mac", py(**MAC), gpus(), {"backend": "cu126"}, r"^Macs have no NVIDIA CUDA builds of torch"),
    ("cu126 without a driver", py(), gpus(), {"backend": "cu126"}, r"^Cu126 needs an NVIDIA driver and none was found"),
    ("rocm on Windows", py(**WIN), gpus(), {"backend": "rocm6.4"}, r"^ROCm builds of torch are for Linux only"),
]


@pytest.mark.parametrize("what,p,g,kw,sentence", NO_FIT, ids=[n[0] for n in NO_FIT])
def test_nothing_fits_says_why(what, p, g, kw, sentence):
    with pytest.raises(NoFit, match=sentence):
        plan(p, g, **kw)


def test_the_issue_machine_with_torch_2_14_1_gets_cuda_not_cpu():
    t = plan(py(), gpus("535.104.05", RTX3060), torch="2.14.1")
    assert (t.version, str(t.backend)) == ("2.14.1+cu126", "cu126")
    t = plan(py(), gpus("580.82.07", RTX3060), torch="2.14")
    assert t.version == "2.14.1+cu132"  # the newest build the driver runs


def test_a_re_uploaded_wheel_beats_the_first_upload():
    # PyPI re-uploaded 2.10.0's Linux x86_64 wheels with build tag 3 (recorded page)
    t = plan(py("3.11.9"), gpus("580.82.07", RTX4090), backend="cu128", torch="2.10")
    assert t.file == "torch-2.10.0-3-cp311-cp311-manylinux_2_28_x86_64.whl" and t.backend_from == "table"


def test_why_names_the_fact_that_ruled_out_the_newer_release():
    t = plan(py(), gpus("580.82.07", GTX1060))
    assert "2.15.0 was ruled out" in t.why and "no kernels for the GTX 1060 (compute capability 6.1" in t.why
    t = plan(py(), gpus("535.104.05", RTX3060))
    assert "2.15.0 was ruled out" in t.why and "needs NVIDIA driver 580.65.06 or newer, this one is 535" in t.why
    t = plan(py(), gpus("418.87.01", K80))
    assert t.why.startswith("no GPU build fits: 2.15.0: its CUDA 13.2 needs NVIDIA driver 580.65.06")
    t = plan(py(**WIN), gpus(amd=[("Radeon RX 7900 XTX", "gfx1100")]))
    assert t.why.startswith("no GPU build fits: ROCm builds of torch are for Linux only on the PyTorch index")
    assert "https://repo.radeon.com/rocm/windows/" in t.why and t.why.endswith("; CPU build")


def test_only_pages_that_could_fit_are_read():
    opts = InstallOptions(only=("torch",))
    seen = []

    def spy(sources, timeout, retries):
        seen.extend(s.url for s in sources)
        return recorded(sources, timeout, retries)
    installer.make_plan(opts, probes(gpus("535.104.05", RTX3060)), py=py(), pip_cfg=PIP, idx=IDX, read=spy,
                        installed=lambda exe: None)
    pages = {u.rstrip("/").rsplit("/", 1)[1] for u in seen if "pytorch.org" in u}
    assert {"cu126", "cu128", "cu129", "cu118", "cpu"} <= pages
    assert not pages & {"cu130", "cu132"}  # driver 535 cannot run CUDA 13
    assert not any(p.startswith("rocm") or p == "xpu" for p in pages)


def test_an_unreadable_page_is_a_note_not_a_wrong_answer():
    def half(sources, timeout, retries):
        found, errors = recorded(sources, timeout, retries)
        for s, _ in found:
            if s.url.endswith("/cu126/"):
                errors[s.url] = "HTTP 503 after 4 tries"
        return [(s, [] if s.url in errors else f) for s, f in found], errors
    opts = InstallOptions(only=("torch",))
    t = installer.make_plan(opts, probes(gpus("535.104.05", RTX3060)), py=py(), pip_cfg=PIP, idx=IDX, read=half,
                            installed=lambda exe: None).torch
    assert t.version == "2.13.0+cu129"  # the best that the readable pages hold
    assert [s.error for s in t.sources if not s.ok] == ["HTTP 503 after 4 tries"]


def test_mirror_names_and_urls():
    m = mirrors.resolve_mirror("tsinghua", IDX, PIP, no_mirror_probe)
    src = mirrors.torch_sources(m, [Backend.parse("cpu")], PIP)
    assert [s.url for s in src] == ["https://pypi.tuna.tsinghua.edu.cn/simple/", "https://download.pytorch.org/whl/cpu/"]
    m = mirrors.resolve_mirror("aliyun-pytorch", IDX, PIP, no_mirror_probe)
    src = mirrors.torch_sources(m, [Backend.parse("cu121")], PIP)
    assert src[-1].kind == "find-links" and src[-1].url == "https://mirrors.aliyun.com/pytorch-wheels/cu121/"
    m = mirrors.with_pytorch_index(mirrors.resolve_mirror(None, IDX, PIP, no_mirror_probe), "http://127.0.0.1:9/whl")
    assert mirrors.torch_sources(m, [Backend.parse("cu126")], PIP)[-1].url == "http://127.0.0.1:9/whl/cu126/"
    with pytest.raises(Exception, match="not a mirror we know"):
        mirrors.resolve_mirror("nope", IDX, PIP, no_mirror_probe)


def test_auto_mirror_takes_the_fastest_that_answers():
    def probe(urls, timeout):
        lat = {"tsinghua": 40, "official": 300, "ustc": 25, "sjtug-pytorch": 60, "pytorch": 500}
        return {n: {"ok": True, "latency_ms": lat[n], "status": 200} if n in lat
                else {"ok": False, "latency_ms": None, "status": None} for n in urls}
    m = mirrors.resolve_mirror("auto", IDX, PIP, probe)
    assert m.pypi_name == "ustc" and m.pytorch.name == "sjtug-pytorch"


def test_tags_computed_like_packaging_for_this_interpreter():
    facts = probe_interpreter(sys.executable)
    assert facts.tags_source == "packaging"
    computed = compute_tags(asdict(facts))
    assert computed == list(facts.tags) or set(computed) == set(facts.tags)


def test_old_interpreter_without_packaging_still_answers():
    old = Path.home() / ".pyenv/versions/3.8.18/bin/python"
    if not old.exists():
        pytest.skip("pyenv 3.8 not installed")
    facts = probe_interpreter(str(old))
    assert facts.version.startswith("3.8.") and facts.bits == 64
    assert any(t.startswith("cp38-cp38-manylinux") for t in facts.tags)
