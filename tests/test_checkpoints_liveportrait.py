"""LivePortrait's checkpoint is a set of five files: fetched file by file from a real server on 127.0.0.1 standing in
for Hugging Face (HF_ENDPOINT), added from a folder downloaded by hand in each of its three shapes, listed,
verified and resolved to the folder the loader takes.

The files served are small state dicts (a few KB) saved by torch here, each holding the key its place in the set
is told by; a user manifest beside the store gives the `liveportrait` entry their sizes and sha256s (one left
unpublished, as warping_module.pth is in the real entry). Nothing here can reach the internet."""
import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from httpfaults import FaultServer  # noqa: E402
from test_checkpoints_hostile import env  # noqa: E402,F401  (a private home and cache, requests kept local)
from liveportrait_sets import accept_unpublished_set, write_random_set  # noqa: E402
from fomm_doctor.checkpoints import fetch, manifest, sets, store  # noqa: E402
from fomm_doctor.checkpoints.add import add  # noqa: E402
from fomm_doctor.errors import NetworkError, UserError  # noqa: E402

HF = "/KwaiVGI/LivePortrait/resolve/main/liveportrait/"
SHIPPED = {f["path"]: f for f in manifest.find_entry("liveportrait")["files"]}
UNPUBLISHED = "base_models/warping_module.pth"


def tiny_state(holds: str, n: int) -> bytes:
    torch.manual_seed(n)
    buf = io.BytesIO()
    torch.save({holds + ("weight" if holds.endswith(".") else ""): torch.randn(n)}, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def files():
    """{path in the set: bytes}: the five files, of different sizes."""
    return {path: tiny_state(spec["holds"], 200 + 150 * i) for i, (path, spec) in enumerate(SHIPPED.items())}


@pytest.fixture
def home(env, files):
    """The store, with a user manifest giving the test files' sizes and sha256s (warping_module's unpublished)."""
    home = Path(env["FOMM_DOCTOR_HOME"]) / "checkpoints"
    home.mkdir(parents=True)
    entry = dict(manifest.find_entry("liveportrait"))
    entry["files"] = [dict(SHIPPED[p], size=None if p == UNPUBLISHED else len(data),
                           sha256=None if p == UNPUBLISHED else hashlib.sha256(data).hexdigest())
                      for p, data in files.items()]
    entry["sources"] = []  # the shipped source stays (merged after the user's), now pointed at HF_ENDPOINT
    (home / "manifest.json").write_text(json.dumps({"schema": 1, "checkpoints": [entry]}))
    return home


@pytest.fixture
def hf(files, monkeypatch):
    with FaultServer({HF + p: data for p, data in files.items()}) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url("/"))
        yield srv


def hand_folder(root: Path, files: dict, shape: str) -> Path:
    """A folder as a user would have it: 'set' (liveportrait/ itself), 'parent' (the folder holding it), 'flat'."""
    base = root / "pretrained_weights"
    for p, data in files.items():
        where = {"set": base / "liveportrait" / p, "parent": base / "liveportrait" / p, "flat": base / Path(p).name}
        where[shape].parent.mkdir(parents=True, exist_ok=True)
        where[shape].write_bytes(data)
    return base / "liveportrait" if shape == "set" else base


def assert_set(folder: Path, files: dict):
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == sorted(files)
    for p, data in files.items():
        assert (folder / p).read_bytes() == data


# ---------------------------------------------------------------- fetch

def test_fetch_gets_the_five_files_in_the_published_layout_verified(files, home, hf):
    got = fetch.fetch("liveportrait", retries=1, backoff=0.01)
    assert got.path == home / "liveportrait" and got.url.startswith("http://127.0.0.1:")
    assert_set(got.path, files)
    assert {f["path"]: f["verified_by"] for f in got.files} == {
        p: "unverified" if p == UNPUBLISHED else "sha256" for p in files}
    assert got.state == "partly verified" and "no sha256 is published for " + UNPUBLISHED in got.sentence()
    assert all(hf.hits(HF + p) for p in files)  # HF_ENDPOINT took the place of huggingface.co
    record = next(r for r in store.load_registry(home) if r["name"] == "liveportrait")
    assert record["set"] and len(record["files"]) == 5
    assert store.resolve_checkpoint("liveportrait").path == home / "liveportrait"
    again = fetch.fetch("liveportrait")
    assert again.already and again.path == got.path


def test_a_file_with_the_wrong_sha256_is_refused_named_and_the_set_not_registered(files, home, hf):
    bad = "base_models/spade_generator.pth"
    data = bytearray(files[bad])
    data[-10] ^= 0xFF  # same size, one byte changed
    hf.routes[HF + bad] = bytes(data)
    with pytest.raises(NetworkError) as err:
        fetch.fetch("liveportrait", retries=1, backoff=0.01)
    text = str(err.value)
    assert text.startswith(f"could not fetch {bad} of liveportrait (127.0.0.1:") and "sha256" in text
    assert not (home / "liveportrait").exists()
    assert not any(r["name"] == "liveportrait" for r in store.load_registry(home))
    with pytest.raises(UserError, match="is not downloaded yet"):
        store.resolve_checkpoint("liveportrait")


