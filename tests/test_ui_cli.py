"""`fomm-doctor ui` from the command line: its refusals are one sentence (no browser needed)."""
import socket
import subprocess
import sys

import pytest

from conftest import run_cli


def test_without_gradio_the_sentence_names_the_extra():
    blocked = ("import sys; sys.modules['gradio'] = None\n"
               "from fomm_doctor.cli import main\nmain(['ui', '--port', '7999'])")
    r = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert 'error: the web page needs gradio' in r.stderr and 'install "fomm-doctor[ui]"' in r.stderr
    assert "Traceback" not in r.stderr


def test_a_bad_port_is_refused():
    r = run_cli("ui", "--port", "70000")
    assert r.returncode == 2 and "--port must be between 1 and 65535" in r.stderr


def test_a_port_in_use_is_a_sentence_not_a_hang(tmp_path):
    pytest.importorskip("gradio", reason="gradio is not installed (Python 3.9, or no [ui] extra)")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_cli("ui", "--port", str(port), "--results", tmp_path / "results", timeout=120)
    assert r.returncode == 2, r.stderr
    assert f"error: cannot listen on 127.0.0.1:{port}: the port is taken" in r.stderr
    assert "Traceback" not in r.stderr
