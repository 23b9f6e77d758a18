"""Planning for another machine end to end: `install --download-only DIR --platform ...` against a 127.0.0.1
index, then `install --from DIR` into a fresh virtual environment with no index reachable."""
import json
import os
import subprocess
import sys

import pytest

from conftest import run_cli
from httpfaults import FaultServer, build_wheel, fake_torch_wheel, simple_routes

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
