"""The int8 cache trusts nothing it did not check: a verdict is used only for the weights, size, OpenVINO and
graphs it names, a model only when its files have the sha256s its verdict lists, and the cache folder only when
it is a real folder of ours. The run's one real build of tiny() (test_int8.py) is copied around; a rebuild is
only begun here (test_int8.py rebuilds one whole).
"""
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
pytest.importorskip("openvino", reason="OpenVINO is not installed: pip install '.[openvino]' to test the int8 path")

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from fomm_core.inference import int8  # noqa: E402
from fomm_core.inference.int8.fomm import FOMM_INT8, FommRunner  # noqa: E402
from fomm_core.inference.factory import make_animator  # noqa: E402
from test_int8 import load_or_build, model, shared_build, steps, stopped, tiny  # noqa: E402

FILES = FOMM_INT8.files()


@pytest.fixture(scope="module")
def built():
    """The folder of the run's one real int8 build of tiny() (seed 0; test_int8.shared_build); tests copy it."""
    return shared_build()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOMM_DOCTOR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def expected_of(folder: Path) -> dict:
    check = json.loads((folder / "check.json").read_text())
    return int8.expected_verdict(check["fingerprint"], 64, int8.runtime_versions())


def contents(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def flip_a_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # a weight changed: the model still loads and runs, wrong
    path.write_bytes(bytes(data))


def test_a_model_file_changed_after_the_build_is_rebuilt_never_loaded(cache, built, monkeypatch):
    folder = cache / "int8" / built.name
    shutil.copytree(built, folder)
    flip_a_byte(folder / "render.bin")
    seen, on_step = steps()
    monkeypatch.setattr(FommRunner, "__init__", None)  # nothing may be loaded on the way
    with pytest.raises(KeyboardInterrupt):  # at the rebuild's first step: a whole rebuild is tested in test_int8.py
        load_or_build(*tiny(), on_step=stopped(on_step))
    assert seen and seen[0].startswith("int8: ")  # a rebuild began
    assert not folder.exists()                     # the changed files went first: never loaded, never left


class Rebuilding(Exception):
    """Raised in place of a build: the entry was not trusted (the build itself is tested above)."""


def test_a_verdict_copied_from_other_weights_is_not_used(cache, built, monkeypatch):
    generator, kp_detector = tiny(seed=1)
    fingerprint = int8.weights_fingerprint(generator, kp_detector)
    folder = int8.cache_folder(fingerprint, 64, int8.runtime_versions())
    shutil.copytree(built, folder)  # seed 0's model and verdict, where seed 1's belong

    def build(*args, **kwargs):
        raise Rebuilding
    monkeypatch.setattr(int8, "build", build)
    monkeypatch.setattr(FommRunner, "__init__", None)  # nothing may be loaded on the way
    with pytest.raises(Rebuilding):
        load_or_build(generator, kp_detector)
    assert not folder.exists()  # the other model's files went before the build


def test_the_check_accepts_only_the_files_and_facts_its_verdict_names(built, tmp_path):
    folder = tmp_path / built.name
    shutil.copytree(built, folder)
    expected = expected_of(folder)
    assert int8.trusted_verdict(folder, expected, FILES)["accepted"]
    for key, value in (("fingerprint", "0" * 64), ("size", 128), ("graph_version", int8.GRAPH_VERSION + 1),
                       ("versions", {**expected["versions"], "openvino": "1999.0"}), ("min_psnr", 1.0)):
        assert int8.trusted_verdict(folder, {**expected, key: value}, FILES) is None, key
    for name in FILES:
        copy = tmp_path / f"copy-{name}"
        shutil.copytree(built, copy)
        flip_a_byte(copy / name)
        assert int8.trusted_verdict(copy, expected, FILES) is None, name
        (copy / name).unlink()
        assert int8.trusted_verdict(copy, expected, FILES) is None, name
    verdict = json.loads((folder / "check.json").read_text())
    del verdict["files"]
    (folder / "check.json").write_text(json.dumps(verdict))
    assert int8.trusted_verdict(folder, expected, FILES) is None


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
KEYS = st.sampled_from(["fingerprint", "size", "versions", "graph_version", "min_psnr", "accepted", "psnr", "files",
                        "build_seconds", "other"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(whole=st.booleans(), key=KEYS, value=JSON, raw=st.binary(max_size=40))
def test_whatever_the_verdict_file_says_the_check_never_raises_nor_trusts_a_change(built, whole, key, value, raw):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "m"
        shutil.copytree(built, folder)
        expected = expected_of(folder)
        verdict = json.loads((folder / "check.json").read_text())
        changed = dict(verdict, **{key: value})
        (folder / "check.json").write_bytes(json.dumps(value).encode() + raw if whole else json.dumps(changed).encode())
        got = int8.trusted_verdict(folder, expected, FILES)
    if got is not None:  # only ever a verdict for this model, listing the files that are there
        assert all(got[k] == v for k, v in expected.items())
        assert not got["accepted"] or got["files"] == verdict["files"]
    if not whole and key in ("build_seconds", "other"):
        assert got == changed


def test_a_cache_folder_that_is_a_link_is_not_used(cache, built, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(built, elsewhere / built.name)
    before = contents(elsewhere)
    cache.mkdir()
    (cache / "int8").symlink_to(elsewhere, target_is_directory=True)
    seen, on_step = steps()
    with pytest.raises(int8.Int8Refused, match="is a link"):
        load_or_build(*tiny(), on_step=on_step)
    animator = make_animator(model(*tiny()), precision="int8", size=64)  # what a run does: another path, a note
    assert animator.precision in ("fp32", "bf16") and "is a link" in animator.note and "instead" in animator.note
    assert seen == [] and contents(elsewhere) == before


def test_a_cache_entry_that_is_a_link_is_not_used(cache, built, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(built, elsewhere)
    before = contents(elsewhere)
    (cache / "int8").mkdir(parents=True)
    (cache / "int8" / built.name).symlink_to(elsewhere, target_is_directory=True)
    seen, on_step = steps()
    with pytest.raises(int8.Int8Refused, match="is a link"):
        load_or_build(*tiny(), on_step=on_step)
    assert seen == [] and contents(elsewhere) == before and (cache / "int8" / built.name).is_symlink()


def test_a_cache_folder_of_another_user_is_not_used(cache, built, monkeypatch):
    shutil.copytree(built, cache / "int8" / built.name)
    if os.geteuid() == 0:
        os.chown(cache / "int8", 4321, 4321)  # root can hand it to someone else for real
    else:  # the folder is ours; this process then plays someone else
        uid = os.getuid() + 1
        monkeypatch.setattr(os, "getuid", lambda: uid)
    seen, on_step = steps()
    with pytest.raises(int8.Int8Refused, match="belongs to another user"):
        load_or_build(*tiny(), on_step=on_step)
    assert seen == []
