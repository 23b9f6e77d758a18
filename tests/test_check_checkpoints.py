"""checkpoints.<name>: present files verified against the manifest's sha256."""
import hashlib
import json

from fomm_doctor.checks import checkpoints as ckchk


def test_present_corrupt_missing_and_unverifiable(tmp_path):
    good, bad = b"weights" * 1000, b"corrupt!" * 1000
    (tmp_path / "good.pth.tar").write_bytes(good)
    (tmp_path / "bad.pth.tar").write_bytes(bad)
    (tmp_path / "short.pth.tar").write_bytes(good[:10])
    (tmp_path / "nohash.pth.tar").write_bytes(good)
    sha = hashlib.sha256(good).hexdigest()
    manifest = {"schema": 1, "checkpoints": [
        {"name": "good", "file": "good.pth.tar", "size": len(good), "sha256": sha, "config": "c.yaml"},
        {"name": "bad", "file": "bad.pth.tar", "size": len(bad), "sha256": sha, "config": "c.yaml"},
        {"name": "short", "file": "short.pth.tar", "size": len(good), "sha256": sha, "config": "c.yaml"},
        {"name": "absent", "file": "absent.pth.tar", "size": 5, "sha256": sha, "config": "c.yaml"},
        {"name": "nohash", "file": "nohash.pth.tar", "size": None, "sha256": None, "config": "c.yaml"},
    ]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    rows = {r.id: r for r in ckchk.judge_checkpoints(ckchk.probe_checkpoints(tmp_path))}
    assert rows["checkpoints.good"].status == "ok"
    assert rows["checkpoints.bad"].status == "fail" and "checkpoints fetch bad" in rows["checkpoints.bad"].fix
    assert rows["checkpoints.short"].status == "fail"
    assert rows["checkpoints.absent"].status == "warn"
    assert rows["checkpoints.nohash"].status == "warn"


def test_no_manifest_and_broken_manifest(tmp_path):
    rows = ckchk.judge_checkpoints(ckchk.probe_checkpoints(tmp_path))
    assert [(r.id, r.status) for r in rows] == [("checkpoints.manifest", "skipped")]
    (tmp_path / "manifest.json").write_text("{not json")
    rows = ckchk.judge_checkpoints(ckchk.probe_checkpoints(tmp_path))
    assert rows[0].status == "fail"
