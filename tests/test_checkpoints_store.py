"""Checkpoint store: places, resolving names, the sha256 cache, `add` recognising every shipped config and
refusing each broken form with its sentence, `list`/`verify` through the CLI.

Checkpoints for each shipped config are made cheaply: every tensor is a zero-stride view of one number
(`expand`), so torch.save writes one element per tensor (a ~90 KB file) while the shapes, which is what
config recognition and strict loading look at, are the real ones."""
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import platformdirs.macos
import platformdirs.unix
import pytest

torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from fomm_core.model.config import build_models, config_shapes, load_config, shipped_configs  # noqa: E402
from fomm_doctor.checkpoints import add, files, manifest, places, store  # noqa: E402
from fomm_doctor.errors import UserError  # noqa: E402
from fomm_doctor.net.digests import file_sha256  # noqa: E402


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A private per-user folder for every test."""
    monkeypatch.delenv("FOMM_CHECKPOINTS_DIR", raising=False)
    monkeypatch.setenv("FOMM_DOCTOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FOMM_DOCTOR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "home" / "checkpoints"


@pytest.fixture(scope="module")
def shapes_only():
    """config name -> {'generator': sd, 'kp_detector': sd} of zero-stride tensors at the config's shapes."""
    out = {}
    for name in shipped_configs("fomm"):
        generator, kp_detector = build_models(load_config(name))
        out[name] = {key: {k: torch.full((), 0.5, dtype=v.dtype).expand(v.shape) for k, v in m.state_dict().items()}
                     for key, m in (("generator", generator), ("kp_detector", kp_detector))}
    return out


def save_original_layout(path: Path, states: dict) -> Path:
    """The published file's layout: the two state dicts plus the training-only entries."""
    torch.save({**states, "discriminator": {"down_blocks.0.conv.weight": torch.zeros(64, 3, 4, 4)},
                "optimizer_generator": {"state": {}, "param_groups": []},
                "optimizer_kp_detector": {"state": {}, "param_groups": []},
                "optimizer_discriminator": {"state": {}, "param_groups": []}, "epoch": 99}, path)
    return path


# ---------------------------------------------------------------- places and names

def test_user_data_dir_follows_env_and_platform(monkeypatch, tmp_path):
    monkeypatch.delenv("FOMM_DOCTOR_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(places, "PlatformDirs", platformdirs.unix.Unix)
    assert places.user_data_dir() == tmp_path / "xdg" / "fomm-doctor" / "checkpoints"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "linux"))
    assert places.user_data_dir() == tmp_path / "linux" / ".local" / "share" / "fomm-doctor" / "checkpoints"
    monkeypatch.setenv("HOME", str(tmp_path / "mac"))
    monkeypatch.setattr(places, "PlatformDirs", platformdirs.macos.MacOS)
    assert places.user_data_dir() == tmp_path / "mac" / "Library" / "Application Support" / "fomm-doctor" / "checkpoints"
    monkeypatch.setenv("FOMM_DOCTOR_HOME", str(tmp_path / "h"))
    assert places.user_data_dir() == tmp_path / "h" / "checkpoints"
    monkeypatch.setenv("FOMM_CHECKPOINTS_DIR", str(tmp_path / "direct"))
    assert places.user_data_dir() == tmp_path / "direct"
    assert places.checkpoint_dirs(tmp_path / "flag")[:2] == [tmp_path / "flag", tmp_path / "direct"]


def test_manifest_lists_the_published_models_with_configs_that_exist():
    entries = {e["name"]: e for e in manifest.load_manifest()}
    for name in ("vox", "vox-adv", "taichi", "taichi-adv", "fashion", "mgif", "bair", "nemo", "vox-512"):
        e = entries[name]
        assert e["config"] in shipped_configs("fomm"), name
        assert e["file"].endswith(".pth.tar") and e["sources"], name
        assert all(s["url"].startswith("https://") and s.get("kind") for s in e["sources"]), name
    assert entries["fashion"]["file"] == "fashion.pth.tar"
    assert entries["vox-adv"]["config"] == "vox-256"


