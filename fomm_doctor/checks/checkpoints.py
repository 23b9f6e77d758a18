"""Checkpoints check: the checkpoints present (in the per-user store, a --dir folder or the project's own
checkpoints/), each judged against its published size and sha256 (a file only known to load is "loads,
unverified", never ok), and one line on the published ones not downloaded.

ids: checkpoints.<name> (one per checkpoint present), checkpoints.published (the published ones not present),
     checkpoints.manifest (a manifest or registry that cannot be read, or nothing known at all)

`probe_checkpoints` is a thin call into `fomm_doctor.checkpoints`, the one place that knows where
checkpoints are; `judge_checkpoints` is pure (facts -> rows).
"""
import os

from fomm_doctor.preflight import tr
from fomm_doctor.report import CheckResult
from fomm_doctor.units import byte_size

PREFERRED_FIRST = "vox"  # the usual choice for portraits: what the "fetch one" fix names when it is missing


def probe_checkpoints(directory=None) -> dict:
    """store.checkpoint_facts (a --dir folder, the per-user store, the project's folder), plus the
    project's folder (where the bundled checkpoint lives) and any error reading the manifests or registries:
    {"dirs", "store", "project", "error", "checkpoints": [{name, file, config, size, sha256, description,
    sources, present: [{path, size, state, verified, why}]}]}"""
    from fomm_doctor.checkpoints import places, store
    from fomm_doctor.errors import UserError
    project = str(places.project_dir())
    try:
        facts = store.checkpoint_facts(override_dir=directory, hash_files=True)
    except (UserError, OSError) as exc:
        return {"dirs": [], "store": str(places.store_dir(directory)), "project": project, "checkpoints": [],
                "error": str(exc) if isinstance(exc, UserError) else f"{exc.__class__.__name__}: {exc}"}
    facts["project"] = project
    facts["error"] = None
    return facts


def _norm(path) -> str:
    return os.path.normcase(os.path.normpath(str(path)))


def _in_folder(path, folder) -> bool:
    return bool(folder) and _norm(os.path.dirname(str(path))) == _norm(folder)


def _row_for_present(row: dict, project, lang: str) -> CheckResult:
    """One checkpoint with at least one file present: the worst of its copies decides."""
    name, copies = row["name"], row["present"]
    rid = f"checkpoints.{name}"
    bundled = any(_in_folder(c["path"], project) for c in copies)
    details = dict(row)
    details["bundled"] = bundled
    bad = next((c for c in copies if c["state"] == "wrong"), None)
    if bad is not None:
        return CheckResult(rid, "fail", _wrong_summary(row, bad, lang), details, _wrong_fix(row, bad, project, lang))
    unchecked = next((c for c in copies if c["state"] == "unchecked"), None)
    if unchecked is not None:
        path = unchecked["path"]
        add = f"fomm-doctor checkpoints add {path} --name {name}"
        return CheckResult(rid, "warn", tr(
            lang, f"{path} is present, but no sha256 is recorded to verify it.",
            f"{path} 存在，但没有可核对的 sha256。"), details,
            tr(lang, f"`{add}` checks that it loads and records its sha256.",
               f"运行 `{add}`：检查能否加载并记录其 sha256。"),
            (("fomm-doctor", "checkpoints", "add", str(path), "--name", name),))
    partly = next((c for c in copies if c["state"] == "partly verified"), None)
    if partly is not None:  # a set whose other files have no published sha256: never "ok"
        return CheckResult(rid, "warn", tr(
            lang, f"{partly['path']} is present, partly verified: {partly['why']}.",
            f"{partly['path']} 已就绪，部分经过校验：{partly['why']}。"), details)
    loads = next((c for c in copies if c["state"] == "loads, unverified"), None)
    if loads is not None:
        # it loaded strictly when it arrived, but nothing published says it is the real file: never "ok"
        return CheckResult(rid, "warn", tr(
            lang, f"{loads['path']} loads, unverified: no published sha256 to compare it with.",
            f"{loads['path']} 可以加载，但未经校验：没有公开的 sha256 可供核对。"), details)
    label = tr(lang, " (bundled)", "（自带）") if bundled else ""
    return CheckResult(rid, "ok", tr(lang, f"{row['file']}{label} present, sha256 verified.",
                                     f"{row['file']}{label} 已就绪，sha256 校验通过。"), details)


