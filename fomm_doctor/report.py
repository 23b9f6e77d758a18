"""The rows every diagnosis reports, and their JSON.

`fomm-doctor check` and `fomm-doctor demo` both report rows of `CheckResult`, so a user (or a CI job reading
`--json`) sees the same shape everywhere; showing them on a terminal is `render.py`'s business.
"""
from dataclasses import dataclass, field
from typing import Optional

STATUSES = ("ok", "warn", "fail", "skipped")
# What a runnable fix may start with. `check --fix` (checks/fix.py) runs each through the interpreter running the
# check: "fomm-doctor" is our own command, "pip" is `python -m pip`, "python" the interpreter itself. Judges are
# pure and judge other platforms in tests, so they name the program, never a path.
PROGRAMS = ("fomm-doctor", "pip", "python")


@dataclass
class CheckResult:
    id: str                      # stable, dotted: "python.version", "mirror.tsinghua"
    status: str                  # one of STATUSES
    summary: str                 # what was found, one sentence
    details: dict = field(default_factory=dict)
    fix: Optional[str] = None    # the exact command or step that fixes it, in words (None when nothing to do)
    # the same fix as argv tuples `check --fix` runs in order, each starting with one of PROGRAMS; () when the fix
    # is advice only (a driver from a web page, a file to delete): shown, never run
    run: tuple = ()

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        for argv in self.run:
            if not isinstance(argv, tuple) or not argv or argv[0] not in PROGRAMS:
                raise ValueError(f"a runnable fix is an argv tuple starting with one of {PROGRAMS}, not {argv!r}")


def results_ok(results) -> bool:
    return not any(r.status == "fail" for r in results)


def results_to_json(results) -> dict:
    """{"ok": bool, "checks": [{"id", "status", "summary", "details", "fix", "run"}, ...]}: `run` is the fix as
    the commands `check --fix` would run (argument lists), empty when the fix is advice only."""
    return {
        "ok": results_ok(results),
        "checks": [
            {"id": r.id, "status": r.status, "summary": r.summary, "details": r.details, "fix": r.fix,
             "run": [list(a) for a in r.run]}
            for r in results
        ],
    }
