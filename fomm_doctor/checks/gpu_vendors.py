"""AMD (ROCm), Intel (XPU) and Apple (MPS) GPU detection, as small parsers over what the kernel and the vendors'
tools print, kept apart from the subprocesses and files that feed them (like gpu.probe_nvidia), so every platform
is testable on any machine. A tool that is missing, hangs or prints garbage gives an empty answer plus an
`errors` entry, never a traceback.

probe_amd(...)   -> {"gpus": [{"name": str, "gfx": "gfx1100"|None}], "source": str|None, "errors": [str]}
probe_intel(...) -> {"gpus": [{"name": str, "device_id": "0x56a0"|None, "discrete": bool|None}],
                     "source": str|None, "errors": [str]}
probe_apple(platform, machine) -> {"mps": bool}

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
import json
import os
import re
import subprocess
import sys

from fomm_doctor.i18n import tr
from fomm_doctor.install import builds
from fomm_doctor.install.builds import os_name
from fomm_doctor.report import CheckResult
from fomm_doctor.checks.gpu import read_text
from fomm_core.tools import find_tool

KFD_NODES = "/sys/class/kfd/kfd/topology/nodes"
DRM = "/sys/class/drm"
AMDGPU_IDS = ("/usr/share/libdrm/amdgpu.ids", "/opt/amdgpu/share/libdrm/amdgpu.ids")
AMD_VENDOR = "0x1002"
INTEL_VENDOR = "0x8086"

# Windows: one JSON object (one adapter) or a JSON array (several), as ConvertTo-Json writes them.
VIDEO_CONTROLLER_PS = ["powershell", "-NoProfile", "-NonInteractive", "-Command",
                       "Get-CimInstance Win32_VideoController | "
                       "Select-Object Name, AdapterCompatibility, PNPDeviceID | ConvertTo-Json"]


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return None


def _run_tool(run, cmd, timeout, errors, name=None):
    """stdout of a successful run, else None with the reason appended to `errors` (under `name`, or cmd[0])."""
    name = name or cmd[0]
    try:
        out = run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        errors.append(f"{name}: not found")
        return None
    except subprocess.TimeoutExpired:
        errors.append(f"{name}: no answer within {timeout:g} s")
        return None
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        errors.append(f"{name}: {exc}")
        return None
    if out.returncode != 0:
        errors.append(f"{name}: exit {out.returncode}: {((out.stderr or '') + (out.stdout or '')).strip()[:200]}")
        return None
    return out.stdout if isinstance(out.stdout, str) else (out.stdout or b"").decode("utf-8", "replace")


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


def kfd_gpus(read_file=read_text, listdir=_listdir, root=KFD_NODES) -> list:
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


# --- Windows ---------------------------------------------------------------------------------------------------


def _controller_vendor(vendor_id: str, compat: str, name: str):
    """'intel' | 'amd' | 'nvidia' | None from the PCI vendor id, the driver's maker or the adapter's name."""
    if vendor_id == "8086" or "intel" in compat.lower() or name.startswith("Intel"):
        return "intel"
    if vendor_id == "1002" or re.search(r"Advanced Micro Devices|\bAMD\b|\bATI\b", compat + " " + name) \
            or "Radeon" in name:
        return "amd"
    if vendor_id == "10de" or "nvidia" in (compat + name).lower():
        return "nvidia"
    return None


def _video_controller(row: dict) -> dict:
    pnp = str(row.get("PNPDeviceID") or "")
    ven = re.search(r"VEN_([0-9A-Fa-f]{4})", pnp)
    dev = re.search(r"DEV_([0-9A-Fa-f]{4})", pnp)
    name = row["Name"].strip()
    vendor = _controller_vendor(ven.group(1).lower() if ven else "", str(row.get("AdapterCompatibility") or ""),
                                name)
    return {"name": name, "vendor": vendor, "device_id": f"0x{dev.group(1).lower()}" if dev else None}


def parse_video_controllers(text: str) -> list:
    """ConvertTo-Json of Win32_VideoController rows -> [{'name', 'vendor', 'device_id'}]; garbage -> []."""
    try:
        data = json.loads(text or "")
    except ValueError:
        return []
    rows = data if isinstance(data, list) else [data]
    return [_video_controller(row) for row in rows if isinstance(row, dict) and isinstance(row.get("Name"), str)]


def powershell_exe(env=None) -> str:
    """Windows PowerShell by its fixed absolute path: a bare 'powershell' is looked up in the current folder
    first by CreateProcess, where a planted powershell.exe would run."""
    env = os.environ if env is None else env
    root = (env.get("SystemRoot") or r"C:\Windows").rstrip("\\")
    return root + r"\System32\WindowsPowerShell\v1.0\powershell.exe"


def _windows_controllers(run, timeout, errors):
    cmd = [powershell_exe(), *VIDEO_CONTROLLER_PS[1:]]
    text = _run_tool(run, cmd, timeout, errors, name="powershell")
    if text is None:
        return None
    rows = parse_video_controllers(text)
    if not rows and text.strip():
        errors.append("powershell: unreadable Win32_VideoController output")
    return rows


def _probe_windows(run, timeout, vendor: str, entry) -> dict:
    """A vendor's GPUs from the video-controller list, each made into a probe's gpu entry by `entry(row)`."""
    errors = []
    rows = _windows_controllers(run, timeout, errors)
    gpus = [entry(r) for r in rows or [] if r["vendor"] == vendor]
    return {"gpus": gpus, "source": "Win32_VideoController" if rows is not None else None, "errors": errors}


def _nothing(errors: list) -> dict:
    return {"gpus": [], "source": None, "errors": errors}


# --- AMD probe -------------------------------------------------------------------------------------------------


def _tool_gpus(run, cmd: list, parse, timeout, errors: list, empty: str):
    """GPUs `parse` finds in a tool's output; [] (and `empty` in `errors`) when it names none; None when the tool
    did not run (the reason is in `errors`)."""
    text = _run_tool(run, cmd, timeout, errors)
    if text is None:
        return None
    gpus = parse(text)
    if not gpus:
        errors.append(f"{cmd[0]}: {empty}")
    return gpus


def _rocminfo_gpus(run, which, timeout, errors):
    """(GPU agents, the rocminfo that listed them) from the first rocminfo that runs; ([], None) otherwise."""
    for exe in rocminfo_candidates(which):
        gpus = _tool_gpus(run, [exe], parse_rocminfo, timeout, errors, "no GPU agent in its output")
        if gpus is not None:
            return gpus, (exe if gpus else None)
    return [], None


def probe_amd(run=subprocess.run, platform=sys.platform, which=find_tool, read_file=read_text, listdir=_listdir,
              timeout=5.0) -> dict:
    """{"gpus": [{"name", "gfx"}], "source": str|None, "errors": [...]}: KFD topology, then rocminfo (Linux);
    the video-controller list (Windows, gfx None: no ROCm torch there)."""
    osn = os_name(platform)
    if osn == "windows":
        return _probe_windows(run, timeout, "amd", lambda r: {"name": r["name"], "gfx": None})
    errors = []
    if osn != "linux":
        return _nothing(errors)
    kfd = kfd_gpus(read_file, listdir)
    if kfd and all(g["gfx"] for g in kfd):
        return {"gpus": kfd, "source": KFD_NODES, "errors": errors}
    gpus, exe = _rocminfo_gpus(run, which, timeout, errors)
    if gpus:
        return {"gpus": gpus, "source": exe, "errors": errors}
    if kfd:  # an old kernel: GPUs without their gfx target
        return {"gpus": kfd, "source": KFD_NODES, "errors": errors}
    return _nothing(errors)


# --- Intel -----------------------------------------------------------------------------------------------------


def intel_discrete(name: str):
    """Arc A/B-series and Data Center GPUs -> True; UHD/Iris/HD and Meteor Lake's plain 'Arc(TM) Graphics' ->
    False; anything else -> None."""
    if not name:
        return None
    if re.search(r"Data Center GPU|\bFlex\b|\bMax\s+\d", name):
        return True
    if re.search(r"Arc\(TM\)\s+(Pro\s+)?[AB]\d{2,3}", name) or re.search(r"\bArc\s+(Pro\s+)?[AB]\d{2,3}", name):
        return True
    if re.search(r"UHD|Iris|HD Graphics|Arc\(TM\) Graphics$|Arc Graphics$", name):
        return False
    return None


def parse_xpu_smi_discovery(text: str) -> list:
    """`xpu-smi discovery` table -> [{'name', 'device_id', 'bdf'}], one per 'Device ID' row."""
    gpus, current = [], None
    for line in (text or "").splitlines():
        row = re.match(r"^\|\s*(\d*)\s*\|\s*(.*?)\s*\|\s*$", line)
        if not row:
            continue
        if row.group(1):
            current = {"name": None, "device_id": None, "bdf": None}
            gpus.append(current)
        if current is None:
            continue
        key, _, value = row.group(2).partition(":")
        value = value.strip()
        if key == "Device Name":
            current["name"] = value
        elif key == "PCI Device ID" and re.fullmatch(r"0x[0-9a-fA-F]{4}", value):
            current["device_id"] = value.lower()
        elif key == "PCI BDF Address":
            current["bdf"] = value
    return [g for g in gpus if g["name"]]


def parse_sycl_ls(text: str) -> list:
    """sycl-ls lines of Level Zero GPUs ('[level_zero:gpu][level_zero:0] Intel(R) Level-Zero, <name> 1.3 [...]'
    or the older '[ext_oneapi_level_zero:gpu:0] ...') -> [{'name'}]. OpenCL duplicates are left out."""
    gpus = []
    for line in (text or "").splitlines():
        match = re.match(r"^\[(?:ext_oneapi_)?level_zero:gpu[^\]]*\](?:\[[^\]]*\])?\s+[^,]*,\s*(.+?)\s+\d+\.\d+\s+\[",
                         line.strip())
        if match:
            gpus.append({"name": match.group(1)})
    return gpus


def drm_intel_cards(read_file=read_text, listdir=_listdir, root=DRM) -> list:
    """/sys/class/drm/cardN/device/{vendor,device} -> [{'card', 'device_id'}] for vendor 0x8086."""
    cards = sorted((e for e in listdir(root) or [] if re.fullmatch(r"card\d+", str(e))), key=lambda c: int(c[4:]))
    found = []
    for card in cards:
        if (read_file(f"{root}/{card}/device/vendor") or "").strip().lower() != INTEL_VENDOR:
            continue
        device = (read_file(f"{root}/{card}/device/device") or "").strip().lower()
        found.append({"card": card, "device_id": device if re.fullmatch(r"0x[0-9a-f]{4}", device) else None})
    return found


def _intel_entry(name, device_id):
    return {"name": name, "device_id": device_id, "discrete": intel_discrete(name)}


def _intel_tool_names(run, which, timeout, errors):
    """(GPUs named by `xpu-smi discovery`, else `sycl-ls`, the tool that named them); ([], None) when neither
    is installed or names one."""
    for tool, args, parse in (("xpu-smi", ["discovery"], parse_xpu_smi_discovery), ("sycl-ls", [], parse_sycl_ls)):
        exe = which(tool)
        named = _tool_gpus(run, [exe, *args], parse, timeout, errors, "no Intel GPU in its output") if exe else None
        if named:
            return named, exe
    return [], None


def _named_intel(named: list, cards: list) -> list:
    """Device ids: the tool's own, else the DRM cards' in order when the counts agree."""
    fill = [c["device_id"] for c in cards] if len(cards) == len(named) else [None] * len(named)
    return [_intel_entry(g["name"], g.get("device_id") or d) for g, d in zip(named, fill)]


def probe_intel(run=subprocess.run, platform=sys.platform, which=find_tool, read_file=read_text, listdir=_listdir,
                timeout=5.0) -> dict:
    """{"gpus": [{"name", "device_id", "discrete"}], "source", "errors"}: on Linux the DRM cards with Intel's
    vendor id, named by `xpu-smi discovery` or else `sycl-ls` when either is installed; on Windows the
    video-controller list."""
    osn = os_name(platform)
    if osn == "windows":
        return _probe_windows(run, timeout, "intel", lambda r: _intel_entry(r["name"], r["device_id"]))
    errors = []
    if osn != "linux":
        return _nothing(errors)
    cards = drm_intel_cards(read_file, listdir)
    named, source = _intel_tool_names(run, which, timeout, errors)
    if named:
        return {"gpus": _named_intel(named, cards), "source": source, "errors": errors}
    if cards:
        gpus = [{"name": f"Intel GPU {c['device_id'] or c['card']}", "device_id": c["device_id"], "discrete": None}
                for c in cards]
        return {"gpus": gpus, "source": DRM, "errors": errors}
    return _nothing(errors)


# --- Apple -----------------------------------------------------------------------------------------------------


def probe_apple(platform=sys.platform, machine=None) -> dict:
    """Apple silicon (darwin + arm64) has MPS through the plain PyPI torch build."""
    if machine is None:
        import platform as _platform
        machine = _platform.machine()
    return {"mps": platform == "darwin" and str(machine).lower() in ("arm64", "aarch64")}


# ---- the check row: AMD, Intel and Apple GPUs --------------------------------------------------------------

def probe_other_gpus() -> dict:
    return {"amd": probe_amd(), "intel": probe_intel(), "apple": probe_apple()}


def newest_rocm_for(gfx: str) -> tuple:
    """(torch minor, ROCm build) of the newest release whose ROCm build has kernels for `gfx`; (None, None)."""
    for r in builds.load()["releases"]:
        for b in sorted((b for b in r["builds"].get("linux-x86_64", []) if b.startswith("rocm")),
                        key=builds.build_order, reverse=True):
            if builds.rocm_covers(r["torch"], b, gfx):
                return r["torch"], b
    return None, None


def judge_other_gpus(facts: dict, platform_facts: dict, lang: str = "en") -> CheckResult:
    """gpu.other: what torch can do with an AMD, Intel or Apple GPU here."""
    amd, intel = facts.get("amd", {}).get("gpus") or [], facts.get("intel", {}).get("gpus") or []
    osn = os_name(platform_facts.get("platform", "linux"))
    if amd:
        return _judge_amd(amd[0], osn, facts, lang)
    arc = [g for g in intel if g.get("discrete")]
    if arc:
        return CheckResult("gpu.other", "ok", tr(
            lang, f"Intel {arc[0]['name']}: torch's XPU build runs on it; `fomm-doctor install` picks it.",
            f"Intel {arc[0]['name']}：torch 的 XPU 版可以使用它；`fomm-doctor install` 会选择它。"), facts)
    if (facts.get("apple") or {}).get("mps"):
        return CheckResult("gpu.other", "ok", tr(
            lang, "Apple silicon: the PyPI build of torch uses its GPU through MPS.",
            "Apple 芯片：PyPI 上的 torch 通过 MPS 使用它的 GPU。"), facts)
    return CheckResult("gpu.other", "skipped", tr(lang, "No AMD, Intel Arc or Apple GPU found.",
                                                  "未发现 AMD、Intel Arc 或 Apple GPU。"), facts)


def _judge_amd(gpu: dict, osn: str, facts: dict, lang: str) -> CheckResult:
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
