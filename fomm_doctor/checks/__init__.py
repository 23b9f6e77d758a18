"""`fomm-doctor check`: every check is a probe (gathers facts: plain dicts) and a judge (pure: facts ->
CheckResult). Probes live beside their judges, one module per area:

  python.py       python.version, python.bits, python.implementation, python.venv
  pip.py          pip.version, pip.index            (config reading: fomm_doctor/install/pip_config.py)
  gpu/            gpu.driver, gpu.torch_cuda (nvidia.py); gpu.other (AMD ROCm, Intel XPU, Apple MPS)
  torch.py        torch.import                      (child process, time limit)
  opencv.py       opencv.import                     (child process, time limit)
  ffmpeg.py       ffmpeg.bundled, ffmpeg.path
  system.py       disk.space, memory.ram
  checkpoints.py  checkpoints.<name>
  mirrors.py      mirror.<name>
  table.py        torch.table                       (our build table against the newest torch on pip's index)

`gather_facts` runs the probes concurrently, each isolated (a probe that raises becomes a fact, not a crash);
`judge_all` turns facts into rows.
"""
from concurrent.futures import ThreadPoolExecutor

from fomm_doctor.preflight import tr
from fomm_doctor.report import CheckResult
from fomm_doctor.checks import checkpoints, ffmpeg, gpu, mirrors, opencv, pip, python, system, table
from fomm_doctor.checks import torch as torch_check
from fomm_doctor.checks.gpu import nvidia


def _safe(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # isolate: one broken probe must not take the report down
        return {"probe_error": f"{exc.__class__.__name__}: {exc}"}


def gather_facts(offline: bool = False, timeout: float = mirrors.DEFAULT_TIMEOUT) -> dict:
    """Run every probe (concurrently) on this machine -> {area: facts}."""
    platform_facts = python.probe_platform()
    pip_index = _safe(pip.probe_pip_index, platform_facts)
    from fomm_core.resources import checkpoints_dir
    places = system.default_disk_places(platform_facts, str(checkpoints_dir()))
    jobs = {
        "torch": (torch_check.probe_torch,),
        "opencv": (opencv.probe_opencv,),
        "nvidia": (nvidia.probe_nvidia,),
        "other_gpus": (gpu.probe_other_gpus,),
        "ffmpeg_bundled": (ffmpeg.probe_bundled,),
        "ffmpeg_path": (ffmpeg.probe_path,),
        "checkpoints": (checkpoints.probe_checkpoints,),
        "disk": (system.probe_disk, places),
        "ram": (system.probe_ram,),
        "pip_version": (pip.probe_pip_version,),
    }
    facts = {"platform": platform_facts, "pip_index": pip_index, "offline": offline, "timeout": timeout}
    if not offline:
        urls = mirrors.mirror_urls(_index(), pip_index if "index_url" in pip_index else {})
        facts["mirror_urls"] = urls
        jobs["mirrors"] = (mirrors.probe_mirrors, urls, timeout)
        jobs["torch_index"] = (table.probe_newest_torch, pip_index.get("index_url"), timeout)
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(_safe, *job) for name, job in jobs.items()}
        for name, future in futures.items():
            facts[name] = future.result()
    return facts


def _index() -> dict:
    from fomm_doctor.resources import load_wheels_index
    return load_wheels_index()


def _judge(check_id: str, fn, *args, lang="en"):
    """Run a judge; a crash (or a probe that crashed) becomes one failed row naming the check."""
    crashed = [a["probe_error"] for a in args if isinstance(a, dict) and "probe_error" in a]
    if crashed:
        return [CheckResult(check_id, "fail", tr(lang, f"The probe crashed: {crashed[0]}", f"检测程序出错：{crashed[0]}"),
                            {"error": crashed[0]})]
    try:
        out = fn(*args, lang=lang)
    except Exception as exc:
        return [CheckResult(check_id, "fail", tr(lang, f"The check crashed: {exc.__class__.__name__}: {exc}",
                                                 f"检查出错：{exc.__class__.__name__}: {exc}"), {})]
    return out if isinstance(out, list) else [out]


def judge_all(facts: dict, index: dict, lang: str = "en") -> list:
    """facts (as gather_facts returns) -> rows in a fixed order."""
    p = facts["platform"]
    rows = []
    rows += _judge("python.version", python.judge_version, p, index, lang=lang)
    rows += _judge("python.bits", python.judge_bits, p, index, lang=lang)
    rows += _judge("python.implementation", python.judge_implementation, p, index, lang=lang)
    rows += _judge("python.venv", python.judge_venv, p, index, lang=lang)
    rows += _judge("pip.version", pip.judge_version, facts["pip_version"], p, index, lang=lang)
    rows += _judge("pip.index", pip.judge_index, facts["pip_index"], p, lang=lang)
    rows += _judge("gpu.driver", nvidia.judge_driver, facts["nvidia"], p, index, lang=lang)
    rows += _judge("gpu.torch_cuda", nvidia.judge_torch_cuda, facts["torch"], facts["nvidia"], p, index, lang=lang)
    if "other_gpus" in facts:
        rows += _judge("gpu.other", gpu.judge_other_gpus, facts["other_gpus"], p, lang=lang)
    rows += _judge("torch.import", torch_check.judge_import, facts["torch"], p, lang=lang)
    rows += _judge("opencv.import", opencv.judge_import, facts["opencv"], p, lang=lang)
    rows += _judge("ffmpeg.bundled", ffmpeg.judge_bundled, facts["ffmpeg_bundled"], p, lang=lang)
    rows += _judge("ffmpeg.path", ffmpeg.judge_path, facts["ffmpeg_path"], facts["ffmpeg_bundled"], lang=lang)
    rows += _judge("disk.space", system.judge_disk, facts["disk"], lang=lang)
    rows += _judge("memory.ram", system.judge_ram, facts["ram"], lang=lang)
    rows += _judge("checkpoints.manifest", checkpoints.judge_checkpoints, facts["checkpoints"], lang=lang)
    if "torch_index" in facts:
        rows += _judge("torch.table", table.judge_table, facts["torch_index"], lang=lang)
    if "mirrors" in facts:
        rows += _judge("mirror.all", mirrors.judge_mirrors, facts["mirrors"], facts["mirror_urls"], index, p,
                       lang=lang)
    return rows


def run_checks(offline: bool = False, timeout: float = mirrors.DEFAULT_TIMEOUT, lang: str = "en") -> list:
    return judge_all(gather_facts(offline, timeout), _index(), lang)
