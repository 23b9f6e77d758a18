"""Run a small probe script in a child Python with a time limit, so that a broken library (a failing DLL, a
segfault, an import that hangs) becomes a fact to judge instead of a crash or a hang of the doctor."""
import json
import os
import subprocess
import sys
import time

MARK = "FOMM_PROBE_JSON:"


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
