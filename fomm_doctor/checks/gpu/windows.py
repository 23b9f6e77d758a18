"""Windows: the GPUs of every vendor from one list, Win32_VideoController, as PowerShell prints it."""
import json
import os
import re

from fomm_doctor.checks.gpu.shared import run_tool

# Windows: one JSON object (one adapter) or a JSON array (several), as ConvertTo-Json writes them.
VIDEO_CONTROLLER_PS = ["powershell", "-NoProfile", "-NonInteractive", "-Command",
                       "Get-CimInstance Win32_VideoController | "
                       "Select-Object Name, AdapterCompatibility, PNPDeviceID | ConvertTo-Json"]


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
    text = run_tool(run, cmd, timeout, errors, name="powershell")
    if text is None:
        return None
    rows = parse_video_controllers(text)
    if not rows and text.strip():
        errors.append("powershell: unreadable Win32_VideoController output")
    return rows


def probe_windows(run, timeout, vendor: str, entry) -> dict:
    """A vendor's GPUs from the video-controller list, each made into a probe's gpu entry by `entry(row)`."""
    errors = []
    rows = _windows_controllers(run, timeout, errors)
    gpus = [entry(r) for r in rows or [] if r["vendor"] == vendor]
    return {"gpus": gpus, "source": "Win32_VideoController" if rows is not None else None, "errors": errors}
