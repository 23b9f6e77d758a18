"""AMD (ROCm): GPUs and their gfx targets from the kernel's KFD topology, else rocminfo (Linux); from the
video-controller list on Windows (where torch has no ROCm build), and the gpu.other row for them.

probe_amd(...) -> {"gpus": [{"name": str, "gfx": "gfx1100"|None}], "source": str|None, "errors": [str]}

The KFD `gfx_target_version` encoding
-------------------------------------
amdkfd publishes, in /sys/class/kfd/kfd/topology/nodes/N/properties, a line `gfx_target_version <decimal>` that
packs major*10000 + minor*100 + stepping. libhsakmt (ROCm/ROCT-Thunk-Interface, src/libhsakmt.h) decodes it with

    #define HSA_GET_GFX_VERSION_MAJOR(gfxv)   (((gfxv) / 10000) % 100)
    #define HSA_GET_GFX_VERSION_MINOR(gfxv)   (((gfxv) / 100) % 100)
    #define HSA_GET_GFX_VERSION_STEP(gfxv)    ((gfxv) % 100)

(src/topology.c reads the `gfx_target_version` property into those macros and bails out early for a node without
compute cores, i.e. a CPU node), and the ISA name prints the major in decimal and minor and stepping as one hex
digit each ("gfx" + major + hex(minor) + hex(stepping)): rocprofiler-sdk formats it as
fmt::format("gfx{}{}{:x}", major, minor, step). So 110000 -> gfx1100, 100300 -> gfx1030, 90010 -> gfx90a (stepping
10 = 'a'), 90402 -> gfx942, 110501 -> gfx1151. CPU nodes carry gfx_target_version 0 and are skipped; kernels
older than the property (before Linux ~5.15) omit the line, and such a node with SIMDs is still reported, gfx None.
"""
import os
import re
import subprocess
import sys

from fomm_doctor.checks.gpu.shared import DRM, listdir, nothing, read_text, tool_gpus
from fomm_doctor.checks.gpu.windows import probe_windows
from fomm_doctor.install import builds
from fomm_doctor.install.backend import Backend, Kind
from fomm_doctor.install.builds import os_name
from fomm_doctor.preflight import tr
from fomm_doctor.report import CheckResult
from fomm_core.tools import find_tool

KFD_NODES = "/sys/class/kfd/kfd/topology/nodes"
AMDGPU_IDS = ("/usr/share/libdrm/amdgpu.ids", "/opt/amdgpu/share/libdrm/amdgpu.ids")


# --- AMD: the kernel's KFD topology ------------------------------------------------------------------------


def gfx_from_target_version(value):
    """KFD gfx_target_version (decimal major*10000 + minor*100 + stepping) -> 'gfx90a'; 0 or junk -> None."""
    try:
        v = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    major, minor, step = v // 10000, (v // 100) % 100, v % 100
    if v <= 0 or major == 0 or minor > 15 or step > 15:
        return None
    return f"gfx{major}{minor:x}{step:x}"


def parse_kfd_properties(text: str) -> dict:
    """'simd_count 192\\ngfx_target_version 110000\\n...' -> {'simd_count': 192, ...}; lines that are not
    `name integer` are ignored (libhsakmt reads the file with sscanf("%s %llu"))."""
    props = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            props.setdefault(parts[0], int(parts[1]))
    return props


def kfd_node_gpu(props: dict):
    """A KFD node's {'gfx', 'device_id', 'render_minor'} if it is a GPU, else None (CPU node)."""
    if "gfx_target_version" in props:
        gfx = gfx_from_target_version(props["gfx_target_version"])
        if gfx is None:
            return None  # CPU nodes: gfx_target_version 0
    elif props.get("simd_count", 0) > 0:
        gfx = None  # an old kernel without the property; the node has compute units
    else:
        return None
    device = props.get("device_id")
    return {"gfx": gfx, "device_id": f"0x{device:04x}" if device else None,
            "render_minor": props.get("drm_render_minor") or None}


