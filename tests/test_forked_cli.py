"""The tests' CLI runner (tests/forked_cli.py): a command forked from the server that imported torch ends as the
same command in a fresh interpreter ends, or runs in a fresh interpreter where the fork could differ."""
import os
import subprocess
import sys

import pytest

from conftest import REPO, run_cli
from forked_cli import ForkedCli

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform: every command runs fresh")


def fresh(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "fomm_doctor", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=120)


@pytest.mark.parametrize("args", [("--help",), ("bench", "--size", "100"), ("animate", "--help"),
                                  ("crop", "no-such-clip.mp4", "-o", "out.mp4"), ("no-such-command",)])
def test_a_forked_command_says_and_exits_as_a_fresh_one(args, tmp_path):
    forked = ForkedCli().run(list(args), {**os.environ, "COLUMNS": "100"}, 120, tmp_path)
    assert forked is not None
    want = fresh(*args, env={"COLUMNS": "100"}, cwd=tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (want.returncode, want.stdout, want.stderr)


def test_the_working_folder_and_environment_are_the_requests(tmp_path):
    """A checkpoint folder given only by the environment, and a relative path read from the request's folder."""
    (tmp_path / "store").mkdir()
    env = {**os.environ, "FOMM_CHECKPOINTS_DIR": str(tmp_path / "store")}
    forked = ForkedCli().run(["checkpoints", "list", "--json"], env, 120, tmp_path)
    want = fresh("checkpoints", "list", "--json", env={"FOMM_CHECKPOINTS_DIR": str(tmp_path / "store")}, cwd=tmp_path)
    assert forked.returncode == want.returncode == 0 and forked.stdout == want.stdout
    assert str(tmp_path / "store") in forked.stdout


def test_a_variable_read_at_start_runs_the_command_fresh(tmp_path):
    """PYTHONPATH is read when an interpreter starts: only a fresh one runs the sitecustomize it names."""
    (tmp_path / "sitecustomize.py").write_text("import pathlib; pathlib.Path('started').write_text('fresh')\n")
    assert ForkedCli().run(["--help"], {**os.environ, "PYTHONPATH": str(tmp_path)}, 120, tmp_path) is None
    done = run_cli("--help", env={"PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "started").read_text() == "fresh"
    plain = tmp_path / "plain"
    plain.mkdir()
    assert run_cli("--help", cwd=plain).returncode == 0 and not (plain / "started").exists()


def test_when_the_test_process_environment_moves_a_new_server_starts(tmp_path, monkeypatch):
    """An import that sets a variable read at start (opencv sets LD_LIBRARY_PATH) moves the test process's own
    environment: the commands still fork, from a new server started with it; a command asking for another value
    still runs fresh."""
    runner = ForkedCli()
    assert runner.run(["--help"], dict(os.environ), 120, tmp_path) is not None
    monkeypatch.setenv("LC_FOMM_TEST", "moved")
    with pytest.warns(UserWarning, match=r"changed \(LC_FOMM_TEST\): a new CLI server"):
        done = runner.run(["--help"], dict(os.environ), 120, tmp_path)
    assert done is not None and done.returncode == 0
    assert runner.run(["--help"], {**os.environ, "LC_FOMM_TEST": "other"}, 120, tmp_path) is None


def test_a_command_past_its_time_is_killed_and_the_next_runs(tmp_path):
    """`fomm-doctor ui` serves until stopped: past the timeout it is killed, as subprocess.run kills it."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = ForkedCli()
    with pytest.raises(subprocess.TimeoutExpired):
        runner.run(["ui", "--port", str(port), "--results", str(tmp_path)], dict(os.environ), 5, tmp_path)
    again = runner.run(["--help"], dict(os.environ), 120, REPO)
    assert again is not None and again.returncode == 0 and "Usage" in again.stdout