def test_a_web_page_in_place_of_the_unpublished_file_is_refused(files, home, hf):
    hf.routes[HF + UNPUBLISHED] = b"<!DOCTYPE html><html><body>sign in</body></html>"
    with pytest.raises(NetworkError, match=UNPUBLISHED):
        fetch.fetch("liveportrait", retries=1, backoff=0.01)
    assert not (home / "liveportrait").exists()


def test_an_interrupted_fetch_keeps_what_arrived_and_a_rerun_completes(files, home, hf):
    sizes = [len(d) for d in files.values()]

    def interrupt(done, total):
        if total == sizes[3]:  # the fourth file has begun
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch.fetch("liveportrait", retries=1, backoff=0.01, progress=interrupt)
    staged = home / ".incoming" / "liveportrait"
    first = list(files)[:3]
    assert all((staged / p).read_bytes() == files[p] for p in first)
    assert not (home / "liveportrait").exists()
    before = {p: len(hf.hits(HF + p)) for p in files}
    got = fetch.fetch("liveportrait", retries=1, backoff=0.01)
    assert_set(got.path, files)
    assert all(len(hf.hits(HF + p)) == before[p] for p in first)  # what arrived was not asked for again
    assert not staged.exists()


def test_cli_fetch_json_and_its_sentence(files, home, hf, env):
    r = run_cli("checkpoints", "fetch", "liveportrait", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["path"] == str(home / "liveportrait") and out["state"] == "partly verified"
    assert out["verified_by"] == "partly" and [a["outcome"] for a in out["attempts"]] == ["ok"] * 5
    r = run_cli("checkpoints", "fetch", "liveportrait", env=env)
    assert r.returncode == 0 and r.stdout.strip().startswith(f"liveportrait: {home / 'liveportrait'} (already present, 4 of 5")


# ---------------------------------------------------------------- add

@pytest.mark.parametrize("shape", ["set", "parent", "flat"])
def test_add_accepts_a_hand_downloaded_folder_in_each_shape(files, home, tmp_path, shape):
    folder = hand_folder(tmp_path / "dl", files, shape)
    got = add(folder)
    assert got.name == "liveportrait" and got.path == home / "liveportrait"
    assert_set(got.path, files)
    assert got.verified_by == "partly" and UNPUBLISHED in got.notes[0]
    rows = {r["name"]: r for r in store.list_checkpoints()}
    assert rows["liveportrait"]["present"][0]["state"] == "partly verified"


def test_add_names_a_missing_file_and_a_wrong_one_and_adds_nothing(files, home, tmp_path):
    folder = hand_folder(tmp_path / "dl", files, "set")
    (folder / "base_models/motion_extractor.pth").unlink()
    (folder / "base_models/spade_generator.pth").write_bytes(b"<html><head></head><body>quota</body></html>")
    shutil.copyfile(folder / "retargeting_models/stitching_retargeting_module.pth", folder / UNPUBLISHED)
    with pytest.raises(UserError) as err:
        add(folder)
    text = str(err.value)
    assert text.startswith(f"{folder} is not a complete liveportrait set: ")
    assert "base_models/motion_extractor.pth is missing" in text
    assert "spade_generator.pth is wrong (it is a web page saved in its place)" in text
    assert "warping_module.pth is wrong (it holds another network (its tensors start retarget_shoulder)" in text
    assert text.endswith("nothing was added.") and "\n" not in text
    assert not (home / "liveportrait").exists()


def test_cli_add_list_json_verify_and_resolve(files, home, tmp_path, env):
    folder = hand_folder(tmp_path / "dl", files, "flat")
    r = run_cli("checkpoints", "add", folder, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"added liveportrait: {home / 'liveportrait'} (copy; 5 files; ")
    r = run_cli("checkpoints", "list", env=env)
    assert r.returncode == 0 and "liveportrait/" in r.stdout and "partly verified: 4 of 5 files verified" in r.stdout
    row = next(x for x in json.loads(run_cli("checkpoints", "list", "--json", env=env).stdout)["checkpoints"]
               if x["name"] == "liveportrait")
    assert row["file"] == "liveportrait/" and len(row["files"]) == 5
    states = {f["path"]: f["state"] for f in row["present"][0]["files"]}
    assert states == {p: "unverified" if p == UNPUBLISHED else "ok" for p in files}
    assert run_cli("checkpoints", "verify", "liveportrait", env=env).returncode == 0
    (home / "liveportrait" / UNPUBLISHED).write_bytes(files[UNPUBLISHED] + b"x")  # changed since it arrived
    r = run_cli("checkpoints", "verify", "liveportrait", env=env)
    assert r.returncode != 0 and "changed since it arrived" in r.stdout and "Traceback" not in r.stderr
    assert store.resolve_checkpoint(str(home / "liveportrait")).entry["name"] == "liveportrait"


def test_cli_add_of_an_incomplete_folder_is_one_sentence(files, home, tmp_path, env):
    folder = hand_folder(tmp_path / "dl", files, "parent")
    (folder / "liveportrait" / UNPUBLISHED).unlink()
    r = run_cli("checkpoints", "add", folder, env=env)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"{UNPUBLISHED} is missing" in r.stderr and not (home / "liveportrait").exists()


def test_list_shows_the_shipped_entry_not_downloaded(env):
    row = next(x for x in json.loads(run_cli("checkpoints", "list", "--json", env=env).stdout)["checkpoints"]
               if x["name"] == "liveportrait")
    assert row["present"] == [] and row["family"] == "liveportrait" and row["size"] is None
    assert row["urls"] == ["https://huggingface.co/KwaiVGI/LivePortrait/resolve/main/liveportrait/"]


# ---------------------------------------------------------------- the manifest's `files`

def test_the_shipped_entry_parses_with_the_published_numbers():
    specs = {s["path"]: s for s in sets.set_files(manifest.find_entry("liveportrait"))}
    assert specs["base_models/appearance_feature_extractor.pth"]["size"] == 3387959
    assert specs["base_models/motion_extractor.pth"]["sha256"].startswith("251e6a94")
    assert specs[UNPUBLISHED]["sha256"] is None and specs[UNPUBLISHED]["size"] is None


SEGMENT = st.text(st.characters(blacklist_characters="/\\:", blacklist_categories=("Cs", "Cc")), min_size=1,
                  max_size=8).filter(
    lambda s: s not in (".", ".."))


@given(st.lists(SEGMENT, min_size=1, max_size=4))
def test_plain_relative_paths_are_accepted_and_stay_inside_the_set(parts):
    path = "/".join(parts)
    assert sets.member_path(path) == path
    root = Path("/set")
    assert (root / path).resolve().is_relative_to(root.resolve())


@given(st.lists(SEGMENT, min_size=0, max_size=3),
       st.sampled_from(["..", ".", "", "a\\b", "C:x", "\ud800", "a\x1bb", "\x00"]),
       st.lists(SEGMENT, min_size=0, max_size=3), st.booleans())
def test_paths_that_could_leave_the_set_are_refused(before, bad, after, absolute):
    path = ("/" if absolute else "") + "/".join(before + [bad] + after)
    with pytest.raises(UserError, match="not a plain relative path"):
        sets.set_files({"name": "x", "files": [{"path": path}]})


@given(st.one_of(st.none(), st.integers(), st.lists(st.integers()), st.text(max_size=3)))
def test_a_files_list_that_is_not_one_is_refused_in_a_sentence(value):
    with pytest.raises(UserError, match="the manifest entry x "):
        sets.set_files({"name": "x", "files": value if not isinstance(value, list) else value or []})


# ---------------------------------------------------------------- a real (random-weight) set, loaded

def test_a_random_weight_set_added_by_hand_resolves_by_name_and_loads(env, tmp_path):
    """The five files in the published format (state dicts of our networks, which have the original's names;
    the stitching file split into its three entries), added, resolved by name and loaded by fomm_core."""
    files_mod = pytest.importorskip("fomm_core.model.liveportrait.files", reason="fomm_core has no LivePortrait loader")
    from fomm_core.model.checkpoint import load_model
    assert files_mod.CONFIG_NAME == "liveportrait"
    folder = write_random_set(tmp_path / "dl" / "liveportrait")
    home = Path(env["FOMM_DOCTOR_HOME"]) / "checkpoints"
    accept_unpublished_set(home)
    got = add(folder.parent)
    resolved = store.resolve_checkpoint("liveportrait")
    assert resolved.path == got.path == home / "liveportrait" and resolved.entry["name"] == "liveportrait"
    model = load_model(resolved.path)
    assert model.family == "liveportrait"
    from fomm_doctor.animation import Models
    assert Models().resolve("liveportrait").path == resolved.path


def test_the_manifest_and_the_loader_name_the_same_five_files():
    # the manifest says where each file is published, the loader where it looks: they must agree
    from fomm_core.model.liveportrait.loading import PUBLISHED_FILES
    listed = {s["path"] for s in sets.set_files(manifest.find_entry("liveportrait"))}
    assert listed == set(PUBLISHED_FILES.values())
