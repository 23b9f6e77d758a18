"""torch check: installed, version, CUDA or CPU build, cuda.is_available(), a tiny tensor op — all in a child
Python with a time limit (a broken install is a failed row, not a crash of the doctor).

id: torch.import   (the build-vs-driver fit is gpu.torch_cuda, in checks/gpu/nvidia.py)
"""
from fomm_doctor.preflight import tr
from fomm_doctor.report import CheckResult
from fomm_doctor.checks.subprocess_probe import import_script, judge_failed_import, probe_import

IMPORT_TIMEOUT = 60.0  # a cold torch import on Windows with an antivirus scan can take tens of seconds

_TENSOR_OP = r'''
out.update(version=getattr(torch, "__version__", None), file=getattr(torch, "__file__", None))
out["cuda"] = torch.version.cuda
out["hip"] = getattr(torch.version, "hip", None)
out["cuda_available"] = bool(torch.cuda.is_available())
out["device_count"] = torch.cuda.device_count() if out["cuda_available"] else 0
out["devices"] = [torch.cuda.get_device_name(i) for i in range(out["device_count"])]
out["arch_list"] = list(torch.cuda.get_arch_list()) if out["cuda"] else []
mps = getattr(torch.backends, "mps", None)
out["mps_available"] = bool(mps and mps.is_available())
a = torch.ones(2, 3)
value = float((a @ a.T).sum())
out["tensor_op"] = value == 12.0
if out["cuda_available"]:
    out["cuda_tensor_op"] = float((torch.ones(2, 3, device="cuda") * 2).sum().cpu()) == 12.0
out["ok"] = out["tensor_op"] and out.get("cuda_tensor_op", True)
if not out["ok"]:
    out["error"] = "a tiny tensor operation returned a wrong result"
'''

_SCRIPT = import_script("torch", _TENSOR_OP)


def probe_torch(timeout: float = IMPORT_TIMEOUT, python=None, env=None) -> dict:
    return probe_import(_SCRIPT, timeout, python, env)


_INSTALL = "fomm-doctor install --yes"
INSTALL_RUN = (("fomm-doctor", "install", "--yes"),)  # _INSTALL as CheckResult.run


def _needs_vc_runtime(platform_facts: dict, error: str) -> bool:
    """On Windows a DLL that does not load is usually the missing VC++ runtime: reinstalling torch alone will
    not help, so that fix is advice (a download from Microsoft first), never run."""
    return platform_facts.get("os") == "windows" and ("DLL" in error or "WinError 126" in error)


def _reinstall(platform_facts: dict, error: str, lang: str) -> str:
    """Reinstall the right build, after the VC++ runtime where that is what is missing."""
    if _needs_vc_runtime(platform_facts, error):
        return tr(lang, "Install the Microsoft Visual C++ Redistributable "
                        f"(https://aka.ms/vs/17/release/vc_redist.x64.exe), then: {_INSTALL}",
                  "先安装微软 Visual C++ 运行库（https://aka.ms/vs/17/release/vc_redist.x64.exe），"
                  f"然后：{_INSTALL}")
    return tr(lang, f"Reinstall the right build: {_INSTALL}", f"重新安装合适的版本：{_INSTALL}")


def judge_import(facts: dict, platform_facts: dict, lang: str = "en") -> CheckResult:
    details = {k: facts.get(k) for k in ("installed", "version", "cuda", "hip", "cuda_available", "devices",
                                         "mps_available", "tensor_op", "file", "error", "elapsed_s")}
    failed = judge_failed_import("torch.import", facts, details, lang, missing="torch", name="torch",
                                 missing_fix=_INSTALL, broken_fix=lambda error: _reinstall(platform_facts, error, lang),
                                 missing_run=INSTALL_RUN,
                                 broken_run=lambda error: () if _needs_vc_runtime(platform_facts, error) else INSTALL_RUN)
    if failed:
        return failed
    build = f"CUDA {facts['cuda']}" if facts.get("cuda") else ("ROCm" if facts.get("hip") else "CPU")
    gpu = tr(lang, ", GPU usable", "，可用 GPU") if facts.get("cuda_available") else ""
    return CheckResult("torch.import", "ok", tr(lang, f"torch {facts.get('version')} ({build} build){gpu}; "
                                                      "tensor op works.",
                                                f"torch {facts.get('version')}（{build} 版）{gpu}；张量运算正常。"),
                       details)