def test_resolve_path_name_and_missing(home, tmp_path):
    f = tmp_path / "mine.pth.tar"
    f.write_bytes(b"x")
    assert Path(store.resolve_checkpoint(str(f))) == f  # a path is itself (and works as os.PathLike)
    with pytest.raises(UserError, match="checkpoints fetch vox.*checkpoints add PATH"):
        store.resolve_checkpoint("vox")
    home.mkdir(parents=True)
    (home / "vox-cpk.pth.tar").write_bytes(b"y")
    got = store.resolve_checkpoint("vox")
    assert got.path == home / "vox-cpk.pth.tar" and got.config == "vox-256" and got.entry["name"] == "vox"
    assert store.resolve_checkpoint("vox-cpk.pth.tar").path == got.path  # the file name works as a name
    other = tmp_path / "flagdir"
    other.mkdir()
    (other / "vox-cpk.pth.tar").write_bytes(b"z")
    assert store.resolve_checkpoint("vox", override_dir=other).path == other / "vox-cpk.pth.tar"
    with pytest.raises(UserError, match="neither a checkpoint file nor a known name"):
        store.resolve_checkpoint("no-such-model")
    with pytest.raises(UserError, match="does not exist"):
        store.resolve_checkpoint(str(tmp_path / "gone.pth.tar"))


def test_no_name_means_the_best_face_model_present_else_the_bundled_one(shapes_only, tmp_path, home):
    bundled = store.resolve_checkpoint(None)
    assert bundled.path == places.project_dir() / "fomm-synth-64.pth.tar" and bundled.config == "synth-64"
    assert "64x64" in bundled.note and "`fomm-doctor checkpoints fetch vox`" in bundled.note
    assert "(728.8 MB)" in bundled.note  # vox's published size
    explicit = store.resolve_checkpoint(store.BUNDLED)  # what the demo asks for
    assert explicit.path == bundled.path and explicit.note is None
    # a model of one's own has vox-256's shapes whatever it shows: only the manifest says what is a face
    mine = add.add(save_original_layout(tmp_path / "my-face.pth.tar", shapes_only["vox-256"]))
    assert mine.config == "vox-256" and store.resolve_checkpoint(None).path == bundled.path
    (home / "vox-cpk.pth.tar").write_bytes(mine.path.read_bytes())  # not the published 728,766,691 bytes
    assert store.resolve_checkpoint(None).path == bundled.path  # a cut-short vox is passed over
    data = mine.path.read_bytes()  # a user manifest that publishes this file as vox, as a mirror's would
    (home / "manifest.json").write_text(json.dumps({"checkpoints": [
        {"name": "vox", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]}), encoding="utf-8")
    got = store.resolve_checkpoint(None)
    assert got.path == home / "vox-cpk.pth.tar" and got.entry["name"] == "vox" and got.note is None
    assert got.config == "vox-256" and store.list_checkpoints()[0]["present"][0]["state"] == "ok"
    (home / "nemo-cpk.pth.tar").write_bytes(data)  # another face model present: vox still comes first
    assert store.resolve_checkpoint(None).path == home / "vox-cpk.pth.tar"
    (home / "vox-cpk.pth.tar").unlink()
    got = store.resolve_checkpoint(None)
    assert got.path == home / "nemo-cpk.pth.tar" and got.config == "nemo-256" and got.note is None


def test_sha256_cache_is_keyed_by_size_and_mtime(tmp_path, monkeypatch):
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 1000)
    first = files.sha256_cached(f)
    calls = []
    monkeypatch.setattr(files, "file_sha256", lambda p: calls.append(p) or file_sha256(p))
    assert files.sha256_cached(f) == first and calls == []  # served from the cache
    f.write_bytes(b"b" * 1001)
    assert files.sha256_cached(f) != first and len(calls) == 1  # a changed file is hashed again
    assert files.verify(f, file_sha256(f).upper()) is True
    assert files.verify(f, "0" * 64) is False
    assert files.verify(f, None) is None


