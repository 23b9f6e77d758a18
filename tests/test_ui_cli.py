"""`fomm-doctor ui` from the command line: its refusals are one sentence (no browser needed)."""
import socket
import subprocess
import sys

import pytest
from pathlib import Path

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


def test_without_torch_the_page_builds_its_check_tab_works_and_animate_says_how_to_get_torch(tmp_path):
    """The page is for people whose set-up is broken too: it starts without torch, and says what to do."""
    pytest.importorskip("gradio", reason="gradio is not installed (Python 3.9, or no [ui] extra)")
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "from pathlib import Path\n"
        "from fomm_doctor.ui import actions, page\n"
        f"page.build_page(Path({str(tmp_path)!r}))\n"
        "rows = actions.check_rows()\n"
        "print('torch row:', [r for r in rows if r[0].startswith('torch')][0])\n"
        "request = actions.AnimateRequest('photo.jpg', 'clip.mp4')\n"
        "try:\n"
        "    actions.Animations(Path(" + repr(str(tmp_path)) + ")).animate(request, lambda f, t: None)\n"
        "except Exception as err:\n"
        "    print('animate:', type(err).__name__, err)\n")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes((Path(__file__).parent / "data" / "faces" / "astronaut_face.jpg").read_bytes())
    from conftest import make_clip
    make_clip(tmp_path / "clip.mp4", frames=2)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "torch row: ['torch.import'" in r.stdout   # (the check probes torch in a subprocess of its own)
    assert "animate: UserError PyTorch is not installed; run `fomm-doctor install --yes`" in r.stdout