def parse_amdgpu_ids(text: str) -> dict:
    """libdrm's amdgpu.ids ('744C,\\tC8,\\tAMD Radeon RX 7900 XTX') -> {('744c', 'c8'): name}."""
    table = {}
    for line in (text or "").splitlines():
        cols = [c.strip() for c in line.split(",", 2)]
        if len(cols) == 3 and re.fullmatch(r"[0-9A-Fa-f]{4}", cols[0]) and re.fullmatch(r"[0-9A-Fa-f]{1,2}", cols[1]):
            table[(cols[0].lower(), cols[1].lower().zfill(2))] = cols[2]
    return table


def _marketing_name(node_name, device_id, revision, product_name, ids):
    if product_name and product_name.strip():
        return product_name.strip()
    if device_id and revision:
        name = ids.get((device_id[2:].lower(), revision.strip().lower().replace("0x", "").zfill(2)))
        if name:
            return name
    if device_id:
        names = {n for (dev, _), n in ids.items() if dev == device_id[2:].lower()}
        if len(names) == 1:
            return names.pop()
    # the KFD node's own `name` is the ASIC ("sienna_cichlid") on older kernels, "ip discovery" on newer ones
    node_name = (node_name or "").strip()
    return node_name if node_name and node_name != "ip discovery" else None


def _amdgpu_ids(read_file) -> dict:
    """libdrm's marketing-name table, from the first place that has one."""
    for path in AMDGPU_IDS:
        ids = parse_amdgpu_ids(read_file(path) or "")
        if ids:
            return ids
    return {}


def _kfd_node(root: str, node: str, read_file, ids: dict):
    """One KFD node as {'name', 'gfx'}, named through its DRM render node; None for a CPU node."""
    gpu = kfd_node_gpu(parse_kfd_properties(read_file(f"{root}/{node}/properties") or ""))
    if gpu is None:
        return None
    drm = f"{DRM}/renderD{gpu['render_minor']}/device" if gpu["render_minor"] else None
    name = _marketing_name(read_file(f"{root}/{node}/name"), gpu["device_id"],
                           read_file(f"{drm}/revision") if drm else None,
                           read_file(f"{drm}/product_name") if drm else None, ids)
    return {"name": name or f"AMD GPU {gpu['gfx'] or gpu['device_id'] or 'node ' + node}", "gfx": gpu["gfx"]}


def kfd_gpus(read_file=read_text, listdir=listdir, root=KFD_NODES) -> list:
    """GPUs from the KFD topology: [{'name', 'gfx'}], in node order, CPU nodes left out."""
    entries = listdir(root) or []
    ids = _amdgpu_ids(read_file)
    nodes = sorted((e for e in entries if str(e).isdigit()), key=int)
    return [gpu for gpu in (_kfd_node(root, node, read_file, ids) for node in nodes) if gpu is not None]


# --- AMD: rocminfo ---------------------------------------------------------------------------------------------


_AGENT_FIELD = re.compile(r"^  (\S[^:]*?):\s*(.*?)\s*$")  # agent fields sit at two spaces; ISA/pool ones deeper


def parse_rocminfo(text: str) -> list:
    """rocminfo's 'HSA Agents' -> [{'name': Marketing Name, 'gfx': 'gfx1100'}] for GPU agents (CPU ones skipped)."""
    agents, current = [], None
    for line in (text or "").splitlines():
        if re.match(r"^\s*Agent \d+\s*$", line):
            current = {}
            agents.append(current)
            continue
        match = _AGENT_FIELD.match(line)
        if current is not None and match:
            current.setdefault(match.group(1), match.group(2))
    gpus = []
    for agent in agents:
        if agent.get("Device Type", "").upper() != "GPU":
            continue
        gfx = re.fullmatch(r"(gfx[0-9a-f]+)(?::\S*)?", agent.get("Name", ""))
        gpus.append({"name": agent.get("Marketing Name") or agent.get("Name") or "AMD GPU",
                     "gfx": gfx.group(1) if gfx else None})
    return gpus


def rocminfo_candidates(which=find_tool, env=None) -> list:
    env = os.environ if env is None else env
    found = which("rocminfo")
    candidates = [found] if found else []
    rocm = env.get("ROCM_PATH") or "/opt/rocm"
    for c in (rocm.rstrip("/") + "/bin/rocminfo", "/opt/rocm/bin/rocminfo"):
        if c not in candidates:
            candidates.append(c)
    return candidates


