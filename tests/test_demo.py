"""`fomm-doctor demo`: the shipped checkpoint matches its manifest and passes the L1 bar; a random one fails."""
import hashlib
import json

import pytest
from conftest import run_cli

torch = pytest.importorskip("torch")

from fomm_core.resources import checkpoints_dir  # noqa: E402

SHIPPED = "fomm-synth-64.pth.tar"


def _entry():
    manifest = json.loads((checkpoints_dir() / "manifest.json").read_text())
    return next(e for e in manifest["checkpoints"] if e["file"] == SHIPPED)


def test_shipped_checkpoint_matches_manifest_and_loads_strictly():
    path = checkpoints_dir() / SHIPPED
    entry = _entry()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    assert path.stat().st_size == entry["size"] < 8 * 2 ** 20
    from fomm_core.model.checkpoint import load_checkpoints
    generator, kp_detector = load_checkpoints(None, path)       # strict, with the config the file carries
    state = torch.load(path, weights_only=True)
    assert state["config"]["model_params"] == __import__("fomm_core.model.config", fromlist=["x"]).load_config(
        entry["config"])["model_params"]


def _checks(stdout):
    report = json.loads(stdout)
    return report, {c["id"]: c for c in report["checks"]}


def test_demo_passes_with_the_shipped_checkpoint(tmp_path):
    out = tmp_path / "demo.mp4"
    proc = run_cli("demo", "--json", "--output", out, env={"OMP_NUM_THREADS": "1"})
    report, checks = _checks(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["ok"] is True
    animate = checks["demo.animate"]["details"]
    assert animate["passed"] and animate["model_l1"] <= 0.5 * animate["repeat_source_l1"]
    assert checks["demo.checkpoint"]["status"] == "ok"            # sha256 verified against the manifest
    back = checks["demo.readback"]["details"]
    assert back["frames"] == 32 and back["audio"] is True and out.is_file()


def test_demo_fails_with_a_randomly_initialised_checkpoint(tmp_path):
    from fomm_core.model.config import build_models, load_config
    torch.set_num_threads(1)
    torch.manual_seed(3)
    config = load_config("synth-64")
    generator, kp_detector = build_models(config)
    path = tmp_path / "random.pth.tar"
    torch.save({"generator": generator.state_dict(), "kp_detector": kp_detector.state_dict(),
                "config": {k: config[k] for k in ("dataset_params", "model_params")}}, path)
    proc = run_cli("demo", "--json", "--checkpoint", path, "--output", tmp_path / "r.mp4",
                   env={"OMP_NUM_THREADS": "1"})
    report, checks = _checks(proc.stdout)
    assert proc.returncode == 1
    assert report["ok"] is False
    animate = checks["demo.animate"]
    assert animate["status"] == "fail"
    assert animate["details"]["model_l1"] > 0.5 * animate["details"]["repeat_source_l1"]


def test_demo_bad_device_is_one_sentence():
    proc = run_cli("demo", "--device", "gpu0")
    assert proc.returncode == 2
    assert "unknown device 'gpu0'" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_device_default_is_auto():
    import inspect

    from fomm_doctor.commands.demo import demo
    from fomm_doctor.demo import run_demo
    assert inspect.signature(demo).parameters["device"].default.default == "auto"
    assert inspect.signature(run_demo).parameters["device"].default == "auto"


def test_demo_uses_the_bundled_model_whatever_else_is_present(tmp_path, monkeypatch):
    """A face model present is the default of animate and live, never of the demo (its L1 bar is set for ours)."""
    from fomm_doctor.checkpoints import resolve_checkpoint
    from fomm_doctor.checkpoints.manifest import find_entry
    home = tmp_path / "checkpoints"
    home.mkdir()
    vox = find_entry("vox")
    face = home / vox["file"]
    with open(face, "wb") as f:   # sparse: the published size, so the store takes it for a face model present
        f.truncate(vox["size"])
    monkeypatch.setenv("FOMM_CHECKPOINTS_DIR", str(home))
    assert resolve_checkpoint(None).path == face       # the default of animate and live...
    proc = run_cli("demo", "--json", "--output", tmp_path / "demo.mp4",
                   env={"OMP_NUM_THREADS": "1", "FOMM_CHECKPOINTS_DIR": str(home)})
    report, checks = _checks(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert checks["demo.checkpoint"]["details"]["path"] == str(checkpoints_dir() / SHIPPED)   # ...not the demo's


def test_demo_of_a_liveportrait_set_says_what_to_run_instead(tmp_path):
    from liveportrait_sets import write_random_set
    folder = write_random_set(tmp_path / "liveportrait")
    proc = run_cli("demo", "--json", "--checkpoint", folder, "--output", tmp_path / "d.mp4")
    report, checks = _checks(proc.stdout)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    row = checks["demo.checkpoint"]
    assert row["status"] == "fail" and "made for FOMM models" in row["summary"], row
    assert "fomm-doctor animate PHOTO VIDEO --checkpoint" in row["fix"] and not (tmp_path / "d.mp4").exists()
