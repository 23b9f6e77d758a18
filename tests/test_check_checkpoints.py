"""checkpoints.<name> per checkpoint present (per-user store, --dir folder, the project's bundled one), judged
against its published size and sha256 (a file only known to load is "loads, unverified", never ok); one
checkpoints.published row for the published ones not downloaded."""
import hashlib
import json
import shutil

import pytest
import torch

from fomm_doctor.checkpoints import places
from fomm_doctor.checks import checkpoints as ckchk
from fomm_doctor.report import results_to_json

PROJECT = places.project_dir()
SHIPPED = json.loads((PROJECT / "manifest.json").read_text(encoding="utf-8"))["checkpoints"]
PUBLISHED = [e["name"] for e in SHIPPED if e.get("sources")]
BUNDLED = next(e for e in SHIPPED if e["name"] == "synth-64")


@pytest.fixture
def user_store(tmp_path, monkeypatch):
    """An empty per-user store (the sha256 cache lands there too, never in the real home)."""
    folder = tmp_path / "user"
    folder.mkdir()
    monkeypatch.setenv("FOMM_CHECKPOINTS_DIR", str(folder))
    return folder


def rows_of(directory=None, lang="en"):
    return {r.id: r for r in ckchk.judge_checkpoints(ckchk.probe_checkpoints(directory), lang=lang)}


