"""checks.gpu: AMD/Intel/Apple probes over real recorded tool outputs (tests/data/gpu, see SOURCES.md)."""
import subprocess
from pathlib import Path

import pytest

from fomm_doctor.checks import gpu
from fomm_doctor.checks.gpu import amd, apple, intel, shared

DATA = Path(__file__).parent / "data" / "gpu"


def data(name):
    return (DATA / name).read_text(encoding="utf-8")


def completed(stdout, returncode=0, stderr=""):
    return lambda cmd, **kw: subprocess.CompletedProcess(cmd, returncode, stdout, stderr)


def missing(cmd, **kw):
    raise FileNotFoundError(cmd[0])


def hangs(cmd, **kw):
    raise subprocess.TimeoutExpired(cmd, kw.get("timeout"))


NO_FILES = dict(read_file=lambda p: None, listdir=lambda p: None)


# --- encoding ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,gfx", [(110000, "gfx1100"), (90010, "gfx90a"), (100300, "gfx1030"),
                                       (90402, "gfx942"), (110501, "gfx1151"), (90012, "gfx90c"),
                                       ("0", None), (0, None), ("junk", None), (None, None), (91600, None)])
def test_gfx_target_version_decoding(value, gfx):
    assert amd.gfx_from_target_version(value) == gfx


# --- KFD --------------------------------------------------------------------------------------------------------

def test_kfd_real_mi300x_line_decodes_to_gfx942():
    props = amd.parse_kfd_properties(data("kfd_mi300x_node4_grep.txt"))
    assert amd.kfd_node_gpu(props)["gfx"] == "gfx942"


def test_kfd_old_kernel_node_without_gfx_target_version_is_a_gpu_of_unknown_gfx():
    props = amd.parse_kfd_properties(data("kfd_carrizo_node0_properties.txt"))
    assert props["simd_count"] == 32 and props["device_id"] == 39028
    assert amd.kfd_node_gpu(props) == {"gfx": None, "device_id": "0x9874", "render_minor": None}


def test_kfd_cpu_node_is_skipped():
    assert amd.kfd_node_gpu(amd.parse_kfd_properties("cpu_cores_count 16\nsimd_count 0\ngfx_target_version 0\n")) is None
    assert amd.kfd_node_gpu({}) is None


def topology(nodes, extra=None):
    files = {f"{amd.KFD_NODES}/{n}/properties": text for n, text in nodes.items()}
    files.update(extra or {})
    return dict(read_file=files.get, listdir=lambda p: list(nodes) if p == amd.KFD_NODES else None)


def test_probe_amd_from_kfd_names_the_card_through_amdgpu_ids_and_skips_the_cpu_node():
    cpu = "cpu_cores_count 16\nsimd_count 0\ngfx_target_version 0\n"
    gpu = data("kfd_mi300x_node4_grep.txt") + "simd_count 1216\ndevice_id 29857\ndrm_render_minor 128\n"
    ids = "# List of AMDGPU IDs\n1.0.0\n74A1,\t00,\tAMD Instinct MI300X\n"
    fs = topology({"0": cpu, "4": gpu}, {"/usr/share/libdrm/amdgpu.ids": ids,
                                         "/sys/class/drm/renderD128/device/revision": "0x00\n",
                                         f"{amd.KFD_NODES}/4/name": "ip discovery\n"})
    res = amd.probe_amd(run=missing, platform="linux", which=lambda n: None, **fs)
    assert res == {"gpus": [{"name": "AMD Instinct MI300X", "gfx": "gfx942"}], "source": amd.KFD_NODES, "errors": []}


# --- rocminfo ---------------------------------------------------------------------------------------------------

def test_parse_rocminfo_rx7900xtx_skips_the_cpu_agent():
    assert amd.parse_rocminfo(data("rocminfo_rx7900xtx.txt")) == [{"name": "Radeon RX 7900 XTX", "gfx": "gfx1100"}]


def test_parse_rocminfo_mi250x_ignores_isa_names():
    assert amd.parse_rocminfo(data("rocminfo_mi250x_excerpt.txt")) == [{"name": "AMD Instinct MI250X", "gfx": "gfx90a"}]


