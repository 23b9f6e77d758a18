"""`fomm-doctor check --fix`: the fixes the rows carry as commands, planned (pure), and applied end to end in a
fresh virtual environment with an old pip and no torch, against a 127.0.0.1 index serving the local torch
2.13.0 CPU wheel and a newer pip: `--fix --yes` ends green; without --yes (stdin closed, or answering no on a
terminal) and with --dry-run nothing changes."""
import json
import os
import pty
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from fomm_doctor.checks import checkpoints as ckchk
from fomm_doctor.checks import ffmpeg as ffchk
from fomm_doctor.checks import fix as fixes
from fomm_doctor.checks import mirrors as mirchk
from fomm_doctor.checks import opencv as cvchk
from fomm_doctor.checks import pip as pipchk
from fomm_doctor.checks import torch as torchchk
from fomm_doctor.report import CheckResult
from fomm_doctor.resources import load_wheels_index
from httpfaults import FaultServer, simple_routes

INDEX = load_wheels_index()
LINUX = {"platform": "linux", "os": "linux"}
WINDOWS = {"platform": "win32", "os": "windows"}
REPO = Path(__file__).resolve().parents[1]
TORCH_WHEEL = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
OLD_PIP = "22.3.1"  # older than wheels_index.json's min_pip (23.0), and runs on Python 3.11


# ---- the rows carry their fixes as commands --------------------------------------------------------------------

def _rows_with_fixes() -> list:
    """Rows from the real judges for problems whose fix is a command, on Linux and Windows."""
    missing = {"installed": False, "ok": False, "error": "No module named 'x'"}
    broken = {"installed": True, "ok": False, "error": "ImportError: libGL.so.1: cannot open shared object file"}
    two_cv = {"installed": True, "ok": True, "version": "4.10.0",
              "distributions": ["opencv-python==4.10.0", "opencv-python-headless==4.9.0"]}
    unchecked = {"store": "/s", "project": "/p", "checkpoints": [
        {"name": "mine", "file": "mine.pth.tar", "sources": 0,
         "present": [{"path": "/s/mine.pth.tar", "size": 9, "state": "unchecked", "verified": False, "why": ""}]},
        {"name": "vox", "file": "vox-cpk.pth.tar", "sources": 2, "present": []}]}
    probed = {"configured": {"ok": False, "latency_ms": None, "error": "timed out"},
              "tsinghua": {"ok": True, "latency_ms": 40, "error": None}}
    rows = []
    for plat in (LINUX, WINDOWS):
        rows += [pipchk.judge_version({"version": None}, plat, INDEX),
                 pipchk.judge_version({"version": OLD_PIP}, plat, INDEX),
                 torchchk.judge_import(missing, plat), torchchk.judge_import(broken, plat),
                 cvchk.judge_import(missing, plat), cvchk.judge_import(dict(broken, distributions=two_cv[
                     "distributions"]), plat), cvchk.judge_import(two_cv, plat),
                 ffchk.judge_bundled({"installed": False}, plat), ffchk.judge_bundled({"installed": True}, plat)]
        rows += mirchk.judge_mirrors(probed, {"configured": "https://dead.example/simple/",
                                              "tsinghua": INDEX["mirrors"]["tsinghua"]["url"]}, INDEX, plat)
    rows += ckchk.judge_checkpoints(unchecked)
    return rows


def test_every_runnable_fix_is_the_command_its_words_name():
    rows = [r for r in _rows_with_fixes() if r.run]
    assert {r.id for r in rows} >= {"pip.version", "torch.import", "opencv.import", "ffmpeg.bundled",
                                    "mirror.configured", "checkpoints.mine", "checkpoints.published"}
    for r in rows:
        assert r.status in ("fail", "warn")
        for command in r.run:
            # the words show the platform's spelling of the program (py -m pip, python3 -m pip, fomm-doctor);
            # what follows it is the same
            assert " ".join(command[1:]) in r.fix, (r.id, command, r.fix)


def test_advice_only_fixes_carry_no_command():
    dll = {"installed": True, "ok": False, "error": "ImportError: DLL load failed while importing _C"}
    row = torchchk.judge_import(dll, WINDOWS)
    assert "vc_redist" in row.fix and row.run == ()  # reinstalling torch alone would not help: advice, never run
    assert torchchk.judge_import(dll, LINUX).run == (("fomm-doctor", "install", "--yes"),)
    with pytest.raises(ValueError, match="argv tuple"):
        CheckResult("x", "fail", "s", fix="rm -rf /", run=(("sh", "-c", "rm -rf /"),))


