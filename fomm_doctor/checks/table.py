"""torch.table: is our build table (install/torch_builds.json) as new as the newest torch on the index?

A release newer than the table is still planned (judged from the nearest release it knows, and the plan says
so), but the facts no index states - its builds, their drivers and GPU architectures - are inferred until the
table is updated. This check reads torch's page on pip's index (PyPI unless pip is configured otherwise) once,
beside the mirror checks and within their deadline; like them it is left out with --offline, which reads no
index.
"""
from typing import Optional

from packaging.version import InvalidVersion, Version

from fomm_doctor.install import builds
from fomm_doctor.install.index import IndexUnavailable, read_project
from fomm_doctor.install.pip_config import PYPI_SIMPLE
from fomm_doctor.net.redact import redact
from fomm_doctor.preflight import tr
from fomm_doctor.report import CheckResult

CHECK_ID = "torch.table"


def newest_release(filenames: list) -> Optional[str]:
    """The newest final torch release among index file names ('torch-2.16.0-cp312-...whl' -> '2.16.0'); local
    labels, pre-releases and names that are not torch's are left out."""
    best = None
    for name in filenames:
        parts = str(name).split("-")
        if len(parts) < 3 or parts[0] != "torch":
            continue
        try:
            v = Version(parts[1])
        except InvalidVersion:
            continue
        if v.is_prerelease or v.is_devrelease or v.local:
            continue
        best = v if best is None or v > best else best
    return str(best) if best else None


def probe_newest_torch(index_url: Optional[str], timeout: float) -> dict:
    """{"index", "newest"} from torch's page on `index_url` (PyPI when None), or {"index", "error"}."""
    url = index_url or PYPI_SIMPLE
    try:
        # within the mirror checks' own deadline: a silent index must not make `check` wait longer
        page = read_project(url, "torch", timeout=timeout, retries=1, deadline=timeout)
    except (IndexUnavailable, OSError) as exc:
        return {"index": redact(url), "error": str(exc)}
    return {"index": redact(url), "newest": newest_release([f.filename for f in page.files])}


def judge_table(facts: dict, lang: str = "en") -> CheckResult:
    """facts: probe_newest_torch's answer."""
    table = builds.newest_release()
    details = dict(facts, table_newest=table)
    if facts.get("error") or not facts.get("newest"):
        why = facts.get("error") or "it lists no torch release"
        return CheckResult(CHECK_ID, "skipped", tr(
            lang, f"Our build table knows torch up to {table}; the index {facts['index']} could not be compared "
                  f"({why}).", f"版本表收录 torch 至 {table}；无法与索引 {facts['index']} 比较（{why}）。"), details)
    newest = facts["newest"]
    key = builds.version_key
    if key(builds.minor_of(newest)) <= key(table):
        return CheckResult(CHECK_ID, "ok", tr(
            lang, f"Our build table knows torch up to {table}; the newest on {facts['index']} is {newest}.",
            f"版本表收录 torch 至 {table}；{facts['index']} 上最新为 {newest}。"), details)
    return CheckResult(CHECK_ID, "warn", tr(
        lang, f"torch {newest} is on {facts['index']}, newer than our build table (up to {table}): install plans "
              f"it with its builds, drivers and GPU architectures judged from {table}, and says so; update "
              f"fomm-doctor for its own facts.",
        f"{facts['index']} 上已有 torch {newest}，比版本表（至 {table}）新：install 会按 {table} 推断其构建、驱动与 "
        f"GPU 架构并注明；更新 fomm-doctor 可获得准确信息。"), details,
        tr(lang, f"Update fomm-doctor to a release whose build table knows torch {builds.minor_of(newest)}.",
           f"将 fomm-doctor 更新到版本表收录 torch {builds.minor_of(newest)} 的版本。"))
