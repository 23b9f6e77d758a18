"""Checkpoints check: which checkpoints the manifest lists, which are present, and whether each file matches
its recorded sha256.

ids: checkpoints.<name> (or checkpoints.manifest when there is nothing to list)

`probe_checkpoints` is the one place that knows where checkpoints are; when `fomm_doctor.checkpoint_store`
lands, it becomes a thin call into it.
"""
import hashlib
import json
import os

from fomm_doctor.i18n import tr
from fomm_doctor.render import CheckResult
from fomm_doctor.checks.common import human_bytes


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def probe_checkpoints(directory=None) -> dict:
    """{"dir", "manifest": path|None, "error", "entries": [{"name","file","size","sha256","present","actual_size","sha_ok"}]}"""
    if directory is None:
        from fomm_core.resources import checkpoints_dir
        directory = checkpoints_dir()
    directory = str(directory)
    manifest = os.path.join(directory, "manifest.json")
    facts = {"dir": directory, "manifest": None, "error": None, "entries": []}
    if not os.path.isfile(manifest):
        return facts
    facts["manifest"] = manifest
    try:
        with open(manifest, encoding="utf-8") as f:
            listed = json.load(f).get("checkpoints", [])
    except (OSError, ValueError, AttributeError) as exc:
        facts["error"] = f"{exc.__class__.__name__}: {exc}"
        return facts
    for item in listed:
        path = os.path.join(directory, item.get("file", ""))
        entry = {"name": item.get("name"), "file": item.get("file"), "size": item.get("size"),
                 "sha256": item.get("sha256"), "present": os.path.isfile(path), "actual_size": None, "sha_ok": None}
        if entry["present"]:
            entry["actual_size"] = os.path.getsize(path)
            # A wrong size settles it without hashing 240 MB.
            if entry["size"] is not None and entry["actual_size"] != entry["size"]:
                entry["sha_ok"] = False
            elif entry["sha256"]:
                entry["sha_ok"] = sha256_of(path) == entry["sha256"].lower()
        facts["entries"].append(entry)
    return facts


def judge_checkpoints(facts: dict, lang: str = "en") -> list:
    if facts.get("error"):
        return [CheckResult("checkpoints.manifest", "fail", tr(
            lang, f"The checkpoint manifest is unreadable: {facts['error']}", f"模型清单无法读取：{facts['error']}"),
            {"manifest": facts.get("manifest")}, tr(lang, "Reinstall fomm-doctor.", "请重新安装 fomm-doctor。"))]
    if not facts.get("entries"):
        return [CheckResult("checkpoints.manifest", "skipped", tr(
            lang, f"No checkpoint manifest in {facts.get('dir')}.", f"{facts.get('dir')} 中没有模型清单。"),
            {"dir": facts.get("dir"), "manifest": facts.get("manifest")})]
    results = []
    for e in facts["entries"]:
        rid = f"checkpoints.{e['name']}"
        details = dict(e)
        fetch = f"fomm-doctor checkpoints fetch {e['name']}"
        if not e["present"]:
            results.append(CheckResult(rid, "warn", tr(lang, f"{e['file']} is not downloaded.", f"{e['file']} 尚未下载。"),
                                       details, fetch))
        elif e["sha_ok"] is False:
            results.append(CheckResult(rid, "fail", tr(
                lang, f"{e['file']} ({human_bytes(e['actual_size'])}) does not match its sha256: corrupt or incomplete.",
                f"{e['file']}（{human_bytes(e['actual_size'])}）sha256 不符：文件损坏或不完整。"), details,
                tr(lang, f"Delete it and run `{fetch}`.", f"删除后运行 `{fetch}`。")))
        elif e["sha_ok"] is None:
            results.append(CheckResult(rid, "warn", tr(lang, f"{e['file']} is present; no sha256 recorded to verify it.",
                                                       f"{e['file']} 存在，但没有可核对的 sha256。"), details))
        else:
            results.append(CheckResult(rid, "ok", tr(lang, f"{e['file']} present, sha256 verified.",
                                                     f"{e['file']} 已就绪，sha256 校验通过。"), details))
    return results
