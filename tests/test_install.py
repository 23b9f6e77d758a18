"""`fomm-doctor install` end to end: a fresh virtual environment, a 127.0.0.1 index of real wheels that
misbehaves (503 on the index page, a dead mirror, a reset, a stall, a corrupted transfer)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import run_cli
from fomm_doctor.install.pip_persist import apply_change, describe_change, persist_change
from httpfaults import (Corrupt, FaultServer, Reply, Reset, Stall, Status, build_wheel, fake_torch_wheel,
                        simple_routes)


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh virtual environment with pip (what a user gets from `python -m venv`)."""
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    py = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    return str(py)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheels")
    dep = build_wheel(folder, "tinydep", "1.0", {"tinydep.py": b"VALUE = 42\n"})
    torch = fake_torch_wheel(folder, "9.1.0+cpu", payload_bytes=600_000, requires=["tinydep>=1.0"])
    return torch, dep


# the indexes a mirror's sha256 is compared with are out of reach here (the comparison has tests of its own)
NO_OFFICIAL = ["--official-pypi", "none", "--official-pytorch", "none"]


def _env(find_links=None):
    env = {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": find_links or "", "PIP_NO_INPUT": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return env


def _flat_page(names_urls):
    page = "<html><body>" + "".join(f'<a href="{u}">{n}</a>\n' for n, u in names_urls) + "</body></html>"
    return lambda req: Reply(200, page.encode(), {"Content-Type": "text/html"})


def test_install_through_faults_into_fresh_venv(venv, wheels, tmp_path):
    torch_whl, dep_whl = wheels
    wheel_path = "/files/" + torch_whl.name.replace("+", "%2B")
    with FaultServer(simple_routes([torch_whl, dep_whl])) as good, FaultServer({}) as dead:
        # the "down mirror": pip's find-links page lists the wheel, but the file always answers 503
        dead.routes["/links/"] = _flat_page([(torch_whl.name, dead.url(wheel_path))])
        dead.routes[wheel_path] = torch_whl.read_bytes()
        dead.script(wheel_path, Status(503, times=None))
        good.script("/simple/torch/", Status(503))
        good.script(wheel_path, Reset(after=150_000), Corrupt(at=400_000), Stall(after=100_000, seconds=3))

        args = ["install", "--python", venv, "--mirror", good.url("/simple/"), "--yes", "--json",
                "--only", "torch", "--cache-dir", tmp_path / "cache", "--timeout", "1", "--retries", "2", *NO_OFFICIAL]
        proc = run_cli(*args, env=_env(dead.url("/links/")), timeout=240)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout)
        hits = good.hits(wheel_path)

        # second run: already there, verified, nothing downloaded
        again = run_cli(*args, env=_env(dead.url("/links/")), timeout=240)
        assert again.returncode == 0, again.stderr[-2000:]
        assert json.loads(again.stdout)["outcome"]["torch"]["action"] == "already installed, import checked"
        assert len(good.hits(wheel_path)) == len(hits)
        dead_hits = dead.hits(wheel_path)

    t = out["plan"]["torch"]
    assert t["version"] == "9.1.0+cpu" and t["backend"] == "cpu" and len(t["urls"]) == 2
    assert out["outcome"]["torch"]["action"] == "installed" and out["outcome"]["torch"]["resumed"]
    assert out["outcome"]["torch"]["verified"] == "sha256" and t["verified"] == "sha256"
    assert out["outcome"]["verify"]["ok"] and out["outcome"]["verify"]["version"] == "9.1.0+cpu"
    assert [h.status for h in dead_hits] == [503] * 4  # tried, failed over (twice: first pass and after the mismatch)
    # server log: reset -> resumed with Range; corrupted -> refetched from byte 0; stall -> resumed with Range
    assert [h.fault for h in hits] == ["Reset", "Corrupt", "Stall", None]
    assert [h.status for h in hits] == [200, 206, 200, 206]
    assert hits[1].range_start > 0 and hits[2].range_start is None and hits[3].range_start > 0
    # the dependency came from the same index, and the package works in the venv
    check = subprocess.run([venv, "-c", "import torch, tinydep; print(torch.__version__, tinydep.VALUE)"],
                           capture_output=True, text=True)
    assert check.stdout.split() == ["9.1.0+cpu", "42"]
    assert not list((tmp_path / "cache").glob("*.part"))


