"""Python checks: version (which torch it can have), 32/64-bit, implementation, virtual environment.

ids: python.version, python.bits, python.implementation, python.venv
"""
import os
import platform as _platform
import struct
import sys

from fomm_doctor.report import CheckResult
from fomm_doctor.checks.common import python_cmd
from fomm_doctor.install import builds
from fomm_doctor.install.builds import os_name, version_key
from fomm_doctor.preflight import MIN_PYTHON, install_hint, tr

_ENV_KEYS = ("PIP_CONFIG_FILE", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "XDG_CONFIG_HOME",
             "XDG_CONFIG_DIRS", "APPDATA", "LOCALAPPDATA", "PROGRAMDATA", "ALLUSERSPROFILE", "VIRTUAL_ENV",
             "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "PIP_CACHE_DIR", "XDG_CACHE_HOME")


def probe_platform() -> dict:
    """Facts about this interpreter and OS (cheap, no subprocess)."""
    return {
        "platform": sys.platform,
        "os": os_name(sys.platform),
        "machine": _platform.machine(),
        "python_version": _platform.python_version(),
        "implementation": _platform.python_implementation(),
        "bits": struct.calcsize("P") * 8,
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": getattr(sys, "base_prefix", sys.prefix),
        "home": os.path.expanduser("~"),
        "env": {k: os.environ[k] for k in _ENV_KEYS if os.environ.get(k)},
    }


def torch_releases_for(py_version: str, facts: dict) -> list:
    """torch minor versions (newest first) with wheels for this Python on this OS/CPU."""
    major_minor = builds.minor_of(py_version)
    return builds.releases_for_python(major_minor, builds.platform_key(facts.get("platform", "linux"),
                                                                       facts.get("machine", "")))


def _install_python(facts: dict, lang: str) -> str:
    """The fix: how to get the Python to recommend on this OS, and put fomm-doctor into a venv of it."""
    return install_hint(facts.get("os") or os_name(facts.get("platform", "linux")), builds.recommended_python(), lang)


def judge_version(facts: dict, index: dict, lang: str = "en") -> CheckResult:
    version = facts["python_version"]
    vt = version_key(version)
    want = builds.recommended_python()
    releases = torch_releases_for(version, facts)
    newest_any = torch_releases_for(want, facts) or [builds.newest_release()]
    details = {"version": version, "newest_torch": releases[0] if releases else None,
               "recommended_python": want}
    fix = _install_python(facts, lang)
    if vt[:2] < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        newest = tr(lang, f"its newest torch is {releases[0]}", f"它最多能装 torch {releases[0]}") \
            if releases else tr(lang, "no torch wheels exist for it", "没有适用的 torch 安装包")
        return CheckResult("python.version", "fail", tr(
            lang, f"Python {version} is too old for fomm-doctor (needs {need}+); {newest}.",
            f"Python {version} 太旧，fomm-doctor 需要 {need} 以上；{newest}。"), details, fix)
    if not releases:
        return CheckResult("python.version", "fail", tr(
            lang, f"No torch release has wheels for Python {version} on this platform yet.",
            f"目前没有任何 torch 版本提供 Python {version}（本平台）的安装包。"), details, fix)
    newest, best = releases[0], newest_any[0]
    if version_key(newest) < version_key(best):
        return CheckResult("python.version", "warn", tr(
            lang, f"Python {version}: newest torch it can have is {newest} (current is {best}).",
            f"Python {version}：最多能装 torch {newest}（最新为 {best}）。"), details, fix)
    return CheckResult("python.version", "ok", tr(
        lang, f"Python {version}: torch up to {newest} available.", f"Python {version}：可安装 torch {newest}。"),
        details)


def judge_bits(facts: dict, index: dict, lang: str = "en") -> CheckResult:
    bits = facts["bits"]
    details = {"bits": bits, "machine": facts.get("machine")}
    if bits == 64:
        return CheckResult("python.bits", "ok", tr(lang, "64-bit interpreter.", "64 位解释器。"), details)
    return CheckResult("python.bits", "fail", tr(
        lang, f"{bits}-bit Python: no {bits}-bit torch wheels exist, so pip finds only a broken 2017 sdist.",
        f"{bits} 位 Python：torch 从来没有 {bits} 位安装包，pip 只能找到 2017 年的坏源码包。"),
        details, _install_python(facts, lang))


def judge_implementation(facts: dict, index: dict, lang: str = "en") -> CheckResult:
    impl = facts["implementation"]
    details = {"implementation": impl}
    if impl == "CPython":
        return CheckResult("python.implementation", "ok", "CPython.", details)
    return CheckResult("python.implementation", "fail", tr(
        lang, f"{impl}: torch publishes wheels for CPython only.", f"{impl}：torch 只提供 CPython 的安装包。"),
        details, _install_python(facts, lang))


def judge_venv(facts: dict, index: dict, lang: str = "en") -> CheckResult:
    env = facts.get("env") or {}
    in_venv = facts.get("prefix") != facts.get("base_prefix") or bool(env.get("VIRTUAL_ENV"))
    conda = env.get("CONDA_DEFAULT_ENV") if env.get("CONDA_PREFIX") else None
    details = {"in_venv": in_venv, "conda_env": conda, "prefix": facts.get("prefix")}
    if in_venv:
        return CheckResult("python.venv", "ok", tr(lang, f"Virtual environment: {facts.get('prefix')}",
                                                   f"虚拟环境：{facts.get('prefix')}"), details)
    if conda:
        return CheckResult("python.venv", "ok", tr(lang, f"Conda environment '{conda}'.", f"Conda 环境 '{conda}'。"),
                           details)
    py = python_cmd(facts.get("platform", "linux"))
    activate = r"fomm-env\Scripts\activate" if facts.get("os") == "windows" else "source fomm-env/bin/activate"
    return CheckResult("python.venv", "warn", tr(
        lang, "No virtual environment active: installs go into this Python's own packages.",
        "未启用虚拟环境：安装的包会进入这个 Python 的全局目录。"), details, f"{py} -m venv fomm-env && {activate}")
