"""`fomm-doctor check --fix`: the fixes the rows carry as commands (`CheckResult.run`), gathered into one plan,
shown, run only after consent, each through the command that owns it (`fomm-doctor install` for torch, pip's
own upgrade for pip, `fomm-doctor checkpoints fetch`, ...); then `check` runs again and the rows that changed
are listed.

The rows carry argv tuples, never English to parse; a row whose fix is advice only (a driver from a web page, a
file to delete) has no `run` and is shown, never run. Planning and the list of changes are pure (rows in, plan
out), so every platform's rows can be planned from here; only `run_fixes` touches the machine.
"""
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

NEEDS_FIXING = ("fail", "warn")


@dataclass(frozen=True)
class Fix:
    """One command to run, as the rows carry it (("pip", "install", "--upgrade", "pip")), and the rows that
    asked for it (torch.import and gpu.torch_cuda may both ask for `fomm-doctor install --yes`: it runs once)."""
    command: tuple
    ids: tuple


@dataclass(frozen=True)
class FixPlan:
    runs: tuple    # Fix, in the rows' order (pip before install, install before a checkpoint is fetched)
    advice: tuple  # (id, words): problems whose fix no command here can apply

    def to_json(self, python: str = sys.executable) -> dict:
        return {"run": [{"command": list(f.command), "argv": argv(f.command, python), "for": list(f.ids)}
                        for f in self.runs],
                "advice": [{"id": i, "fix": words} for i, words in self.advice]}


def plan_fixes(results: list, install_args: tuple = (), skip: tuple = ()) -> FixPlan:
    """The rows that fail or warn -> their commands (each once, in the rows' order) and their advice.

    install_args are added to every `fomm-doctor install` (check's --mirror: where install fetches from); the
    rows named in `skip` (check's --skip) keep their fix as words only."""
    order, asked, advice = [], {}, []
    for r in results:
        if r.status not in NEEDS_FIXING:
            continue
        if not r.run or r.id in skip:
            if r.fix:
                advice.append((r.id, r.fix))
            continue
        for command in r.run:
            command = _with_install_args(command, install_args)
            if command not in asked:
                order.append(command)
                asked[command] = []
            asked[command].append(r.id)
    return FixPlan(tuple(Fix(c, tuple(asked[c])) for c in order), tuple(advice))


def _with_install_args(command: tuple, install_args: tuple) -> tuple:
    if command[:2] == ("fomm-doctor", "install") and install_args:
        return command + tuple(install_args)
    return command


def argv(command: tuple, python: str = sys.executable) -> list:
    """A row's command -> what runs: every program through `python`, the interpreter the check judged, so pip
    upgrades that interpreter's pip and install installs into it (never another pip or fomm-doctor on PATH)."""
    program, *args = command
    prefix = {"fomm-doctor": [python, "-m", "fomm_doctor"], "pip": [python, "-m", "pip"], "python": [python]}
    return prefix[program] + list(args)


def shown(args: list) -> str:
    """A command line as this OS's shell would read it (the words the user consents to)."""
    return subprocess.list2cmdline(args) if os.name == "nt" else shlex.join(args)


@dataclass(frozen=True)
class Ran:
    fix: Fix
    argv: list
    returncode: int

    def to_json(self) -> dict:
        return {"command": list(self.fix.command), "argv": self.argv, "for": list(self.fix.ids),
                "returncode": self.returncode}


def run_fixes(plan: FixPlan, python: str = sys.executable, *, say: Callable[[str], None] = print,
              stdout=None, run: Callable = subprocess.run) -> list:
    """Run every command of the plan in order -> [Ran]. A command that fails does not stop the rest (a failed
    pip upgrade leaves install able to work); `check` afterwards says what is still wrong. `stdout` is where the
    commands print (None: this terminal; --json sends them to stderr so stdout stays one JSON object)."""
    done = []
    for fix in plan.runs:
        args = argv(fix.command, python)
        say(f"running: {shown(args)}")
        code = run(args, stdout=stdout, stdin=subprocess.DEVNULL).returncode
        if code:
            say(f"exit code {code}: {shown(args)}")
        done.append(Ran(fix, args, code))
    return done


def changes(before: list, after: list) -> list:
    """Rows whose status changed, as (id, before, after); a row only one side has shows None on the other."""
    old = {r.id: r.status for r in before}
    new = {r.id: r.status for r in after}
    ids = list(old) + [i for i in new if i not in old]
    return [(i, old.get(i), new.get(i)) for i in ids if old.get(i) != new.get(i)]

