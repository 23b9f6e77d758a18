"""Planning for another machine end to end: `install --download-only DIR --platform ...` against a 127.0.0.1
index, then `install --from DIR` into a fresh virtual environment with no index reachable. `--from` installs
only the wheels the manifest names, each by its sha256, and pip's settings never send it to the network."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import run_cli
from fomm_doctor.errors import UserError
from fomm_doctor.install.backend import Backend
from httpfaults import FaultServer, Reply, build_wheel, fake_torch_wheel, simple_routes

ENV = {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "", "PIP_NO_INPUT": "1",
       "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    return str(root / "bin" / "python")


def test_bundle_for_another_machine_installs_offline(venv, tmp_path):
    wheels = tmp_path / "w"
    wheels.mkdir()
    dep = build_wheel(wheels, "tinydep", "1.0", {"tinydep.py": b"VALUE = 42\n"})
    torch = fake_torch_wheel(wheels, "9.1.0+cpu", payload_bytes=300_000, requires=["tinydep>=1.0"])
    bundle = tmp_path / "bundle"
    with FaultServer(simple_routes([torch, dep])) as srv:
        proc = run_cli("install", "--download-only", bundle, "--platform", "win_amd64", "--python-version", "3.11",
                       "--driver", "none", "--mirror", srv.url("/simple/"), "--only", "torch", "--json",
                       "--cache-dir", tmp_path / "cache", "--official-pypi", "none", "--official-pytorch", "none",
                       env=ENV, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["plan"]["platform_key"] == "windows-x86_64" and out["plan"]["torch"]["version"] == "9.1.0+cpu"
    assert sorted(out["bundle"]["files"]) == sorted([torch.name, dep.name])
    manifest = json.loads((bundle / "fomm-bundle.json").read_text())
    assert manifest["sha256"] == __import__("hashlib").sha256(torch.read_bytes()).hexdigest()
    assert manifest["verified"] == out["bundle"]["verified"] == "sha256"

    # the server is gone and pip's index points nowhere: the bundle alone must do
    offline = dict(ENV, PIP_INDEX_URL="http://127.0.0.1:9/simple/")
    proc = run_cli("install", "--from", bundle, "--python", venv, "--json", env=offline, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcome = json.loads(proc.stdout)["outcome"]
    assert outcome["verify"]["version"] == "9.1.0+cpu" and outcome["torch"]["verified"] == "local"
    check = subprocess.run([venv, "-c", "import torch, tinydep; print(torch.__version__, tinydep.VALUE)"],
                           capture_output=True, text=True)
    assert check.stdout.split() == ["9.1.0+cpu", "42"]

    # a wheel changed after the bundle was made is refused, with one sentence
    (bundle / torch.name).write_bytes(torch.read_bytes()[:-10] + b"0123456789")
    proc = run_cli("install", "--from", bundle, "--python", venv, env=offline, timeout=120)
    assert proc.returncode != 0 and "sha256 differs" in proc.stderr and "Traceback" not in proc.stderr


def test_platform_without_dry_run_or_download_only_is_refused():
    proc = run_cli("install", "--platform", "win_amd64", "--python-version", "3.11", env=ENV, timeout=60)
    assert proc.returncode != 0 and "add --dry-run or --download-only DIR" in proc.stderr


# ---- an offline bundle installs only what its manifest names, and nothing reaches the network ---------------

MAX_MANIFEST = 1024 * 1024  # bundle_manifest.MAX_MANIFEST, the cap these tests check

OTHER = ["--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--driver", "none", "--only", "torch",
         "--official-pypi", "none", "--official-pytorch", "none"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A bundle made by the real `install --download-only` from a 127.0.0.1 index: torch needing tinydep."""
    root = tmp_path_factory.mktemp("made")
    wheels = root / "w"
    wheels.mkdir()
    dep = build_wheel(wheels, "tinydep", "1.0", {"tinydep.py": b"VALUE = 42\n"})
    torch = fake_torch_wheel(wheels, "9.1.0+cpu", requires=["tinydep>=1.0"])
    with FaultServer(simple_routes([torch, dep])) as srv:
        proc = run_cli("install", "--download-only", root / "bundle", "--mirror", srv.url("/simple/"), *OTHER,
                       "--cache-dir", root / "cache", env=ENV, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "bundle"


@pytest.fixture(scope="module")
def template_venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("tv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    return root


@pytest.fixture
def fresh(template_venv, tmp_path):
    """A virtual environment of this test's own (a copy of one made once): its python."""
    root = tmp_path / "venv"
    shutil.copytree(template_venv, root, symlinks=True)
    return str(root / "bin" / "python")


@pytest.fixture
def bundle(made, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(made, copy)
    return copy


def _site(python: str) -> list:
    """Every file under the environment's site-packages: what `install` changed there."""
    site = next(Path(python).parent.parent.glob("lib/python*/site-packages"))
    return sorted(str(p.relative_to(site)) for p in site.rglob("*") if "__pycache__" not in p.parts)


def _imports(python: str, code: str) -> str:
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


def _sentence(proc) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith("."), proc.stderr
    return lines[0]


def _vouch(bundle: Path, wheel: Path) -> None:
    """Put `wheel` in the bundle with its manifest saying so (a bundle made from a hostile index)."""
    shutil.copyfile(wheel, bundle / wheel.name)
    manifest = json.loads((bundle / "fomm-bundle.json").read_text())
    manifest.setdefault("files", {})[wheel.name] = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (bundle / "fomm-bundle.json").write_text(json.dumps(manifest))


def test_a_changed_dependency_wheel_is_refused_and_nothing_is_installed(bundle, fresh, tmp_path):
    evil = build_wheel(tmp_path, "tinydep", "1.0", {"tinydep.py": b"VALUE = 666\n"})
    shutil.copyfile(evil, bundle / evil.name)  # same name as the bundle's own wheel, other content
    before = _site(fresh)
    proc = run_cli("install", "--from", bundle, "--python", fresh, env=ENV, timeout=120)
    assert "tinydep-1.0-py3-none-any.whl" in _sentence(proc) and "sha256 differs" in proc.stderr
    assert _site(fresh) == before


def test_a_wheel_the_manifest_does_not_name_is_never_installed(bundle, fresh, tmp_path):
    newer = build_wheel(tmp_path, "tinydep", "2.0", {"tinydep.py": b"VALUE = 666\n"})
    shutil.copyfile(newer, bundle / newer.name)  # pip would prefer it, were it looking in the folder
    proc = run_cli("install", "--from", bundle, "--python", fresh, env=ENV, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _imports(fresh, "import tinydep, torch; print(tinydep.VALUE, torch.__version__)") == "42 9.1.0+cpu"


def test_a_requirement_of_a_wheel_that_names_a_url_is_refused(bundle, fresh, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    evil = build_wheel(elsewhere, "evil", "1.0", {"evil.py": b"RAN = True\n"})
    dep = build_wheel(tmp_path, "tinydep", "1.0", {"tinydep.py": b"VALUE = 42\n"},
                      requires=[f"evil @ {evil.as_uri()}"])
    _vouch(bundle, dep)
    before = _site(fresh)
    proc = run_cli("install", "--from", bundle, "--python", fresh, env=ENV, timeout=120)
    assert "evil @ file://" in _sentence(proc) and "outside the bundle" in proc.stderr
    assert _site(fresh) == before


def test_a_requirement_in_the_manifest_that_names_a_url_is_refused_without_a_request(bundle, fresh, tmp_path):
    evil = build_wheel(tmp_path, "evil", "1.0", {"evil.py": b"RAN = True\n"})
    with FaultServer({"/evil-1.0-py3-none-any.whl": evil.read_bytes()}) as srv:
        manifest = json.loads((bundle / "fomm-bundle.json").read_text())
        manifest["packages"] = [f"evil @ {srv.url('/evil-1.0-py3-none-any.whl')}"]
        (bundle / "fomm-bundle.json").write_text(json.dumps(manifest))
        before = _site(fresh)
        proc = run_cli("install", "--from", bundle, "--python", fresh, env=ENV, timeout=120)
        asked = srv.hits()
    assert asked == [] and "outside the bundle" in _sentence(proc)
    assert _site(fresh) == before


@pytest.mark.parametrize("where", ["environment", "PIP_CONFIG_FILE", "user config"])
def test_pip_settings_in_the_environment_and_config_never_reach_the_network(bundle, fresh, tmp_path, where):
    lure = build_wheel(tmp_path, "tinydep", "2.0", {"tinydep.py": b"VALUE = 666\n"})
    with FaultServer({}) as srv:
        page = f'<html><body><a href="{srv.url("/f/" + lure.name)}">{lure.name}</a></body></html>'.encode()
        srv.routes["/links/"] = lambda req: Reply(200, page, {"Content-Type": "text/html"})
        srv.routes["/f/" + lure.name] = lure.read_bytes()
        settings_text = (f"[global]\nfind-links = {srv.url('/links/')}\nextra-index-url = {srv.url('/extra/')}\n"
                         f"[install]\nindex-url = {srv.url('/simple/')}\n")
        home = tmp_path / "home"
        (home / ".config" / "pip").mkdir(parents=True)
        env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "PIP_NO_INPUT": "1",
               "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "", "PIP_INDEX_URL": ""}
        if where == "environment":
            env.update(PIP_FIND_LINKS=srv.url("/links/"), PIP_INDEX_URL=srv.url("/simple/"),
                       PIP_EXTRA_INDEX_URL=srv.url("/extra/"), PIP_CONFIG_FILE=os.devnull)
        elif where == "PIP_CONFIG_FILE":
            (tmp_path / "pip.conf").write_text(settings_text)
            env.update(PIP_CONFIG_FILE=str(tmp_path / "pip.conf"))
        else:
            (home / ".config" / "pip" / "pip.conf").write_text(settings_text)
        proc = run_cli("install", "--from", bundle, "--python", fresh, env=env, timeout=240)
        asked = [h.path for h in srv.hits()]
    assert asked == []
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _imports(fresh, "import tinydep, torch; print(tinydep.VALUE, torch.__version__)") == "42 9.1.0+cpu"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX links, devices and pipes")
def test_a_manifest_that_is_no_plain_file_or_too_large_is_one_sentence(bundle, fresh):
    manifest = bundle / "fomm-bundle.json"
    text = manifest.read_text()
    cases = [("link", lambda: manifest.symlink_to("/dev/zero"), "is a link"),
             ("pipe", lambda: os.mkfifo(manifest), "cannot be read"),
             ("large", lambda: manifest.write_text(text[:-1] + " " * MAX_MANIFEST + "}"), "is larger than 1024 KiB")]
    before = _site(fresh)
    for what, make, words in cases:
        manifest.unlink()
        make()
        proc = run_cli("install", "--from", bundle, "--python", fresh, env=ENV, timeout=60)
        assert words in _sentence(proc), what
    assert _site(fresh) == before


def test_a_manifest_from_the_old_schema_is_refused(bundle, fresh):
    manifest = json.loads((bundle / "fomm-bundle.json").read_text())
    manifest.pop("files", None)
    manifest["schema"] = 1
    (bundle / "fomm-bundle.json").write_text(json.dumps(manifest))
    assert "does not name every wheel with its sha256" in _sentence(
        run_cli("install", "--from", bundle, "--python", fresh, env=ENV, timeout=60))


def test_download_refuses_a_wheel_that_asks_for_a_url_and_leaves_nothing(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    evil = build_wheel(elsewhere, "evil", "1.0", {"evil.py": b"RAN = True\n"})
    wheels = tmp_path / "w"
    wheels.mkdir()
    dep = build_wheel(wheels, "tinydep", "1.0", {"tinydep.py": b"VALUE = 42\n"}, requires=[f"evil @ {evil.as_uri()}"])
    torch = fake_torch_wheel(wheels, "9.1.0+cpu", requires=["tinydep>=1.0"])
    out = tmp_path / "bundle"
    with FaultServer(simple_routes([torch, dep])) as srv:
        proc = run_cli("install", "--download-only", out, "--mirror", srv.url("/simple/"), *OTHER,
                       "--cache-dir", tmp_path / "cache", env=ENV, timeout=240)
    assert "evil @ file://" in _sentence(proc) and "outside the bundle" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == []


# ---- the manifest parser, for any input ---------------------------------------------------------------------

SHA = "ab" * 32
_names = st.sampled_from(["torch-9.1.0+cpu-py3-none-any.whl", "tinydep-1.0-py3-none-any.whl", "a-1-py3-none-any.whl",
                          "../x-1-py3-none-any.whl", "x.tar.gz", "", "a b-1-py3-none-any.whl", "tinydep-2.0-py3-none-any.whl"])
_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.sampled_from([SHA, "cpu"]),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                    max_size=3), max_leaves=8)
_manifests = st.fixed_dictionaries(
    {"schema": st.sampled_from([2, 2, 1, "2", 2.0, True])},
    optional={"torch": st.fixed_dictionaries({"file": _names, "version": st.sampled_from(["9.1.0+cpu", 1]),
                                              "backend": st.sampled_from(["cpu", "cu126", "gpu", "cu" + "9" * 5000])}),
              "files": st.dictionaries(_names, st.sampled_from([SHA, SHA.upper(), "x", None]), max_size=3),
              "sha256": st.sampled_from([SHA, "cd" * 32, 5]),
              "packages": st.lists(st.sampled_from(["tinydep>=1.0", "--index-url=http://x", "evil @ http://x/e.whl",
                                                    "torch", "not a req!", 7]), max_size=3),
              "verified": _values, "extra": _values})


def _parsed_or_sentence(data: bytes) -> None:
    from fomm_doctor.install.bundle_manifest import Manifest, parse_manifest
    try:
        m = parse_manifest(data, "/b")
    except UserError as err:
        text = str(err)
        assert "\n" not in text and text.endswith(".") and len(text) < 1200
        return
    assert isinstance(m, Manifest) and m.torch_file in m.files and m.files
    assert all(name.endswith(".whl") and "/" not in name and ".." not in name for name in m.files)
    assert all(len(sha) == 64 and sha == sha.lower() for sha in m.files.values())
    assert all(not req.url for req in m.packages)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_manifests)
def test_property_any_manifest_gives_a_checked_bundle_or_one_sentence(manifest):
    _parsed_or_sentence(json.dumps(manifest).encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_property_any_bytes_give_a_checked_bundle_or_one_sentence(data):
    _parsed_or_sentence(data)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["tinydep-1.0-py3-none-any.whl", "six-1.16.0-py2.py3-none-any.whl",
                                        "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl"]),
                       st.from_regex(r"[0-9a-f]{64}", fullmatch=True), max_size=3),
       st.from_regex(r"[0-9a-f]{64}", fullmatch=True), st.sampled_from(["cpu", "cu126", "rocm6.4"]))
def test_property_a_manifest_we_write_reads_back_the_same(others, torch_sha, backend):
    from fomm_doctor.install.bundle_manifest import make_manifest, parse_manifest
    files = dict(others, **{"torch-9.1.0-cp311-cp311-linux_x86_64.whl": torch_sha})
    written = make_manifest("torch-9.1.0-cp311-cp311-linux_x86_64.whl", "9.1.0", Backend.parse(backend), files,
                            ["tinydep>=1.0"] if "tinydep-1.0-py3-none-any.whl" in files else [], "sha256",
                            "linux-x86_64", "3.11.7")
    m = parse_manifest(json.dumps(written, indent=1).encode(), "/b")
    assert m.files == files and m.torch_version == "9.1.0" and str(m.backend) == backend
    assert [str(r) for r in m.packages] == written["packages"]