def test_probe_amd_falls_back_to_rocminfo_without_kfd():
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, data("rocminfo_rx7900xtx.txt"), "")
    res = amd.probe_amd(run=run, platform="linux", which=lambda n: "/usr/bin/rocminfo", **NO_FILES)
    assert res == {"gpus": [{"name": "Radeon RX 7900 XTX", "gfx": "gfx1100"}], "source": "/usr/bin/rocminfo",
                   "errors": []}
    assert calls == [["/usr/bin/rocminfo"]]


def test_probe_amd_old_kernel_kfd_then_rocminfo_gives_the_gfx():
    fs = topology({"0": data("kfd_carrizo_node0_properties.txt")})
    res = amd.probe_amd(run=completed(data("rocminfo_mi250x_excerpt.txt")), platform="linux",
                       which=lambda n: "/opt/rocm/bin/rocminfo", **fs)
    assert res["gpus"] == [{"name": "AMD Instinct MI250X", "gfx": "gfx90a"}]
    # without rocminfo the KFD node is still reported, gfx unknown
    res = amd.probe_amd(run=missing, platform="linux", which=lambda n: None, **fs)
    assert res["gpus"] == [{"name": "AMD GPU 0x9874", "gfx": None}] and res["source"] == amd.KFD_NODES
    assert res["errors"] and all("not found" in e for e in res["errors"])


@pytest.mark.parametrize("run,needle", [(missing, "not found"), (hangs, "no answer within"),
                                        (completed("\x00\x17garbage\n{[}"), "no GPU agent"),
                                        (completed("", 1, "hsa api call failure"), "exit 1")])
def test_probe_amd_tool_failures_give_an_empty_answer_and_an_error(run, needle):
    res = amd.probe_amd(run=run, platform="linux", which=lambda n: "/usr/bin/rocminfo", **NO_FILES)
    assert res["gpus"] == [] and res["source"] is None
    assert any(needle in e for e in res["errors"]), res["errors"]


def test_probe_amd_elsewhere():
    assert amd.probe_amd(run=missing, platform="darwin")["gpus"] == []
    win = amd.probe_amd(run=completed(data("win32_videocontroller_iris_xe.json")), platform="win32")
    assert win == {"gpus": [], "source": "Win32_VideoController", "errors": []}  # an Intel-only machine


# --- Intel ------------------------------------------------------------------------------------------------------

def test_parse_xpu_smi_discovery_a770():
    assert intel.parse_xpu_smi_discovery(data("xpu_smi_discovery_a770_linux.txt")) == [
        {"name": "Intel(R) Arc(TM) A770 Graphics", "device_id": None, "bdf": "0000:03:00.0"}]


def test_parse_sycl_ls_both_formats_keep_level_zero_gpus_only():
    assert intel.parse_sycl_ls(data("sycl_ls_a770.txt")) == [{"name": "Intel(R) Arc(TM) A770 Graphics"}]
    assert intel.parse_sycl_ls(data("sycl_ls_iris_xe_windows.txt")) == [{"name": "Intel(R) Iris(R) Xe Graphics"}]


@pytest.mark.parametrize("name,discrete", [("Intel(R) Arc(TM) A770 Graphics", True),
                                           ("Intel(R) Arc(TM) Pro B60 Graphics", True),
                                           ("Intel(R) Data Center GPU Flex 170", True),
                                           ("Intel(R) Iris(R) Xe Graphics", False),
                                           ("Intel(R) UHD Graphics 770", False),
                                           ("Intel(R) Arc(TM) Graphics", False),
                                           ("Intel GPU 0x1234", None)])
def test_intel_discrete(name, discrete):
    assert intel.intel_discrete(name) is discrete


def drm(cards):
    files = {}
    for card, (vendor, device) in cards.items():
        files[f"{shared.DRM}/{card}/device/vendor"] = vendor + "\n"
        files[f"{shared.DRM}/{card}/device/device"] = device + "\n"
    return dict(read_file=files.get, listdir=lambda p: [*cards, "renderD128", "card0-DP-1", "version"]
                if p == shared.DRM else None)


def test_probe_intel_linux_names_the_drm_card_with_xpu_smi():
    fs = drm({"card0": ("0x8086", "0x56a0")})
    res = intel.probe_intel(run=completed(data("xpu_smi_discovery_a770_linux.txt")), platform="linux",
                         which=lambda n: "/usr/bin/xpu-smi" if n == "xpu-smi" else None, **fs)
    assert res == {"gpus": [{"name": "Intel(R) Arc(TM) A770 Graphics", "device_id": "0x56a0", "discrete": True}],
                   "source": "/usr/bin/xpu-smi", "errors": []}


