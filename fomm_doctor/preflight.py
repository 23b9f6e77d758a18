# -*- coding: utf-8 -*-
"""Can this Python run fomm-doctor and current torch? Run it with the interpreter in question:

    python fomm_doctor/preflight.py

Standard library only, and written so that Python 2.7 and 3.6+ can at least parse it (no f-strings, no
annotations): its whole point is to explain, on an interpreter our package cannot install on, what is wrong and
what to install instead. Exit 0: usable; 1: this interpreter cannot work.
"""
from __future__ import print_function, unicode_literals

import io
import json
import os
import platform
import re
import struct
import sys

MIN_PYTHON = (3, 9)  # what fomm-doctor itself installs on (pyproject requires-python); `check` and `install` ask here
# Used when torch_builds.json is not beside us (a lone copy of this file): newest torch per Python, from it.
FALLBACK_NEWEST_TORCH = {"3.6": "1.10", "3.7": "1.13", "3.8": "2.4", "3.9": "2.8", "3.10": "2.14",
                         "3.11": "2.15", "3.12": "2.15", "3.13": "2.15", "3.14": "2.15", "3.15": "2.15"}
FALLBACK_RECOMMENDED = "3.11"


def load_index():
    """The build table the installer uses (fomm_doctor/install/torch_builds.json), or None for a lone copy."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        with io.open(os.path.join(here, "install", "torch_builds.json"), encoding="utf-8") as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return None


def version_key(text):
    """'2.14.1+cu126' -> (2, 14, 1); '580.65.06' -> (580, 65, 6); 'rocm6.4' -> (6, 4); junk -> ().

    The one version parser of fomm-doctor: it lives here because this file may import nothing of ours."""
    return tuple(int(p) for p in re.findall(r"\d+", str(text or "").split("+", 1)[0])[:4])


def releases_for_python(index, py_minor, pkey=None):
    """torch minor versions (newest first) with wheels for this CPython ('3.11'), on platform `pkey`
    ('linux-x86_64') when given: the one answer to 'which torch can this Python have'."""
    return [r["torch"] for r in (index or {}).get("releases", [])
            if py_minor in r["python"] and (pkey is None or r["builds"].get(pkey))]


def newest_torch_table(index):
    """{'3.11': '2.15', ...} from the table (releases are listed newest first), else the fallback."""
    if not index:
        return dict(FALLBACK_NEWEST_TORCH)
    pythons = set(py for release in index.get("releases", []) for py in release.get("python", []))
    return dict((py, releases_for_python(index, py)[0]) for py in pythons)


def recommended_python(index):
    """The oldest Python the newest torch supports: it has current torch and the widest choice of packages."""
    releases = (index or {}).get("releases") or []
    if not releases:
        return FALLBACK_RECOMMENDED
    return min(releases[0]["python"], key=version_key)


LANGS = ("en", "zh")  # the languages of every sentence we print: `tr(lang, en, zh)` where it is written


def default_lang(env=None):
    """'zh' when the locale says Chinese (FOMM_DOCTOR_LANG, LC_ALL, LC_MESSAGES, LANG, LANGUAGE, then the OS),
    else 'en'."""
    env = os.environ if env is None else env
    for var in ("FOMM_DOCTOR_LANG", "LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        if env.get(var):
            return _lang_of(env[var])
    try:
        import locale
        name = locale.getlocale()[0] or ""
    except Exception:
        name = ""
    return _lang_of(name)


def _lang_of(name):
    name = name.lower()
    return "zh" if name.startswith("zh") or "chinese" in name else "en"


def can_print(text):
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
        return True
    except (UnicodeError, LookupError):
        return False


def emit(line):
    """print, never a UnicodeError: characters the console cannot show become '?'."""
    try:
        print(line)
    except UnicodeError:
        encoding = getattr(sys.stdout, "encoding", None) or "ascii"
        data = line.encode(encoding, "replace")
        print(data if sys.version_info[0] < 3 else data.decode(encoding))


def tr(lang, en, zh):
    """The sentence for `lang`; both are written side by side where they are used."""
    return zh if lang == "zh" else en


def install_hint(system, want, lang="en"):
    """How to get a usable Python `want` on `system` (platform.system()'s 'Windows', 'Darwin', 'Linux', or
    'windows', 'macos', 'linux') and put fomm-doctor into a fresh virtual environment of it: the one sentence."""
    osn = system.lower()
    if osn.startswith("win"):
        get, py, activate = (tr(lang, "`winget install Python.Python.%s` (64-bit; or the python.org installer)",
                                "`winget install Python.Python.%s`（64 位；或 python.org 安装包）") % want,
                             "py -%s" % want, "fomm-env\\Scripts\\activate")
    elif osn in ("darwin", "macos"):
        get, py, activate = (tr(lang, "`brew install python@%s` (64-bit; or the python.org installer)",
                                "`brew install python@%s`（64 位；或 python.org 安装包）") % want, "python%s" % want,
                             "source fomm-env/bin/activate")
    else:
        get, py, activate = (tr(lang, "your package manager or `pyenv install %s` (64-bit)",
                                "系统包管理器或 `pyenv install %s`（64 位）") % want, "python%s" % want,
                             "source fomm-env/bin/activate")
    return tr(lang, "Install Python %s with %s, then in the fomm-doctor folder: `%s -m venv fomm-env`, `%s`, "
                    "`python -m pip install .`" % (want, get, py, activate),
              "用 %s 安装 Python %s，然后在 fomm-doctor 目录中依次运行：`%s -m venv fomm-env`、`%s`、"
              "`python -m pip install .`" % (get, want, py, activate))


def diagnose(version_info, bits, implementation, system, index, lang="en"):
    """-> (ok, [problem sentences], [notes]); pure, so it can be tested for any interpreter."""
    table = newest_torch_table(index)
    want = recommended_python(index)
    mm = "%d.%d" % (version_info[0], version_info[1])
    newest = table.get(mm)
    current = max(table.values(), key=version_key) if table else None
    problems, notes = [], []
    if tuple(version_info[:2]) < MIN_PYTHON:
        why = tr(lang, "Python %s is too old for fomm-doctor (it needs %d.%d or newer)" % ((mm,) + MIN_PYTHON),
                 "Python %s 太旧，fomm-doctor 需要 %d.%d 或更新的版本" % ((mm,) + MIN_PYTHON))
        if newest:
            why += tr(lang, ", and the newest torch for it is %s (current: %s)." % (newest, current),
                      "；它最多只能装 torch %s（最新为 %s）。" % (newest, current))
        else:
            why += tr(lang, ", and no torch release supports it.", "；也没有任何 torch 版本支持它。")
        problems.append(why)
    elif newest is None:
        problems.append(tr(lang, "No torch release has wheels for Python %s yet." % mm,
                           "目前没有任何 torch 版本提供 Python %s 的安装包。" % mm))
    elif current and version_key(newest) < version_key(current):
        notes.append(tr(lang, "Python %s can have torch up to %s; Python %s gets %s." % (mm, newest, want, current),
                        "Python %s 最多能装 torch %s；Python %s 可以装 %s。" % (mm, newest, want, current)))
    if bits != 64:
        problems.append(tr(lang, "This is a %d-bit Python: no %d-bit torch wheels exist." % (bits, bits),
                           "这是 %d 位 Python：torch 没有 %d 位安装包。" % (bits, bits)))
    if implementation != "CPython":
        problems.append(tr(lang, "%s: torch publishes wheels for CPython only." % implementation,
                           "%s：torch 只提供 CPython 的安装包。" % implementation))
    return (not problems), problems, notes + ([install_hint(system, want, lang)] if problems else [])


def main():
    index = load_index()
    lang = default_lang()
    if lang == "zh" and not can_print("修复：中文"):
        lang = "en"  # a console that cannot show Chinese gets English, not question marks
    bits = struct.calcsize("P") * 8
    impl = platform.python_implementation()
    ok, problems, notes = diagnose(sys.version_info, bits, impl, platform.system(), index, lang)
    executable = sys.executable
    if isinstance(executable, bytes):  # Python 2
        executable = executable.decode(sys.getfilesystemencoding() or "utf-8", "replace")
    emit("fomm-doctor preflight: Python %s (%d-bit %s) at %s" % (platform.python_version(), bits, impl, executable))
    for line in problems:
        emit("  FAIL: " + line)
    for line in notes:
        emit("  " + (tr(lang, "fix: ", "修复：") if problems else tr(lang, "note: ", "提示：")) + line)
    if ok:
        emit(tr(lang, "  OK: this interpreter can run fomm-doctor; next: `fomm-doctor check`.",
                 "  OK：这个解释器可以运行 fomm-doctor；下一步：`fomm-doctor check`。"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
