"""NVIDIA: the driver (only the driver matters for pip wheels, which carry their own CUDA), the GPUs and their
compute capability, the newest CUDA build that driver runs, and whether the installed torch's CUDA build fits
both the driver and the GPU architecture.

ids: gpu.driver, gpu.torch_cuda
"""
import os
import re
import subprocess
import sys
from typing import Optional

from fomm_doctor.checks.gpu.shared import read_text
from fomm_doctor.install import builds
from fomm_doctor.install.backend import Backend, Kind
from fomm_doctor.install.builds import os_name
from fomm_doctor.install.machine import Gpus, InstalledTorch, Interpreter, Machine, Nvidia
from fomm_doctor.preflight import tr
from fomm_doctor.report import CheckResult
from fomm_core.tools import find_tool

_QUERY = ["--query-gpu=driver_version,name,compute_cap", "--format=csv,noheader"]
_QUERY_OLD = ["--query-gpu=driver_version,name", "--format=csv,noheader"]  # drivers before compute_cap existed
_NUMBER_FIRST = re.compile(r"\s*\d")  # a driver version or compute capability, not "[N/A]" or a message


def nvidia_smi_candidates(platform: str, which=find_tool, env=None) -> list:
    """Where nvidia-smi usually lives: PATH first (absolute, never the current folder), then the driver's fixed
    install locations."""
    env = os.environ if env is None else env
    found = which("nvidia-smi")
    candidates = [found] if found else []
    if os_name(platform) == "windows":
        root = env.get("SystemRoot") or r"C:\Windows"
        program_files = env.get("ProgramFiles") or r"C:\Program Files"
        candidates += [root + r"\System32\nvidia-smi.exe",
                       program_files + r"\NVIDIA Corporation\NVSMI\nvidia-smi.exe"]
    elif os_name(platform) == "linux":
        candidates += ["/usr/bin/nvidia-smi", "/usr/local/bin/nvidia-smi", "/usr/lib/wsl/lib/nvidia-smi"]
    unique = []
    for c in candidates:
        if c not in unique:
            unique.append(c)
    return unique


def parse_smi_csv(text: str) -> tuple:
    """'580.65.06, NVIDIA GeForce RTX 3060, 8.6' lines -> (driver, [{"name", "compute_capability"}])."""
    driver, gpus = None, []
    for line in text.strip().splitlines():
        cols = [c.strip() for c in line.split(",")]
        if len(cols) < 2 or not _NUMBER_FIRST.match(cols[0]):
            continue
        driver = driver or cols[0]
        cc = cols[2] if len(cols) > 2 and _NUMBER_FIRST.match(cols[2]) else None
        gpus.append({"name": cols[1], "compute_capability": cc})
    return driver, gpus


