"""GPU checks, one module per vendor: `nvidia` (gpu.driver, gpu.torch_cuda), `amd` (ROCm), `intel` (XPU),
`apple` (MPS), with what their probes share (`shared`: files and tools; `windows`: the video-controller list).
Here: the gpu.other row (AMD, Intel and Apple GPUs), and every vendor's probe at once as the facts `install`
plans with (the command hands `probe_gpus` to it).

id: gpu.other
"""
from fomm_doctor.checks.gpu.amd import judge_amd, probe_amd
from fomm_doctor.checks.gpu.apple import probe_apple
from fomm_doctor.checks.gpu.intel import probe_intel
from fomm_doctor.checks.gpu.nvidia import probe_nvidia
from fomm_doctor.install.builds import os_name
from fomm_doctor.install.machine import Gpus
from fomm_doctor.preflight import tr
from fomm_doctor.report import CheckResult


def probe_gpus() -> Gpus:
    """This machine's NVIDIA, AMD and Intel GPUs, as install's facts."""
    return Gpus.from_facts(probe_nvidia(), probe_amd(), probe_intel())


def probe_other_gpus() -> dict:
    return {"amd": probe_amd(), "intel": probe_intel(), "apple": probe_apple()}


def judge_other_gpus(facts: dict, platform_facts: dict, lang: str = "en") -> CheckResult:
    """gpu.other: what torch can do with an AMD, Intel or Apple GPU here."""
    amd, intel = facts.get("amd", {}).get("gpus") or [], facts.get("intel", {}).get("gpus") or []
    osn = os_name(platform_facts.get("platform", "linux"))
    if amd:
        return judge_amd(amd[0], osn, facts, lang)
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