def test_plan_runs_each_command_once_in_the_rows_order_and_keeps_advice():
    install = ("fomm-doctor", "install", "--yes")
    rows = [CheckResult("pip.version", "warn", "old", fix="python3 -m pip install --upgrade pip",
                        run=(("pip", "install", "--upgrade", "pip"),)),
            CheckResult("gpu.driver", "warn", "no driver", fix="install a driver from https://www.nvidia.com"),
            CheckResult("gpu.torch_cuda", "warn", "cpu build", fix="fomm-doctor install --yes", run=(install,)),
            CheckResult("torch.import", "fail", "broken", fix="fomm-doctor install --yes", run=(install,)),
            CheckResult("opencv.import", "ok", "fine"),
            CheckResult("checkpoints.published", "warn", "none", fix="fomm-doctor checkpoints fetch vox",
                        run=(("fomm-doctor", "checkpoints", "fetch", "vox"),))]
    plan = fixes.plan_fixes(rows, ("--mirror", "tsinghua"), skip=("checkpoints.published",))
    assert [(f.command, f.ids) for f in plan.runs] == [
        (("pip", "install", "--upgrade", "pip"), ("pip.version",)),
        (install + ("--mirror", "tsinghua"), ("gpu.torch_cuda", "torch.import"))]
    assert [i for i, _ in plan.advice] == ["gpu.driver", "checkpoints.published"]
    assert fixes.argv(plan.runs[1].command, "/v/bin/python") == ["/v/bin/python", "-m", "fomm_doctor", "install",
                                                                 "--yes", "--mirror", "tsinghua"]
    assert fixes.argv(("pip", "install", "--upgrade", "pip"), "/v/bin/python")[:3] == ["/v/bin/python", "-m", "pip"]
    assert fixes.plan_fixes([r for r in rows if r.status == "ok"]).runs == ()


def test_changes_lists_rows_whose_status_moved():
    before = [CheckResult("pip.version", "warn", "a"), CheckResult("torch.import", "fail", "b"),
              CheckResult("disk.space", "ok", "c")]
    after = [CheckResult("pip.version", "ok", "a"), CheckResult("torch.import", "ok", "b"),
             CheckResult("disk.space", "ok", "c"), CheckResult("gpu.other", "skipped", "d")]
    assert fixes.changes(before, after) == [("pip.version", "warn", "ok"), ("torch.import", "fail", "ok"),
                                            ("gpu.other", None, "skipped")]


def test_fix_flags_without_fix_are_one_sentence():
    for args in (["--yes"], ["--dry-run", "--skip", "x"], ["--fix", "--yes", "--dry-run"]):
        proc = run_cli("check", "--offline", *args, timeout=60)
        assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


# ---- end to end: a fresh virtual environment with an old pip and no torch ---------------------------------------

_NOT_SHARED = ("torch", "functorch", "torchgen", "torchvision", "torchaudio", "triton", "nvidia", "pip",
               "fomm_core", "fomm_doctor", "_editable", "__pycache__")


def _shared(name: str) -> bool:
    if name.startswith("fomm_doctor-"):
        return True  # fomm-doctor's metadata: `install` reads the project's dependencies from it
    bare = name.split("-")[0].lower()
    return not name.endswith(".pth") and not any(bare.startswith(n) for n in _NOT_SHARED)


def _share_packages(site: Path, shared: Path) -> None:
    """Make this test environment's packages (typer, opencv, imageio-ffmpeg, torch's own dependencies, ...)
    importable in the fresh venv, without torch or pip, so the test downloads only what the fixes fetch: a
    folder of links to them, named in a .pth file after the venv's own site-packages (what the venv installs
    wins), with this repository first."""
    here = Path(next(p for p in sys.path if p.endswith("site-packages") and Path(p, "typer").exists()))
    shared.mkdir()
    for entry in here.iterdir():
        if _shared(entry.name):
            (shared / entry.name).symlink_to(entry)
    (site / "zz_shared_packages.pth").write_text(f"{REPO}\n{shared}\n")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def old_pip_wheel(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oldpip")
    got = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                          "-d", str(folder), f"pip=={OLD_PIP}"], capture_output=True, text=True, timeout=300)
    wheels = list(folder.glob(f"pip-{OLD_PIP}-*.whl"))
    if got.returncode or not wheels:
        pytest.skip(f"pip {OLD_PIP} could not be fetched from PyPI: {got.stderr.strip()[-300:]}")
    return wheels[0]


@pytest.fixture(scope="module")
def index():
    """A 127.0.0.1 index holding the local torch 2.13.0 CPU wheel and the pip this Python bundles (newer than
    min_pip): the only places the fixes may fetch from."""
    import ensurepip
    new_pip = sorted(Path(ensurepip.__file__).parent.joinpath("_bundled").glob("pip-*.whl"))[-1]
    if not TORCH_WHEEL.is_file():
        pytest.skip(f"{TORCH_WHEEL} is not on this machine")
    with FaultServer(simple_routes([TORCH_WHEEL, new_pip])) as srv:
        yield srv, new_pip.name.split("-")[1]


