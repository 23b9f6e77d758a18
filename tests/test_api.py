"""The public Python API: its names come from the modules that define them, and importing it costs no torch."""
import subprocess
import sys

import pytest


def test_public_names_and_their_modules():
    code = ("import sys, fomm_core\n"
            "assert 'torch' not in sys.modules, 'importing fomm_core pulled in torch'\n"
            "from fomm_core import Animator, TpsAnimator, load_checkpoints, load_model, make_animator\n"
            "from fomm_core.inference.fomm import Animator as Engine\n"
            "from fomm_core.inference.tpsmm import TpsAnimator as TpsEngine\n"
            "from fomm_core.inference.factory import make_animator as factory\n"
            "from fomm_core.model import checkpoint\n"
            "assert Animator is Engine and TpsAnimator is TpsEngine and make_animator is factory\n"
            "assert load_model is checkpoint.load_model and load_checkpoints is checkpoint.load_checkpoints\n"
            "import importlib.util\n"
            "assert importlib.util.find_spec('fomm_core.engine') is None, 'the 0.1 import path is gone'\n"
            "import inspect\n"
            "print(list(inspect.signature(load_checkpoints).parameters))\n"
            "print(list(inspect.signature(load_model).parameters))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["['config_path', 'checkpoint_path', 'device']",
                                          "['checkpoint', 'config', 'device']"]


def test_an_unknown_name_is_an_attribute_error():
    import fomm_core
    with pytest.raises(AttributeError, match="NoSuchThing"):
        fomm_core.NoSuchThing
