# -*- coding: utf-8 -*-
"""Can this Python run fomm-doctor and current torch? Run it with the interpreter in question:

    python fomm_doctor/preflight.py

Standard library only, and written so that Python 2.7 and 3.6+ can at least parse it (no f-strings, no
annotations): its whole point is to explain, on an interpreter our package cannot install on, what is wrong and
what to install instead. Exit 0: usable; 1: this interpreter cannot work.
"""
from __future__ import print_function

import io
import json
import os
import platform
import struct
import sys

MIN_PYTHON = (3, 9)
# Used when wheels_index.json is not beside us (a lone copy of this file): newest torch per Python.
FALLBACK_NEWEST_TORCH = {"3.6": "1.10.2", "3.7": "1.13.1", "3.8": "2.4.1", "3.9": "2.8.0", "3.10": "2.13.0",
                         "3.11": "2.13.0", "3.12": "2.13.0", "3.13": "2.13.0", "3.14": "2.13.0"}
FALLBACK_RECOMMENDED = "3.11"


def load_index():
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.path.join(here, "_data", "wheels_index.json"), os.path.join(here, os.pardir, "wheels_index.json")):
        try:
            with io.open(path, encoding="utf-8") as f:
                return json.load(f)
        except (IOError, OSError, ValueError):
            continue
    return None


def newest_torch_table(index):
    """{'3.11': '2.13.0', ...} from the index (releases are listed newest first), else the fallback."""
    if not index:
        return dict(FALLBACK_NEWEST_TORCH)
    table = {}
    for release in index.get("torch_releases", []):
        for py in release.get("python", []):
            table.setdefault(py, release["version"])
    return table


def version_key(text):
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def install_hint(system, want):
    """How to get a usable Python and put fomm-doctor into a fresh virtual environment of it."""
    if system == "Windows":
        get, py, activate = ("`winget install Python.Python.%s` (64-bit; or the python.org installer)" % want,
                             "py -%s" % want, "fomm-env\\Scripts\\activate")
    elif system == "Darwin":
        get, py, activate = ("`brew install python@%s` (or the python.org installer)" % want, "python%s" % want,
                             "source fomm-env/bin/activate")
    else:
        get, py, activate = ("your package manager or `pyenv install %s`" % want, "python%s" % want,
                             "source fomm-env/bin/activate")
    return ("Install Python %s with %s, then in the fomm-doctor folder: `%s -m venv fomm-env`, `%s`, "
            "`python -m pip install .`" % (want, get, py, activate))


def diagnose(version_info, bits, implementation, system, index):
    """-> (ok, [problem sentences], [notes]); pure, so it can be tested for any interpreter."""
    table = newest_torch_table(index)
    want = (index or {}).get("recommended_python", FALLBACK_RECOMMENDED)
    mm = "%d.%d" % (version_info[0], version_info[1])
    newest = table.get(mm)
    current = max(table.values(), key=version_key) if table else None
    problems, notes = [], []
    if tuple(version_info[:2]) < MIN_PYTHON:
        why = "Python %s is too old for fomm-doctor (it needs %d.%d or newer)" % ((mm,) + MIN_PYTHON)
        if newest:
            why += ", and the newest torch for it is %s (current: %s)." % (newest, current)
        else:
            why += ", and no torch release supports it."
        problems.append(why)
    elif newest is None:
        problems.append("No torch release has wheels for Python %s yet." % mm)
    elif current and version_key(newest) < version_key(current):
        notes.append("Python %s can have torch up to %s; Python %s gets %s." % (mm, newest, want, current))
    if bits != 64:
        problems.append("This is a %d-bit Python: no %d-bit torch wheels exist." % (bits, bits))
    if implementation != "CPython":
        problems.append("%s: torch publishes wheels for CPython only." % implementation)
    return (not problems), problems, notes + ([install_hint(system, want)] if problems else [])


def main():
    index = load_index()
    bits = struct.calcsize("P") * 8
    impl = platform.python_implementation()
    ok, problems, notes = diagnose(sys.version_info, bits, impl, platform.system(), index)
    print("fomm-doctor preflight: Python %s (%d-bit %s) at %s" % (platform.python_version(), bits, impl,
                                                                   sys.executable))
    for line in problems:
        print("  FAIL: " + line)
    for line in notes:
        print("  " + ("fix: " if problems else "note: ") + line)
    if ok:
        print("  OK: this interpreter can run fomm-doctor; next: `fomm-doctor check`.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