# ---------------------------------------------------------------- add

def test_add_recognises_each_shipped_config(shapes_only, tmp_path, home):
    for name, states in shapes_only.items():
        src = save_original_layout(tmp_path / f"{name}-mine.pth.tar", states)
        added = add.add(src)
        # shapes decide: the config found builds exactly these shapes and loads strictly (checked inside add)
        assert config_shapes(added.config) == config_shapes(name), name
        assert added.path == home / src.name and added.path.read_bytes() == src.read_bytes()
        assert added.sha256 == file_sha256(src)
        assert Path(store.resolve_checkpoint(added.name)) == added.path
    # the configs whose shapes are unique are named exactly
    assert add.add(tmp_path / "mgif-256-mine.pth.tar").config == "mgif-256"
    assert add.add(tmp_path / "vox-512-mine.pth.tar").config == "vox-512"


def test_add_uses_the_published_file_name_to_name_the_config(shapes_only, tmp_path, home):
    src = save_original_layout(tmp_path / "taichi-cpk.pth.tar", shapes_only["taichi-256"])
    added = add.add(src)
    assert (added.name, added.config, added.verified_by) == ("taichi", "taichi-256", "load")
    assert store.resolve_checkpoint("taichi").path == home / "taichi-cpk.pth.tar"
    row = next(r for r in store.list_checkpoints() if r["name"] == "taichi")
    # nothing publishes taichi's sha256: it loads, and that is all that is known (never "ok")
    assert row["present"][0]["state"] == "loads, unverified" and row["present"][0]["verified"] is None


def test_add_link_and_registry_keeps_other_entries(shapes_only, tmp_path, home):
    src = save_original_layout(tmp_path / "a.pth.tar", shapes_only["vox-256"])
    added = add.add(src, name="mine", link=True)
    assert added.placed in ("symlink", "hardlink") and os.path.samefile(added.path, src)
    add.add(save_original_layout(tmp_path / "b.pth.tar", shapes_only["mgif-256"]), name="cartoon")
    names = {r["name"] for r in json.loads((home / "registry.json").read_text())["checkpoints"]}
    assert names == {"mine", "cartoon"}
    rows = {r["name"]: r for r in store.list_checkpoints()}
    assert rows["mine"]["config"] == "vox-256" and rows["cartoon"]["present"][0]["state"] == "loads, unverified"
    assert rows["vox"]["present"] == []  # "a.pth.tar" added as "mine" is not the published vox


def test_add_refuses_a_checkpoint_that_does_not_load_strictly(shapes_only, tmp_path):
    states = {k: dict(v) for k, v in shapes_only["vox-256"].items()}
    del states["generator"]["final.bias"]
    with pytest.raises(UserError, match=r"fit none of the shipped configs \(closest: vox-256, where generator.final.bias is missing\)"):
        add.add(save_original_layout(tmp_path / "broken.pth.tar", states))


@pytest.fixture
def good_file(shapes_only, tmp_path):
    return save_original_layout(tmp_path / "vox-cpk.pth.tar", shapes_only["vox-256"])


def test_add_refuses_an_unpacked_folder(good_file, tmp_path, home):
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(good_file) as z:  # what 7-Zip/WinRAR make of a .pth.tar
        z.extractall(folder)
    with pytest.raises(UserError, match="unpacked checkpoint.*must not be unzipped"):
        add.add(folder)
    assert not home.exists() or not list(home.iterdir())


@pytest.mark.parametrize("legacy", [False, True], ids=["zip-format", "legacy-format"])
def test_add_refuses_a_truncated_file(shapes_only, tmp_path, legacy):
    # the published files are legacy (torch < 1.6) pickles; files saved today are zips: both cut in half
    full = io.BytesIO()
    torch.save(shapes_only["vox-256"], full, _use_new_zipfile_serialization=not legacy)
    cut = tmp_path / "vox-cpk.pth.tar"
    cut.write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    with pytest.raises(UserError, match="is incomplete .* the download was cut short"):
        add.add(cut)