def test_probe_intel_linux_sycl_ls_then_sysfs_only():
    fs = drm({"card0": ("0x8086", "0x56a0"), "card1": ("0x10de", "0x2684")})
    res = intel.probe_intel(run=completed(data("sycl_ls_a770.txt")), platform="linux",
                         which=lambda n: "/opt/intel/oneapi/bin/sycl-ls" if n == "sycl-ls" else None, **fs)
    assert res["gpus"] == [{"name": "Intel(R) Arc(TM) A770 Graphics", "device_id": "0x56a0", "discrete": True}]
    bare = intel.probe_intel(run=missing, platform="linux", which=lambda n: None, **fs)
    assert bare == {"gpus": [{"name": "Intel GPU 0x56a0", "device_id": "0x56a0", "discrete": None}],
                    "source": shared.DRM, "errors": []}


@pytest.mark.parametrize("run,needle", [(hangs, "no answer within"), (completed("%%% not a table"), "no Intel GPU"),
                                        (missing, "not found")])
def test_probe_intel_tool_failures(run, needle):
    res = intel.probe_intel(run=run, platform="linux", which=lambda n: f"/usr/bin/{n}", **NO_FILES)
    assert res["gpus"] == [] and res["source"] is None
    assert any(needle in e for e in res["errors"]), res["errors"]


def test_probe_intel_windows_video_controller():
    res = intel.probe_intel(run=completed(data("win32_videocontroller_iris_xe.json")), platform="win32")
    assert res == {"gpus": [{"name": "Intel(R) Iris(R) Xe Graphics", "device_id": None, "discrete": False}],
                   "source": "Win32_VideoController", "errors": []}
    bad = intel.probe_intel(run=completed("Get-CimInstance : Invalid class"), platform="win32")
    assert bad["gpus"] == [] and bad["errors"]
    gone = intel.probe_intel(run=missing, platform="win32")
    assert gone == {"gpus": [], "source": None, "errors": ["powershell: not found"]}


# --- Apple ------------------------------------------------------------------------------------------------------

def test_probe_apple():
    assert apple.probe_apple("darwin", "arm64") == {"mps": True}
    assert apple.probe_apple("darwin", "x86_64") == {"mps": False}
    assert apple.probe_apple("linux", "aarch64") == {"mps": False}


# ---- the gpu.other check row, fed by the recorded outputs ---------------------------------------------------

def _other(amd=(), intel=(), mps=False):
    return {"amd": {"gpus": list(amd)}, "intel": {"gpus": list(intel)}, "apple": {"mps": mps}}


def test_check_row_for_the_recorded_amd_and_intel_gpus():
    linux = {"platform": "linux", "machine": "x86_64"}
    xtx = amd.parse_rocminfo(data("rocminfo_rx7900xtx.txt"))
    row = gpu.judge_other_gpus(_other(amd=xtx), linux)
    # the newest release whose ROCm build lists gfx1100 (fomm_doctor/install/torch_builds.json)
    assert row.status == "ok" and "Radeon RX 7900 XTX (gfx1100): torch 2.14 has a ROCm build" in row.summary
    win = gpu.judge_other_gpus(_other(amd=xtx), {"platform": "win32", "machine": "AMD64"})
    assert win.status == "warn" and "no ROCm build for windows" in win.summary and win.fix
    unknown = gpu.judge_other_gpus(_other(amd=[{"name": "Radeon", "gfx": None}]), linux)
    assert unknown.status == "warn" and "rocminfo" in unknown.fix
    too_new = gpu.judge_other_gpus(_other(amd=[{"name": "Radeon", "gfx": "gfx9999"}]), linux)
    assert too_new.status == "warn" and "no ROCm build of torch has kernels" in too_new.summary
    arc = intel.parse_xpu_smi_discovery(data("xpu_smi_discovery_a770_linux.txt"))
    arc = [dict(g, discrete=intel.intel_discrete(g["name"])) for g in arc]
    assert gpu.judge_other_gpus(_other(intel=arc), linux).status == "ok"
    assert gpu.judge_other_gpus(_other(mps=True), {"platform": "darwin", "machine": "arm64"}).status == "ok"
    assert gpu.judge_other_gpus(_other(), linux).status == "skipped"