def save_checkpoint(path):
    """A real (tiny) torch checkpoint file, as a fetch would leave it, -> its sha256."""
    torch.save({"generator": {"w": torch.arange(64, dtype=torch.float32)},
                "kp_detector": {"w": torch.ones(8, 3)}}, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def register(folder, name, file, digest, verified_by="sha256"):
    """The registry record fetch/add write beside the file."""
    (folder / "registry.json").write_text(json.dumps({"schema": 1, "checkpoints": [
        {"name": name, "file": file, "config": None, "sha256": digest, "size": (folder / file).stat().st_size,
         "verified_by": verified_by, "source": "test", "placed": "download", "added": "2024-01-01T00:00:00"}]}),
        encoding="utf-8")


def publish(folder, name, path):
    """A user manifest that says `name`'s published file is `path` (its size and sha256), as a mirror's
    manifest would: the tiny test file then stands for the real 700 MB one."""
    (folder / "manifest.json").write_text(json.dumps({"checkpoints": [
        {"name": name, "size": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}]}),
        encoding="utf-8")


def test_fresh_machine_is_two_rows_not_one_per_published_model(user_store):
    rows = rows_of()
    assert list(rows) == ["checkpoints.synth-64", "checkpoints.published"]
    bundled = rows["checkpoints.synth-64"]
    assert bundled.status == "ok" and bundled.details["bundled"] is True and "(bundled)" in bundled.summary
    assert bundled.details["present"][0]["verified"] is True
    published = rows["checkpoints.published"]
    assert published.status == "warn"
    assert published.summary.startswith(f"none of the {len(PUBLISHED)} published checkpoints is downloaded")
    assert "vox" in published.summary and "checkpoints list" in published.summary
    assert published.fix == "fomm-doctor checkpoints fetch vox"
    assert published.details["missing"] == PUBLISHED and published.details["present"] == []
    json.dumps(results_to_json(list(rows.values())))  # --json: details stay serialisable


def test_a_fetched_checkpoint_in_the_user_store_is_one_ok_row(user_store):
    digest = save_checkpoint(user_store / "vox-cpk.pth.tar")
    register(user_store, "vox", "vox-cpk.pth.tar", digest)
    publish(user_store, "vox", user_store / "vox-cpk.pth.tar")
    rows = rows_of()
    assert rows["checkpoints.vox"].status == "ok" and "vox-cpk.pth.tar present" in rows["checkpoints.vox"].summary
    assert rows["checkpoints.vox"].details["bundled"] is False
    published = rows["checkpoints.published"]
    assert published.status == "ok" and published.fix is None
    assert published.summary.startswith(f"1 of {len(PUBLISHED)} published checkpoints downloaded")
    missing = published.summary.split("(", 1)[1].split(")", 1)[0].split(", ")
    assert "vox" not in missing and "vox-adv" in missing and "tpsmm-vox" in missing
    assert not any(i in rows for i in ("checkpoints.vox-adv", "checkpoints.taichi"))  # missing: no rows
    assert rows["checkpoints.synth-64"].status == "ok"
    json.dumps(results_to_json(list(rows.values())))


def test_a_corrupt_copy_fails_with_delete_and_fetch(user_store, tmp_path):
    digest = save_checkpoint(user_store / "vox-cpk.pth.tar")
    register(user_store, "vox", "vox-cpk.pth.tar", digest)
    publish(user_store, "vox", user_store / "vox-cpk.pth.tar")
    other = tmp_path / "other"
    other.mkdir()
    data = bytearray((user_store / "vox-cpk.pth.tar").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    (other / "vox-cpk.pth.tar").write_bytes(bytes(data))
    register(other, "vox", "vox-cpk.pth.tar", digest)
    rows = rows_of(other)  # the --dir folder is searched first
    vox = rows["checkpoints.vox"]
    assert vox.status == "fail"
    assert str(other / "vox-cpk.pth.tar") in vox.summary and "sha256" in vox.summary
    assert vox.fix == "Delete it and run `fomm-doctor checkpoints fetch vox`."
    assert [c["verified"] for c in vox.details["present"]] == [False, True]
    assert rows["checkpoints.published"].status == "ok"  # one is present, even if broken
    zh = rows_of(other, lang="zh")["checkpoints.vox"]
    assert "sha256 不符" in zh.summary and "fomm-doctor checkpoints fetch vox" in zh.fix


def test_a_truncated_copy_of_the_bundled_checkpoint_fails_on_size(user_store):
    src = PROJECT / BUNDLED["file"]
    (user_store / BUNDLED["file"]).write_bytes(src.read_bytes()[: BUNDLED["size"] // 2])
    row = rows_of()["checkpoints.synth-64"]
    assert row.status == "fail" and "should be" in row.summary and str(user_store) in row.summary
    assert "checkpoints add" in row.fix and "fetch" not in row.fix  # it has no source to fetch from


def test_a_damaged_bundled_checkpoint_says_reinstall(user_store, tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PROJECT / "manifest.json", project / "manifest.json")
    data = bytearray((PROJECT / BUNDLED["file"]).read_bytes())
    data[100] ^= 0xFF
    (project / BUNDLED["file"]).write_bytes(bytes(data))
    monkeypatch.setattr(places, "project_dir", lambda: project)
    rows = rows_of()
    assert rows["checkpoints.synth-64"].status == "fail" and "Reinstall" in rows["checkpoints.synth-64"].fix
    (project / BUNDLED["file"]).unlink()  # nothing present at all: the summary row only
    rows = rows_of()
    assert list(rows) == ["checkpoints.published"] and rows["checkpoints.published"].status == "warn"


def test_a_file_with_no_sha256_anywhere_warns_with_add(user_store):
    save_checkpoint(user_store / "taichi-cpk.pth.tar")  # dropped in by hand: no registry record
    rows = rows_of()
    taichi = rows["checkpoints.taichi"]
    assert taichi.status == "warn" and "no sha256" in taichi.summary
    assert taichi.fix.startswith(f"`fomm-doctor checkpoints add {user_store / 'taichi-cpk.pth.tar'} --name taichi`")
    assert rows["checkpoints.published"].status == "ok"


def test_unreadable_manifest_or_registry_is_one_failed_row(user_store, tmp_path):
    (user_store / "registry.json").write_text("{not json", encoding="utf-8")
    rows = list(rows_of().values())
    assert [(r.id, r.status) for r in rows] == [("checkpoints.manifest", "fail")]
    assert "registry.json" in rows[0].summary
    (user_store / "registry.json").unlink()
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text("[1, 2", encoding="utf-8")
    rows = list(rows_of(other).values())
    assert [(r.id, r.status) for r in rows] == [("checkpoints.manifest", "fail")]
    assert "manifest.json" in rows[0].summary


def test_judge_is_pure_and_handles_empty_facts():
    assert [(r.id, r.status) for r in ckchk.judge_checkpoints({"store": "s", "checkpoints": []})] == [
        ("checkpoints.manifest", "skipped")]
    facts = {"dirs": ["u", "p"], "store": "u", "project": "p", "error": None, "checkpoints": [
        {"name": "vox", "file": "vox-cpk.pth.tar", "config": "vox-256", "size": None, "sha256": None,
         "description": "", "sources": 4, "present": [{"path": "u/vox-cpk.pth.tar", "size": 10, "state": "ok", "verified": True,
                                                  "why": "its sha256 is the published one"}]},
        {"name": "bair", "file": "bair-cpk.pth.tar", "config": "bair-256", "size": None, "sha256": None,
         "description": "", "sources": 2, "present": []}]}
    rows = {r.id: r for r in ckchk.judge_checkpoints(facts)}
    assert rows["checkpoints.vox"].status == "ok" and rows["checkpoints.published"].status == "ok"
    assert rows["checkpoints.published"].details["missing"] == ["bair"]
    assert "checkpoints.bair" not in rows
