"""System checks: free disk where checkpoints and wheels go, and RAM, against what FOMM needs.

ids: disk.space, memory.ram
"""
import os
import shutil
import sys
import tempfile

from fomm_doctor.preflight import tr
from fomm_doctor.report import CheckResult
from fomm_doctor.units import byte_size
from fomm_doctor.install.builds import os_name

GB = 1024 ** 3
# A CUDA torch with its nvidia-* wheels takes about 5 GB installed, plus the downloads in pip's cache;
# a CPU build about 1 GB; each vox checkpoint 240 MB (700 MB with the training state).
DISK_FAIL, DISK_WARN = 2 * GB, 8 * GB
# Inference at 256x256 holds the model (240 MB) and its activations; long driving videos add frames.
RAM_FAIL, RAM_WARN = 2 * GB, 4 * GB


def pip_cache_dir(platform: str, env: dict, home: str) -> str:
    if env.get("PIP_CACHE_DIR"):
        return env["PIP_CACHE_DIR"]
    if os_name(platform) == "windows":
        return os.path.join(env.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local"), "pip", "Cache")
    if os_name(platform) == "macos":
        return os.path.join(home, "Library", "Caches", "pip")
    return os.path.join(env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"), "pip")


def _existing_parent(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def probe_disk(places: dict) -> list:
    """places {purpose: path} -> [{"purpose", "path", "free_bytes", "device"}], one per distinct filesystem."""
    seen, out = {}, []
    for purpose, path in places.items():
        where = _existing_parent(path)
        try:
            free = shutil.disk_usage(where).free
            device = os.stat(where).st_dev
        except OSError as exc:
            out.append({"purpose": purpose, "path": path, "free_bytes": None, "error": str(exc)})
            continue
        if device in seen:
            seen[device]["purpose"] += f", {purpose}"
            continue
        seen[device] = {"purpose": purpose, "path": path, "free_bytes": free}
        out.append(seen[device])
    return out


def default_disk_places(platform_facts: dict, checkpoints_dir: str) -> dict:
    return {"checkpoints": checkpoints_dir,
            "pip cache": pip_cache_dir(platform_facts.get("platform", sys.platform), platform_facts.get("env") or {},
                                       platform_facts.get("home") or os.path.expanduser("~")),
            "packages": platform_facts.get("prefix") or sys.prefix,
            "temp": tempfile.gettempdir()}


def probe_ram() -> dict:
    try:
        import psutil
    except ImportError:
        return {"total_bytes": None, "available_bytes": None, "error": "psutil is not installed"}
    vm = psutil.virtual_memory()
    return {"total_bytes": vm.total, "available_bytes": vm.available}


def judge_disk(places: list, lang: str = "en") -> CheckResult:
    known = [p for p in places if p.get("free_bytes") is not None]
    details = {"places": places, "need_bytes": DISK_WARN}
    if not known:
        return CheckResult("disk.space", "skipped", tr(lang, "Could not read free disk space.", "无法读取磁盘剩余空间。"),
                           details)
    low = min(known, key=lambda p: p["free_bytes"])
    listing = "; ".join(f"{p['purpose']}: {byte_size(p['free_bytes'])} free" for p in known)
    listing_zh = "；".join(f"{p['purpose']}：剩余 {byte_size(p['free_bytes'])}" for p in known)
    fix = tr(lang, f"Free space on the disk holding {low['path']} (a CUDA torch needs about 5 GB, each "
                   "checkpoint 240 MB), or `pip cache purge`.",
             f"清理 {low['path']} 所在磁盘（CUDA 版 torch 约需 5 GB，每个模型 240 MB），或运行 `pip cache purge`。")
    if low["free_bytes"] < DISK_FAIL:
        return CheckResult("disk.space", "fail", tr(lang, f"Too little disk: {listing}.", f"磁盘空间不足：{listing_zh}。"),
                           details, fix)
    if low["free_bytes"] < DISK_WARN:
        return CheckResult("disk.space", "warn", tr(lang, f"Disk is tight for a CUDA torch: {listing}.",
                                                    f"磁盘空间对 CUDA 版 torch 偏紧：{listing_zh}。"), details, fix)
    return CheckResult("disk.space", "ok", tr(lang, listing + ".", listing_zh + "。"), details)


def judge_ram(facts: dict, lang: str = "en") -> CheckResult:
    total, avail = facts.get("total_bytes"), facts.get("available_bytes")
    details = {"total_bytes": total, "available_bytes": avail, "need_bytes": RAM_WARN}
    if total is None:
        return CheckResult("memory.ram", "skipped", tr(lang, f"RAM unknown: {facts.get('error')}.",
                                                       f"内存未知：{facts.get('error')}。"), details)
    text = tr(lang, f"{byte_size(total)} RAM, {byte_size(avail)} available",
              f"内存 {byte_size(total)}，可用 {byte_size(avail)}")
    if total < RAM_FAIL:
        return CheckResult("memory.ram", "fail", text + tr(lang, ": too little for the model (needs 2 GB+).",
                                                           "：不够运行模型（至少 2 GB）。"), details,
                           tr(lang, "Use a machine with at least 4 GB of RAM.", "请使用至少 4 GB 内存的机器。"))
    if total < RAM_WARN or avail < RAM_FAIL:
        return CheckResult("memory.ram", "warn", text + tr(lang, ": tight; keep driving videos short.",
                                                           "：偏紧；驱动视频请尽量短。"), details,
                           tr(lang, "Close other programs before animating.", "运行前关闭其他程序。"))
    return CheckResult("memory.ram", "ok", text + tr(lang, ".", "。"), details)
