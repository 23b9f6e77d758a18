"""Intel (XPU): Arc and Data Center GPUs, the ones torch's XPU build runs on: the DRM cards with Intel's vendor
id, named by `xpu-smi discovery` or `sycl-ls` (Linux); the video-controller list (Windows).

probe_intel(...) -> {"gpus": [{"name": str, "device_id": "0x56a0"|None, "discrete": bool|None}],
                     "source": str|None, "errors": [str]}
"""
import re
import subprocess
import sys

from fomm_doctor.checks.gpu.shared import DRM, listdir, nothing, read_text, tool_gpus
from fomm_doctor.checks.gpu.windows import probe_windows
from fomm_doctor.install.builds import os_name
from fomm_core.tools import find_tool

INTEL_VENDOR = "0x8086"


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


def drm_intel_cards(read_file=read_text, listdir=listdir, root=DRM) -> list:
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
        named = tool_gpus(run, [exe, *args], parse, timeout, errors, "no Intel GPU in its output") if exe else None
        if named:
            return named, exe
    return [], None


def _named_intel(named: list, cards: list) -> list:
    """Device ids: the tool's own, else the DRM cards' in order when the counts agree."""
    fill = [c["device_id"] for c in cards] if len(cards) == len(named) else [None] * len(named)
    return [_intel_entry(g["name"], g.get("device_id") or d) for g, d in zip(named, fill)]


def probe_intel(run=subprocess.run, platform=sys.platform, which=find_tool, read_file=read_text, listdir=listdir,
                timeout=5.0) -> dict:
    """{"gpus": [{"name", "device_id", "discrete"}], "source", "errors"}: on Linux the DRM cards with Intel's
    vendor id, named by `xpu-smi discovery` or else `sycl-ls` when either is installed; on Windows the
    video-controller list."""
    osn = os_name(platform)
    if osn == "windows":
        return probe_windows(run, timeout, "intel", lambda r: _intel_entry(r["name"], r["device_id"]))
    errors = []
    if osn != "linux":
        return nothing(errors)
    cards = drm_intel_cards(read_file, listdir)
    named, source = _intel_tool_names(run, which, timeout, errors)
    if named:
        return {"gpus": _named_intel(named, cards), "source": source, "errors": errors}
    if cards:
        gpus = [{"name": f"Intel GPU {c['device_id'] or c['card']}", "device_id": c["device_id"], "discrete": None}
                for c in cards]
        return {"gpus": gpus, "source": DRM, "errors": errors}
    return nothing(errors)
