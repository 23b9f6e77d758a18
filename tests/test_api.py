"""The public Python API keeps its names across the layout change, and importing it costs no torch."""
import subprocess
import sys


def test_public_names_and_old_import_paths():
    code = ("import sys, fomm_core\n"
            "assert 'torch' not in sys.modules, 'importing fomm_core pulled in torch'\n"
            "from fomm_core import Animator, load_checkpoints\n"
            "from fomm_core.engine import Animator as Old\n"
            "from fomm_core.inference.engine import Animator as New\n"
            "assert Animator is Old is New\n"
            "import inspect\n"
            "print(list(inspect.signature(load_checkpoints).parameters))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['config_path', 'checkpoint_path', 'device']"