def test_add_refuses_an_html_page(tmp_path):
    page = tmp_path / "vox-cpk.pth.tar"
    page.write_text("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>"
                    "<body>Google Drive can't scan this file for viruses.</body></html>")
    with pytest.raises(UserError, match="web page, not a checkpoint"):
        add.add(page)


def test_add_refuses_a_zip_of_the_checkpoint(good_file, tmp_path):
    zipped = tmp_path / "vox-cpk.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.write(good_file, "vox-cpk.pth.tar")
    with pytest.raises(UserError, match="zip archive.*extract that file"):
        add.add(zipped)


def test_cli_add_list_verify(shapes_only, tmp_path):
    env = {"FOMM_DOCTOR_HOME": str(tmp_path / "clihome")}
    src = save_original_layout(tmp_path / "taichi-cpk.pth.tar", shapes_only["taichi-256"])
    r = run_cli("checkpoints", "add", src, env=env)
    assert r.returncode == 0, r.stderr
    assert "added taichi" in r.stdout and "config taichi-256" in r.stdout and "loads, unverified" in r.stdout
    listed = json.loads(run_cli("checkpoints", "list", "--json", env=env).stdout)
    taichi = next(row for row in listed["checkpoints"] if row["name"] == "taichi")
    stored = tmp_path / "clihome" / "checkpoints" / "taichi-cpk.pth.tar"
    assert taichi["present"][0]["path"] == str(stored)
    assert taichi["present"][0]["state"] == "loads, unverified" and taichi["present"][0]["verified"] is None
    r = run_cli("checkpoints", "verify", env=env)
    assert r.returncode == 0 and "taichi-cpk.pth.tar: loads, unverified" in r.stdout
    assert "taichi-cpk.pth.tar: ok" not in r.stdout and "fomm-synth-64.pth.tar: ok" in r.stdout
    data = bytearray(stored.read_bytes())
    data[-30] ^= 0xFF  # same size, different bytes
    stored.write_bytes(bytes(data))
    r = run_cli("checkpoints", "verify", env=env)
    assert r.returncode != 0 and "taichi" in r.stdout and "WRONG" in r.stdout and "changed since it was added" in r.stdout
    r = run_cli("checkpoints", "add", tmp_path / "nothing.pth.tar", env=env)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr


def test_checkpoint_facts_is_plain_data(good_file, home):
    add.add(good_file, name="my-vox")
    facts = store.checkpoint_facts()
    json.dumps(facts)  # plain data, for `check`
    assert facts["store"] == str(home)
    mine = next(r for r in facts["checkpoints"] if r["name"] == "my-vox")
    assert mine["present"] and mine["present"][0]["size"] == good_file.stat().st_size
    # a published file name never holds another file: it is stored under the name it was given
    assert mine["file"] == "my-vox.pth.tar" and not (home / "vox-cpk.pth.tar").exists()


def test_add_a_checkpoint_that_carries_its_config(shapes_only, tmp_path):
    # ours carry the config they were built from: the loader uses it, so no shipped config is named
    path = tmp_path / "ours.pth.tar"
    torch.save({**shapes_only["vox-256"], "config": load_config("vox-256")}, path)
    added = add.add(path, name="ours")
    assert added.config is None
    resolved = store.resolve_checkpoint("ours")
    assert resolved.config is None and resolved.path == added.path


def test_cli_slim_writes_an_inference_only_copy(good_file, tmp_path):
    out = tmp_path / "out" / "vox-slim.pth.tar"
    r = run_cli("checkpoints", "slim", good_file, "-o", out, env={"FOMM_DOCTOR_HOME": str(tmp_path / "h")})
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout and "config vox-256" in r.stdout
    slimmed = torch.load(out, map_location="cpu", weights_only=True)
    assert set(slimmed) == {"generator", "kp_detector"}  # discriminator, optimizers and epoch dropped
    generator, kp_detector = build_models(load_config("vox-256"))
    generator.load_state_dict(slimmed["generator"], strict=True)
    kp_detector.load_state_dict(slimmed["kp_detector"], strict=True)