def parse_proc_version(text: str):
    """'NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb ...' -> '550.54.14'."""
    match = re.search(r"Kernel Module(?: for [\w-]+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    if match:
        return match.group(1)
    match = re.search(r"\b(\d{3}\.\d+(?:\.\d+)?)\b", text)
    return match.group(1) if match else None


def _ask_smi(exe: str, run, timeout: float, errors: list) -> Optional[dict]:
    """This nvidia-smi's answer (the full query, then the one old drivers know), or None with the reasons
    appended to `errors`."""
    for query in (_QUERY, _QUERY_OLD):
        try:
            out = run([exe, *query], capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            return None
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"{exe}: {exc}")
            return None
        if out.returncode != 0:
            errors.append(f"{exe}: {(out.stderr or out.stdout).strip()[:200]}")
            continue
        driver, gpus = parse_smi_csv(out.stdout)
        if driver:
            return {"driver_version": driver, "gpus": gpus, "source": exe, "wsl": "/wsl/" in exe}
    return None


def _kernel_module_driver(read_file, errors: list) -> Optional[dict]:
    """The driver version the Linux kernel module reports, when nvidia-smi could not be asked."""
    for path in ("/proc/driver/nvidia/version", "/sys/module/nvidia/version"):
        text = read_file(path)
        version = parse_proc_version(text) if text else None
        if version:
            return {"driver_version": version, "gpus": [], "source": path, "errors": errors}
    return None


def probe_nvidia(run=subprocess.run, platform=sys.platform, which=find_tool, read_file=read_text,
                 timeout=5.0) -> dict:
    """{"driver_version": str|None, "gpus": [{"name", "compute_capability"}], "source": str|None}

    (plus "wsl": True when nvidia-smi is WSL's, whose driver is the Windows one, and "errors")."""
    errors = []
    for exe in nvidia_smi_candidates(platform, which):
        found = _ask_smi(exe, run, timeout, errors)
        if found:
            return found
    found = _kernel_module_driver(read_file, errors) if os_name(platform) == "linux" else None
    return found or {"driver_version": None, "gpus": [], "source": None, "errors": errors}


def _machine(nv: dict, platform_facts: dict) -> Machine:
    """The facts install's choice judges by, so that check and install agree on whose driver table applies
    (under WSL the Windows one) and on the platform's wheels."""
    py = Interpreter(platform_facts.get("python_version") or "", platform_facts.get("platform", "linux"),
                     platform_facts.get("machine") or "x86_64")
    return Machine(py, Gpus(Nvidia.from_facts(nv)))


def _newest_cuda(m: Machine) -> Optional[Backend]:
    if not m.driver or m.os == "macos":
        return None
    return builds.newest_cuda_for_driver(m.driver, m.driver_os)


def _label(build: Optional[Backend]) -> Optional[str]:
    return str(build) if build else None


def max_cuda_for_driver(driver_version, osn) -> Optional[Backend]:
    """The newest CUDA build (cu132) this driver runs, per NVIDIA's minimums; None when none fits."""
    return _newest_cuda(_machine({"driver_version": driver_version}, {"platform": osn}))


def _arch(text: str) -> str:
    """'sm_86' -> '8.6'; 'compute_120' -> '12.0'; anything else -> ''."""
    digits = text.split("_", 1)[-1]
    return f"{int(digits[:-1])}.{digits[-1]}" if digits.isdigit() and len(digits) >= 2 else ""


def arch_supported(cc, build: Backend, torch_version, pkey: str, arch_list=None) -> bool:
    """Does a build have kernels for compute capability `cc`? torch's own arch list when known, else the table."""
    if len(builds.cc_key(cc)) < 2:
        return True  # unknown capability (old driver): cannot tell, do not cry wolf
    if arch_list:
        def dotted(prefix):
            return [_arch(e) for e in arch_list if e.startswith(prefix) and _arch(e)]
        return builds.kernels_for(cc, dotted("sm_"), dotted("compute_"))
    return builds.cuda_covers(torch_version or "", build, pkey, cc) is not False


def _no_driver(m: Machine, details: dict, lang: str) -> Optional[CheckResult]:
    """gpu.driver on a Mac, or where no NVIDIA driver answered; None when there is a driver to judge."""
    if m.os == "macos":
        return CheckResult("gpu.driver", "skipped", tr(
            lang, "macOS: no NVIDIA/CUDA; FOMM runs on the CPU (or Apple's MPS).",
            "macOS：没有 NVIDIA/CUDA；FOMM 在 CPU（或 Apple MPS）上运行。"), details)
    if not details["driver_version"]:
        return CheckResult("gpu.driver", "warn", tr(
            lang, "No NVIDIA driver found: FOMM will run on the CPU (a few frames per second).",
            "未找到 NVIDIA 驱动：FOMM 将在 CPU 上运行（每秒几帧）。"), details, tr(
            lang, "If this machine has an NVIDIA GPU, install its driver from https://www.nvidia.com/drivers; "
                  "otherwise nothing to do.",
            "如果这台机器有 NVIDIA 显卡，请从 https://www.nvidia.cn/drivers 安装驱动；没有则无需处理。"))
    return None


def _update_driver(m: Machine, lang: str) -> str:
    """The fix for an old driver: the minimum of the newest CUDA build any release publishes."""
    need = builds.driver_minimum(builds.newest_cuda_for_driver("999.99", m.driver_os), m.driver_os)
    return tr(lang, f"Update the NVIDIA driver to {need} or newer: https://www.nvidia.com/drivers",
              f"把 NVIDIA 驱动升级到 {need} 或更高：https://www.nvidia.cn/drivers")


def judge_driver(nv: dict, platform_facts: dict, index: dict, lang: str = "en") -> CheckResult:
    m = _machine(nv, platform_facts)
    driver = m.driver
    best = _newest_cuda(m)
    details = {"driver_version": driver, "gpus": list(nv.get("gpus") or []), "source": nv.get("source"),
               "max_cuda": _label(best)}
    missing = _no_driver(m, details, lang)
    if missing:
        return missing
    names = ", ".join(f"{g.name} ({g.compute_capability or '?'})" for g in m.nvidia_gpus) or tr(
        lang, "GPU names unknown", "显卡型号未知")
    if best is None:
        return CheckResult("gpu.driver", "warn", tr(
            lang, f"NVIDIA driver {driver} is too old for any CUDA build of torch; {names}. FOMM would run on the CPU.",
            f"NVIDIA 驱动 {driver} 太旧，任何 CUDA 版 torch 都不能用；{names}。FOMM 只能用 CPU。"), details,
            _update_driver(m, lang))
    newest_torch, _ = builds.newest_release_for_driver(driver, m.driver_os, m.pkey)
    details["newest_torch_for_driver"] = newest_torch
    summary = tr(lang, f"Driver {driver}, runs CUDA up to {best}; {names}.",
                 f"驱动 {driver}，最高支持 {best}；{names}。")
    if newest_torch is None or newest_torch != builds.newest_release():
        return CheckResult("gpu.driver", "warn", summary + tr(
            lang, f" Newest torch with a CUDA build it runs: {newest_torch or 'none'}.",
            f" 它能运行的最新 CUDA 版 torch：{newest_torch or '无'}。"), details, _update_driver(m, lang))
    return CheckResult("gpu.driver", "ok", summary, details)


_INSTALL = "fomm-doctor install --yes"
_INSTALL_RUN = (("fomm-doctor", "install", "--yes"),)  # _INSTALL as CheckResult.run


def _not_a_cuda_build(torch_facts: dict, details: dict, m: Machine, lang: str) -> CheckResult:
    """gpu.torch_cuda for a ROCm or CPU build of torch."""
    version, driver = details["torch"], details["driver_version"]
    if torch_facts.get("hip"):
        return CheckResult("gpu.torch_cuda", "skipped", tr(
            lang, f"torch {version} is a ROCm (AMD) build; NVIDIA fit does not apply.",
            f"torch {version} 是 ROCm（AMD）版，不涉及 NVIDIA 匹配。"), details)
    if driver and m.os != "macos":
        return CheckResult("gpu.torch_cuda", "warn", tr(
            lang, f"torch {version} is a CPU build, but this machine has an NVIDIA driver ({driver}).",
            f"torch {version} 是 CPU 版，但这台机器有 NVIDIA 驱动（{driver}）。"), details, _INSTALL, _INSTALL_RUN)
    return CheckResult("gpu.torch_cuda", "ok", tr(lang, f"torch {version}: CPU build, no NVIDIA GPU to use.",
                                                  f"torch {version}：CPU 版，本机没有可用的 NVIDIA 显卡。"), details)


def _driver_misfit(tag: Backend, details: dict, m: Machine, lang: str) -> Optional[CheckResult]:
    """A fail row when the driver is older than this CUDA build needs (builds with no table row pass)."""
    version, driver = details["torch"], m.driver
    need = builds.driver_minimum(tag, m.driver_os)
    if not need or builds.driver_runs(tag, driver, m.driver_os):
        return None
    best = _newest_cuda(m)
    return CheckResult("gpu.torch_cuda", "fail", tr(
        lang, f"torch {version} ({tag}) needs driver {need}+, this one is {driver}.",
        f"torch {version}（{tag}）需要 {need} 以上的驱动，本机是 {driver}。"), dict(details, max_cuda=_label(best)), tr(
        lang, f"Update the NVIDIA driver, or `{_INSTALL}` (picks {best or 'the CPU build'}).",
        f"升级 NVIDIA 驱动，或运行 `{_INSTALL}`（会选 {best or 'CPU 版'}）。"), _INSTALL_RUN)


def _arch_misfit(tag: Backend, torch_facts: dict, details: dict, m: Machine, lang: str) -> Optional[CheckResult]:
    """A fail row for the first GPU this build has no kernels for."""
    version = details["torch"]
    misfits = [g for g in m.nvidia_gpus if not arch_supported(g.compute_capability, tag, version, m.pkey,
                                                              torch_facts.get("arch_list"))]
    if not misfits:
        return None
    g = misfits[0]
    return CheckResult("gpu.torch_cuda", "fail", tr(
        lang, f"torch {version} ({tag}) has no kernels for {g.name} (compute {g.compute_capability}): "
              "\"no kernel image is available\".",
        f"torch {version}（{tag}）不含 {g.name}（算力 {g.compute_capability}）的内核："
        "会报 \"no kernel image is available\"。"), details, _INSTALL, _INSTALL_RUN)


def _fitting_build(tag: Backend, torch_facts: dict, details: dict, lang: str) -> CheckResult:
    """A build that fits driver and GPUs: ok, unless torch still cannot see CUDA."""
    version, driver = details["torch"], details["driver_version"]
    if torch_facts.get("cuda_available") is False:
        return CheckResult("gpu.torch_cuda", "warn", tr(
            lang, f"torch {version} ({tag}) fits driver {driver}, yet cuda.is_available() is False.",
            f"torch {version}（{tag}）与驱动 {driver} 匹配，但 cuda.is_available() 为 False。"), details,
            tr(lang, "Reboot after a driver update; check CUDA_VISIBLE_DEVICES.",
               "更新驱动后请重启；检查 CUDA_VISIBLE_DEVICES。"))
    return CheckResult("gpu.torch_cuda", "ok", tr(lang, f"torch {version} ({tag}) fits driver {driver} and the GPU.",
                                                  f"torch {version}（{tag}）与驱动 {driver} 和显卡匹配。"), details)


def judge_torch_cuda(torch_facts: dict, nv: dict, platform_facts: dict, index: dict,
                     lang: str = "en") -> CheckResult:
    """Does the installed torch's build fit this driver and these GPUs?"""
    if not torch_facts.get("ok"):
        return CheckResult("gpu.torch_cuda", "skipped", tr(lang, "torch is not importable (see torch.import).",
                                                           "torch 无法导入（见 torch.import）。"), {})
    m = _machine(nv, platform_facts)
    version = torch_facts.get("version")
    tag = InstalledTorch(str(version), torch_facts.get("cuda")).backend
    driver = m.driver
    details = {"torch": version, "build": str(tag), "driver_version": driver,
               "cuda_available": torch_facts.get("cuda_available"), "arch_list": torch_facts.get("arch_list")}
    if tag.kind is not Kind.CUDA:
        return _not_a_cuda_build(torch_facts, details, m, lang)
    if not driver:
        return CheckResult("gpu.torch_cuda", "warn", tr(
            lang, f"torch {version} is a CUDA build ({tag}) but no NVIDIA driver was found; it runs on the CPU.",
            f"torch {version} 是 CUDA 版（{tag}），但没有 NVIDIA 驱动，只能用 CPU。"), details, _INSTALL)
    return (_driver_misfit(tag, details, m, lang)
            or _arch_misfit(tag, torch_facts, details, m, lang)
            or _fitting_build(tag, torch_facts, details, lang))