def _wrong_summary(row: dict, bad: dict, lang: str) -> str:
    """What is wrong with a copy: its size when that contradicts the published one, else its sha256."""
    path, size = bad["path"], bad.get("size")
    if bad.get("files"):  # a set of files: its judgement names the files missing or wrong
        return tr(lang, f"{path} is not a complete, intact set: {bad['why']}.",
                  f"{path} 不是完整无损的模型文件集：{bad['why']}。")
    if row.get("size") and size != row["size"]:
        return tr(lang, f"{path} is {byte_size(size)}, not the {byte_size(row['size'])} it should be: "
                        "incomplete or corrupt.",
                  f"{path} 大小为 {byte_size(size)}，应为 {byte_size(row['size'])}：文件不完整或已损坏。")
    return tr(lang, f"{path} ({byte_size(size)}) does not match its sha256: corrupt, incomplete or another file.",
              f"{path}（{byte_size(size)}）sha256 不符：文件损坏、不完整或并非该模型。")


def _wrong_fix(row: dict, bad: dict, project, lang: str) -> str:
    """Fetch it again when it has sources; reinstall for the bundled one; else add a good copy."""
    name = row["name"]
    if row.get("sources"):
        fetch = f"fomm-doctor checkpoints fetch {name}"
        return tr(lang, f"Delete it and run `{fetch}`.", f"删除后运行 `{fetch}`。")
    if _in_folder(bad["path"], project):
        return tr(lang, "Reinstall fomm-doctor (its bundled checkpoint is damaged).",
                  "请重新安装 fomm-doctor（自带的模型文件已损坏）。")
    add = f"fomm-doctor checkpoints add PATH --name {name}"
    return tr(lang, f"Delete it, then add a good copy with `{add}`.", f"删除后用 `{add}` 添加一份完好的文件。")


def _published_row(published: list, lang: str) -> CheckResult:
    """One row for every published (fetchable) checkpoint: how many are here, which are not."""
    missing = [r["name"] for r in published if not r["present"]]
    have = [r["name"] for r in published if r["present"]]
    total = len(published)
    details = {"published": [r["name"] for r in published], "present": have, "missing": missing}
    names = ", ".join(missing)
    if not have:
        first = PREFERRED_FIRST if PREFERRED_FIRST in missing else missing[0]
        return CheckResult("checkpoints.published", "warn", tr(
            lang, f"none of the {total} published checkpoints is downloaded ({names}); "
                  "see `fomm-doctor checkpoints list`.",
            f"{total} 个公开模型均未下载（{names}）；详见 `fomm-doctor checkpoints list`。"),
            details, f"fomm-doctor checkpoints fetch {first}", (("fomm-doctor", "checkpoints", "fetch", first),))
    if not missing:
        return CheckResult("checkpoints.published", "ok", tr(
            lang, f"all {total} published checkpoints are downloaded.", f"全部 {total} 个公开模型均已下载。"), details)
    return CheckResult("checkpoints.published", "ok", tr(
        lang, f"{len(have)} of {total} published checkpoints downloaded; {len(missing)} more can be fetched "
              f"({names}): `fomm-doctor checkpoints list`.",
        f"已下载 {total} 个公开模型中的 {len(have)} 个；另有 {len(missing)} 个可下载（{names}）：`fomm-doctor checkpoints list`。"),
        details)


def judge_checkpoints(facts: dict, lang: str = "en") -> list:
    """facts (as probe_checkpoints returns) -> one row per checkpoint present, then checkpoints.published."""
    if facts.get("error"):
        return [CheckResult("checkpoints.manifest", "fail", tr(
            lang, f"The checkpoint list cannot be read: {facts['error']}", f"模型清单无法读取：{facts['error']}"),
            {"error": facts["error"], "store": facts.get("store")},
            tr(lang, "Fix or delete the file named, then check again.", "修复或删除上面提到的文件后再检查一次。"))]
    rows = facts.get("checkpoints") or []
    where = facts.get("store")
    if not rows:
        return [CheckResult("checkpoints.manifest", "skipped", tr(
            lang, f"No checkpoint is known (no manifest, nothing added in {where}).",
            f"没有已知的模型（没有清单，{where} 中也没有添加过模型）。"),
            {"dirs": facts.get("dirs"), "store": where})]
    project = facts.get("project")
    results = [_row_for_present(r, project, lang) for r in rows if r.get("present")]
    published = [r for r in rows if r.get("sources")]
    if published:
        results.append(_published_row(published, lang))
    return results
