"""Run a small probe script in a child Python with a time limit, so that a broken library (a failing DLL, a
segfault, an import that hangs) becomes a fact to judge instead of a crash or a hang of the doctor.

torch.import and opencv.import share the script's frame (`import_script`) and the failed rows
(`judge_failed_import`); each brings only what it tries once the import worked."""
import json
import os
import subprocess
import sys
import textwrap
import time
from typing import Callable, Optional

from fomm_doctor.preflight import tr
from fomm_doctor.report import CheckResult

MARK = "FOMM_PROBE_JSON:"


_IMPORT_SCRIPT = """import json
out = {{"installed": True}}
try:
{before}
    import {module}
except ModuleNotFoundError as e:
    if e.name == "{module}":
        out.update(installed=False, ok=False, error=str(e))
    else:
        out.update(ok=False, error="%s: %s" % (type(e).__name__, e))
except BaseException as e:
    out.update(ok=False, error="%s: %s" % (type(e).__name__, e))
else:
    try:
{work}
    except BaseException as e:
        out.update(ok=False, error="%s: %s" % (type(e).__name__, e))
print({mark!r} + json.dumps(out))
"""


def import_script(module: str, work: str, before: str = "") -> str:
    """A probe script that imports `module` and then runs `work`, both filling the dict `out`, which it prints
    after MARK. Whatever they raise, even a BaseException, becomes out["error"]; `before` runs just ahead of
    the import (inside the same guard)."""
    def block(code, depth):
        return textwrap.indent(textwrap.dedent(code).strip("\n"), " " * depth)
    return _IMPORT_SCRIPT.format(module=module, mark=MARK, before=block(before, 4), work=block(work, 8))


def probe_import(script: str, timeout: float, python=None, env=None) -> dict:
    """Facts from `script` run in `python` (default: this interpreter); `env` adds variables (tests set
    PYTHONPATH)."""
    return import_facts(run_probe_script(script, timeout, python, env), timeout)


def run_probe_script(code: str, timeout: float, python=None, env=None) -> dict:
    """Run `code` (which prints MARK + json) -> {"finished", "timed_out", "returncode", "data", "stderr_tail", "elapsed_s"}."""
    child_env = dict(os.environ)
    child_env.setdefault("OMP_NUM_THREADS", "1")
    child_env["PYTHONDONTWRITEBYTECODE"] = "1"
    if env:
        child_env.update(env)
    start = time.monotonic()
    try:
        proc = subprocess.run([python or sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, env=child_env, errors="replace")
    except subprocess.TimeoutExpired:
        return {"finished": False, "timed_out": True, "returncode": None, "data": None, "stderr_tail": "",
                "elapsed_s": round(time.monotonic() - start, 2)}
    except OSError as exc:
        return {"finished": False, "timed_out": False, "returncode": None, "data": None,
                "stderr_tail": str(exc), "elapsed_s": round(time.monotonic() - start, 2)}
    data = None
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            try:
                data = json.loads(line[len(MARK):])
            except ValueError:
                pass
    tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
    return {"finished": True, "timed_out": False, "returncode": proc.returncode, "data": data,
            "stderr_tail": tail, "elapsed_s": round(time.monotonic() - start, 2)}


def import_facts(result: dict, timeout: float) -> dict:
    """Flatten a probe run into facts: {"installed", "ok", "error", ...data}."""
    data = result.get("data") or {}
    facts = {"elapsed_s": result["elapsed_s"], "timeout_s": timeout, "timed_out": result["timed_out"]}
    if result["timed_out"]:
        return dict(facts, installed=None, ok=False, error=f"import did not finish within {timeout:g} s")
    if not data:
        code = result.get("returncode")
        why = result.get("stderr_tail") or f"probe exited with code {code}"
        if code is not None and code < 0:
            why = f"crashed with signal {-code}. {why}".strip()
        return dict(facts, installed=None, ok=False, error=why)
    return dict(facts, **data)


def judge_failed_import(check_id: str, facts: dict, details: dict, lang: str, *, missing: str, name: str,
                        missing_fix: str, broken_fix: Callable[[str], str], missing_run: tuple = (),
                        broken_run: Callable[[str], tuple] = lambda error: ()) -> Optional[CheckResult]:
    """The failed row for an import probed in a child process: not installed (`missing` names the package),
    or broken (`name` is the module; `broken_fix(last error line)` says what to do); None when it worked.
    `missing_run` and `broken_run(error)` are the same fixes as CheckResult.run (argv tuples) where runnable."""
    if facts.get("installed") is False:
        return CheckResult(check_id, "fail", tr(lang, f"{missing} is not installed.", f"未安装 {missing}。"),
                           details, missing_fix, missing_run)
    if facts.get("ok"):
        return None
    lines = (facts.get("error") or "").strip().splitlines()
    error = lines[-1] if lines else "?"
    return CheckResult(check_id, "fail", tr(lang, f"{name} is broken: {error}", f"{name} 无法使用：{error}"),
                       details, broken_fix(error), broken_run(error))
