"""The rows every diagnosis reports, and their JSON.

`fomm-doctor check` and `fomm-doctor demo` both report rows of `CheckResult`, so a user (or a CI job reading
`--json`) sees the same shape everywhere; showing them on a terminal is `render.py`'s business.
"""
from dataclasses import dataclass, field
from typing import Optional

STATUSES = ("ok", "warn", "fail", "skipped")


@dataclass
class CheckResult:
    id: str                      # stable, dotted: "python.version", "mirror.tsinghua"
    status: str                  # one of STATUSES
    summary: str                 # what was found, one sentence
    details: dict = field(default_factory=dict)
    fix: Optional[str] = None    # the exact command or step that fixes it (None when nothing to do)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")


def results_ok(results) -> bool:
    return not any(r.status == "fail" for r in results)


def results_to_json(results) -> dict:
    """{"ok": bool, "checks": [{"id", "status", "summary", "details", "fix"}, ...]}"""
    return {
        "ok": results_ok(results),
        "checks": [
            {"id": r.id, "status": r.status, "summary": r.summary, "details": r.details, "fix": r.fix}
            for r in results
        ],
    }