def test_dry_run_changes_nothing_and_plans_from_the_index(venv, wheels, tmp_path):
    torch_whl, dep_whl = wheels
    with FaultServer(simple_routes([torch_whl, dep_whl])) as srv:
        proc = run_cli("install", "--python", venv, "--mirror", srv.url("/simple/"), "--dry-run", "--json",
                       "--only", "torch", "--torch", "9.1.0", *NO_OFFICIAL, env=_env(), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert not [h for h in srv.hits() if h.path.startswith("/files/")]
    plan = json.loads(proc.stdout)["plan"]
    assert plan["torch"]["file"] == torch_whl.name and plan["packages"] == []
    assert plan["torch"]["sha256"] and plan["python"]["executable"] == venv


def test_nothing_fits_is_one_sentence(venv, wheels):
    torch_whl, dep_whl = wheels
    with FaultServer(simple_routes([torch_whl, dep_whl])) as srv:
        proc = run_cli("install", "--python", venv, "--mirror", srv.url("/simple/"), "--yes", "--torch", "1.0.0",
                       *NO_OFFICIAL, env=_env(), timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bad_options_and_missing_yes():
    assert run_cli("install", "--backend", "gpu").returncode == 2
    proc = run_cli("install", "--python", "/nonexistent/python", "--dry-run")
    assert proc.returncode == 2 and "Could not run the Python at /nonexistent/python" in proc.stderr


def test_persist_writes_user_pip_config_once(tmp_path):
    facts = {"platform": "linux", "env": {}, "home": str(tmp_path)}
    conf = tmp_path / ".config" / "pip" / "pip.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("# mine\n[global]\ntimeout = 60\n\n[install]\nuser = false\n")
    change = persist_change("https://pypi.tuna.tsinghua.edu.cn/simple/", facts)
    assert change["changed"] and change["path"] == str(conf)
    assert describe_change(change).splitlines()[1:] == ["  + index-url = https://pypi.tuna.tsinghua.edu.cn/simple/"]
    secret = persist_change("https://me:s3cret@pkgs.example.com/simple/", facts)
    assert "s3cret" not in describe_change(secret) and "me:****@pkgs.example.com" in describe_change(secret)
    apply_change(change)
    text = conf.read_text()
    assert "# mine" in text and "timeout = 60" in text and "[install]" in text
    assert "index-url = https://pypi.tuna.tsinghua.edu.cn/simple/" in text.split("[install]")[0]
    again = persist_change("https://pypi.tuna.tsinghua.edu.cn/simple/", facts)
    assert not again["changed"]
    # pip itself reads what we wrote
    got = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                         env=dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / ".config"),
                                  PIP_CONFIG_FILE=str(conf)))
    assert "index-url='https://pypi.tuna.tsinghua.edu.cn/simple/'" in got.stdout


def test_nothing_found_sentence_reads_right_whether_or_not_an_index_answered(wheels):
    torch_whl, dep_whl = wheels
    other = ["--dry-run", "--only", "torch", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
             "--driver", "none", "--retries", "1", *NO_OFFICIAL]
    with FaultServer(simple_routes([torch_whl, dep_whl])) as good, FaultServer({}) as down:
        down.script("/simple/torch/", Status(503, times=None))
        down.script("/whl/cpu/torch/", Status(503, times=None))
        read = run_cli("install", "--mirror", good.url("/simple/"), "--torch", "1.0.0", *other, env=_env(),
                       timeout=120)
        unread = run_cli("install", "--mirror", down.url("/simple/"), "--pytorch-index", down.url("/whl/"), *other,
                         env=_env(), timeout=120)
        host = down.url("/")[len("http://"):-1]
        good_host = good.url("/")[len("http://"):-1]
    assert read.returncode == 2 and read.stderr == (
        f"error: No torch 1.0.0 wheel for Python 3.11 on linux-x86_64 with backend auto was found on "
        f"{good_host}/simple/ (for this Python they offer 9.1.0+cpu).\n")
    assert unread.returncode == 2 and unread.stderr == (
        "error: No torch wheel for Python 3.11 on linux-x86_64 with backend auto was found, because no index "
        f"could be read: the index page http://{host}/simple/torch/ could not be read (HTTP 503 after 1 try); "
        f"the index page http://{host}/whl/cpu/torch/ could not be read (HTTP 503 after 1 try).\n")