# --- AMD probe -------------------------------------------------------------------------------------------------


def _rocminfo_gpus(run, which, timeout, errors):
    """(GPU agents, the rocminfo that listed them) from the first rocminfo that runs; ([], None) otherwise."""
    for exe in rocminfo_candidates(which):
        gpus = tool_gpus(run, [exe], parse_rocminfo, timeout, errors, "no GPU agent in its output")
        if gpus is not None:
            return gpus, (exe if gpus else None)
    return [], None


def probe_amd(run=subprocess.run, platform=sys.platform, which=find_tool, read_file=read_text, listdir=listdir,
              timeout=5.0) -> dict:
    """{"gpus": [{"name", "gfx"}], "source": str|None, "errors": [...]}: KFD topology, then rocminfo (Linux);
    the video-controller list (Windows, gfx None: no ROCm torch there)."""
    osn = os_name(platform)
    if osn == "windows":
        return probe_windows(run, timeout, "amd", lambda r: {"name": r["name"], "gfx": None})
    errors = []
    if osn != "linux":
        return nothing(errors)
    kfd = kfd_gpus(read_file, listdir)
    if kfd and all(g["gfx"] for g in kfd):
        return {"gpus": kfd, "source": KFD_NODES, "errors": errors}
    gpus, exe = _rocminfo_gpus(run, which, timeout, errors)
    if gpus:
        return {"gpus": gpus, "source": exe, "errors": errors}
    if kfd:  # an old kernel: GPUs without their gfx target
        return {"gpus": kfd, "source": KFD_NODES, "errors": errors}
    return nothing(errors)


def newest_rocm_for(gfx: str) -> tuple:
    """(torch minor, ROCm build) of the newest release whose ROCm build has kernels for `gfx`; (None, None)."""
    for r in builds.load()["releases"]:
        rocm = [b for b in builds.release_builds(r, "linux-x86_64") if b.kind is Kind.ROCM]
        for b in sorted(rocm, key=Backend.sort_key, reverse=True):
            if builds.rocm_covers(r["torch"], b, gfx):
                return r["torch"], b
    return None, None


def judge_amd(gpu: dict, osn: str, facts: dict, lang: str) -> CheckResult:
    """gpu.other for an AMD GPU: the ROCm build torch has for it here, if any."""
    name, gfx = gpu.get("name") or "GPU", gpu.get("gfx")
    if osn != "linux":
        return CheckResult("gpu.other", "warn", tr(
            lang, f"AMD {name}: torch has no ROCm build for {osn}, so FOMM runs on the CPU here.",
            f"AMD {name}：torch 没有适用于 {osn} 的 ROCm 版，FOMM 在这里只能用 CPU。"), facts,
            tr(lang, "Use Linux for the GPU, or keep the CPU build.", "想用显卡请换 Linux，或继续用 CPU 版。"))
    if not gfx:
        return CheckResult("gpu.other", "warn", tr(
            lang, f"AMD {name}: its architecture could not be read, so no ROCm build can be chosen for it.",
            f"AMD {name}：读不到它的架构，无法为它选择 ROCm 版。"), facts,
            tr(lang, "Install ROCm (it brings rocminfo), then run `fomm-doctor install` again.",
               "安装 ROCm（自带 rocminfo），然后重新运行 `fomm-doctor install`。"))
    torch, build = newest_rocm_for(gfx)
    if not torch:
        return CheckResult("gpu.other", "warn", tr(
            lang, f"AMD {name} ({gfx}): no ROCm build of torch has kernels for it; FOMM runs on the CPU.",
            f"AMD {name}（{gfx}）：没有任何 ROCm 版 torch 含它的内核；FOMM 只能用 CPU。"), facts)
    return CheckResult("gpu.other", "ok", tr(
        lang, f"AMD {name} ({gfx}): torch {torch} has a ROCm build for it ({build}); `fomm-doctor install` picks it.",
        f"AMD {name}（{gfx}）：torch {torch} 有适用的 ROCm 版（{build}）；`fomm-doctor install` 会选择它。"), facts)
