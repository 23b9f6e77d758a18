"""pip checks: its version, and which index it is configured to use (credentials masked).

ids: pip.version, pip.index
"""
from fomm_doctor.preflight import tr
from fomm_doctor.net.redact import redact
from fomm_doctor.install.pip_config import pip_config_files, read_pip_index_config
from fomm_doctor.report import CheckResult
from fomm_doctor.checks.common import pip_cmd, python_cmd
from fomm_doctor.install.builds import version_key

RESUME_PIP = (25, 1)  # first pip that resumes an interrupted download (--resume-retries)


def probe_pip_version() -> dict:
    """pip's version in this interpreter, read from its metadata (no subprocess: fast)."""
    from importlib import metadata
    try:
        return {"version": metadata.version("pip")}
    except metadata.PackageNotFoundError:
        return {"version": None}


def probe_pip_index(platform_facts: dict) -> dict:
    files = pip_config_files(platform_facts)
    config = read_pip_index_config(platform_facts.get("env") or {}, files)
    config["files_considered"] = [f["path"] for f in files]
    return config


def judge_version(pip_facts: dict, platform_facts: dict, index: dict, lang: str = "en") -> CheckResult:
    version = pip_facts.get("version")
    platform = platform_facts.get("platform", "linux")
    minimum = index.get("min_pip", "23.0")
    upgrade = pip_cmd(platform, "install --upgrade pip")
    if not version:
        return CheckResult("pip.version", "fail", tr(lang, "pip is not installed in this Python.",
                                                     "这个 Python 没有安装 pip。"), {"version": None},
                           f"{python_cmd(platform)} -m ensurepip --upgrade", (("python", "-m", "ensurepip", "--upgrade"),))
    details = {"version": version, "min_pip": minimum, "resumes_downloads": version_key(version) >= RESUME_PIP}
    if version_key(version) < version_key(minimum):
        return CheckResult("pip.version", "warn", tr(
            lang, f"pip {version} is older than {minimum} (`pip install update` would not upgrade it).",
            f"pip {version} 低于 {minimum}（常见的 `pip install update` 并不会升级 pip）。"), details, upgrade,
            (("pip", "install", "--upgrade", "pip"),))
    return CheckResult("pip.version", "ok", f"pip {version}.", details)


def judge_index(config: dict, platform_facts: dict, lang: str = "en") -> CheckResult:
    index_url = redact(config["index_url"])
    extras = [redact(u) for u in config.get("extra_index_urls", [])]
    links = [redact(u) for u in config.get("find_links", [])]
    details = {"index_url": index_url, "extra_index_urls": extras, "find_links": links,
               "sources": {k: redact(v) for k, v in config.get("sources", {}).items()},
               "files_read": config.get("files_read", []), "errors": config.get("errors", [])}
    source = config.get("sources", {}).get("index_url", "default")
    if source == "default":
        summary = tr(lang, f"Index {index_url} (pip's default)", f"索引 {index_url}（pip 默认）")
    else:
        summary = tr(lang, f"Index {index_url} (from {source})", f"索引 {index_url}（来自 {source}）")
    if extras:
        summary += tr(lang, f"; extra: {', '.join(extras)}", f"；额外索引：{', '.join(extras)}")
    if links:
        summary += tr(lang, f"; find-links: {', '.join(links)}", f"；find-links：{', '.join(links)}")
    if config.get("errors"):
        return CheckResult("pip.index", "warn", summary + tr(lang, "; a config file could not be read.",
                                                             "；有配置文件无法读取。"), details,
                           tr(lang, f"Fix or remove: {config['errors'][0].split(': ')[0]}",
                              f"修正或删除：{config['errors'][0].split(': ')[0]}"))
    return CheckResult("pip.index", "ok", summary, details)
