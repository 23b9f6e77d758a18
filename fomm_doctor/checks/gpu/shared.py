"""What every vendor's GPU probe shares: reading the kernel's files and running the vendors' tools so that a
tool that is missing, hangs or prints garbage gives an empty answer plus an `errors` entry, never a traceback.
The parsers stay apart from the subprocesses and files that feed them, so every platform is testable on any
machine.
"""
import os
import subprocess

DRM = "/sys/class/drm"


def read_text(path):
    """A small text file from /proc or /sys; None when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return None


def run_tool(run, cmd, timeout, errors, name=None):
    """stdout of a successful run, else None with the reason appended to `errors` (under `name`, or cmd[0])."""
    name = name or cmd[0]
    try:
        out = run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        errors.append(f"{name}: not found")
        return None
    except subprocess.TimeoutExpired:
        errors.append(f"{name}: no answer within {timeout:g} s")
        return None
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        errors.append(f"{name}: {exc}")
        return None
    if out.returncode != 0:
        errors.append(f"{name}: exit {out.returncode}: {((out.stderr or '') + (out.stdout or '')).strip()[:200]}")
        return None
    return out.stdout if isinstance(out.stdout, str) else (out.stdout or b"").decode("utf-8", "replace")


def tool_gpus(run, cmd: list, parse, timeout, errors: list, empty: str):
    """GPUs `parse` finds in a tool's output; [] (and `empty` in `errors`) when it names none; None when the tool
    did not run (the reason is in `errors`)."""
    text = run_tool(run, cmd, timeout, errors)
    if text is None:
        return None
    gpus = parse(text)
    if not gpus:
        errors.append(f"{cmd[0]}: {empty}")
    return gpus


def nothing(errors: list) -> dict:
    return {"gpus": [], "source": None, "errors": errors}