@pytest.fixture(scope="module")
def machine(tmp_path_factory, old_pip_wheel, index):
    """A fresh venv with pip downgraded to OLD_PIP and no torch; the environment its commands run with: pip's
    config files off and its index the local one, every other address behind a proxy that refuses (so nothing
    leaves 127.0.0.1), and fomm-doctor's folders in the test's tmp."""
    srv, _ = index
    root = tmp_path_factory.mktemp("fixvenv")
    subprocess.run([sys.executable, "-m", "venv", str(root / "v")], check=True, timeout=300)
    py = root / "v" / "bin" / "python"
    site = next((root / "v" / "lib").glob("python3*/site-packages"))
    _share_packages(site, root / "shared")
    refused = f"http://127.0.0.1:{_closed_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=srv.url("/simple/"), PIP_NO_INPUT="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", HTTP_PROXY=refused, HTTPS_PROXY=refused,
               NO_PROXY="127.0.0.1,localhost", FOMM_DOCTOR_HOME=str(root / "home"),
               FOMM_DOCTOR_CACHE=str(root / "cache"), OMP_NUM_THREADS="1")
    subprocess.run([str(py), "-m", "pip", "install", "--no-index", str(old_pip_wheel)], check=True,
                   capture_output=True, env=env, timeout=300)
    # the setuptools a 3.11 venv brings (65) is older than torch 2.13 requires (77.0.3); without it the shared
    # one, new enough, is what pip finds (the index here holds only torch and pip)
    subprocess.run([str(py), "-m", "pip", "uninstall", "-y", "setuptools"], check=True, capture_output=True,
                   env=env, timeout=300)
    return str(py), env


def _state(py: str, env: dict) -> tuple:
    """(pip version, torch version or None) in the venv."""
    out = subprocess.run([py, "-c", "from importlib import metadata as m\nimport importlib.util as u\n"
                                    "print(m.version('pip'), u.find_spec('torch') and m.version('torch'))"],
                         capture_output=True, text=True, env=env, timeout=60)
    pip_version, torch_version = out.stdout.split()
    return pip_version, None if torch_version == "None" else torch_version


def _check(py: str, env: dict, *args, stdin=subprocess.DEVNULL, timeout=600):
    return subprocess.run([py, "-m", "fomm_doctor", "check", "--offline", "--fix", "--skip",
                           "checkpoints.published", *args], capture_output=True, text=True, env=env,
                          stdin=stdin, timeout=timeout)


def _files_fetched(srv) -> list:
    return [h.path for h in srv.hits() if h.path.startswith("/files/")]


def test_without_yes_nothing_changes(machine, index):
    py, env = machine
    srv, _ = index
    # stdin closed: no one to ask, so nothing is run
    proc = _check(py, env, "--mirror", srv.url("/simple/"))
    assert proc.returncode == 2 and "Nothing was changed: add --yes" in proc.stderr, proc.stderr[-2000:]
    assert "-m pip install --upgrade pip" in proc.stdout and "-m fomm_doctor install --yes --mirror" in proc.stdout
    # --dry-run: the commands, nothing more
    dry = _check(py, env, "--dry-run", "--json", "--mirror", srv.url("/simple/"))
    planned = json.loads(dry.stdout)
    assert [f["command"][:3] for f in planned["fixes"]["run"]] == [["pip", "install", "--upgrade"],
                                                                  ["fomm-doctor", "install", "--yes"]]
    assert planned["dry_run"] is True and planned["before"]["ok"] is False
    # a terminal, answered no
    leader, follower = pty.openpty()
    try:
        os.write(leader, b"n\n")
        answered = _check(py, env, "--mirror", srv.url("/simple/"), stdin=follower)
    finally:
        os.close(leader)
        os.close(follower)
    assert "Nothing was changed." in answered.stdout and answered.returncode == 1, answered.stderr[-2000:]
    assert _state(py, env) == (OLD_PIP, None) and _files_fetched(srv) == []


def test_fix_yes_ends_green(machine, index):
    py, env = machine
    srv, new_pip = index
    proc = _check(py, env, "--yes", "--mirror", srv.url("/simple/"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = [line for line in proc.stdout.splitlines() if line.startswith("running: ")]
    # pip first (install then runs with the new pip), each through the venv's own interpreter
    assert ran == [f"running: {py} -m pip install --upgrade pip",
                   f"running: {py} -m fomm_doctor install --yes --mirror {srv.url('/simple/')}"]
    assert "pip.version: warn -> ok" in proc.stdout and "torch.import: fail -> ok" in proc.stdout
    assert "(after the fixes)" in proc.stdout and "exit code" not in proc.stdout
    assert _state(py, env) == (new_pip, "2.13.0+cpu")
    wheels = {p for p in _files_fetched(srv) if p.endswith(".whl")}  # (install may ask for .whl.metadata too)
    assert wheels == {f"/files/pip-{new_pip}-py3-none-any.whl", "/files/" + TORCH_WHEEL.name.replace("+", "%2B")}
    # check, on its own, agrees; and --fix has nothing left to run
    again = _check(py, env, "--yes", "--json")
    out = json.loads(again.stdout)
    assert again.returncode == 0 and out["before"]["ok"] and out["fixes"]["run"] == []
    rows = {r["id"]: r["status"] for r in out["before"]["checks"]}
    assert rows["pip.version"] == rows["torch.import"] == "ok"
