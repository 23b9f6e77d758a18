"""One way to show a list of check results: a rich table with a one-line verdict, or a JSON object.

`fomm-doctor check` and `fomm-doctor demo` both report rows of `CheckResult`, so a user (or a CI job reading
`--json`) sees the same shape everywhere.
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


# Consoles that cannot print check marks (a legacy GBK Windows console, say) get words instead.
_SYMBOLS = {"ok": "✓", "warn": "!", "fail": "✗", "skipped": "–"}
_WORDS = {"ok": "OK", "warn": "WARN", "fail": "FAIL", "skipped": "SKIP"}
_STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}


def _can_print(console, text: str) -> bool:
    try:
        text.encode(console.encoding or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def _fit(console, text: str) -> str:
    """Characters this console cannot encode become '?', so printing never raises UnicodeEncodeError."""
    encoding = console.encoding or "ascii"
    try:
        return text.encode(encoding, "replace").decode(encoding)
    except LookupError:
        return text


def console_speaks_chinese(console) -> bool:
    return _can_print(console, "检查结果修复：中文")


def verdict(results, lang: str = "en") -> str:
    """One line: everything fine, or how many problems and warnings."""
    fails = sum(r.status == "fail" for r in results)
    warns = sum(r.status == "warn" for r in results)
    if lang == "zh":
        if fails:
            return f"✗ {fails} 项失败，{warns} 项警告：按“修复”一栏的命令处理后再运行一次。"
        if warns:
            return f"! 没有失败项，{warns} 项警告。"
        return f"✓ 全部 {len(results)} 项检查通过。"
    if fails:
        return (f"✗ {fails} check{'s' if fails != 1 else ''} failed, {warns} warning{'s' if warns != 1 else ''}: "
                "run the fixes shown, then check again.")
    if warns:
        return f"! Nothing failed; {warns} warning{'s' if warns != 1 else ''}."
    return f"✓ All {len(results)} checks passed."


def _details_text(details: dict) -> str:
    """Compact 'key: value' lines for --verbose (nested values as one-line JSON)."""
    import json
    lines = []
    for key, value in details.items():
        shown = value if isinstance(value, (str, int, float, bool)) or value is None else json.dumps(
            value, ensure_ascii=False, default=str)
        lines.append(f"{key}: {shown}")
    return "\n".join(lines)


def render_table(results, title, console, lang: str = "en", verbose: bool = False) -> None:
    """Print one row per result (status, id, what was found with its fix beneath) and the verdict line."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    symbols = _SYMBOLS if _can_print(console, "".join(_SYMBOLS.values()) + "→中") else _WORDS
    zh = lang == "zh" and console_speaks_chinese(console)
    headers = ("", "检查", "结果") if zh else ("", "check", "found")
    fix_label = "修复：" if zh else "fix: "
    arrow = "→ " if symbols is _SYMBOLS else "-> "
    boxes = box.HEAVY_HEAD if _can_print(console, "┏━┳┃┡╇│└┴┘") else box.ASCII
    table = Table(title=_fit(console, title), show_lines=False, expand=False, box=boxes)
    table.add_column(headers[0], no_wrap=True)
    table.add_column(headers[1], no_wrap=True, style="bold")
    table.add_column(headers[2], overflow="fold")
    for r in results:
        found = Text(_fit(console, r.summary))
        if r.fix:
            found.append("\n" + arrow + fix_label, style="cyan")
            found.append(_fit(console, r.fix), style="bold cyan")
        if verbose and r.details:
            found.append("\n" + _fit(console, _details_text(r.details)), style="dim")
        table.add_row(Text(symbols[r.status], style=_STYLES[r.status]), _fit(console, r.id), found)
    console.print(table)
    line = verdict(results, "zh" if zh else "en")
    if symbols is _WORDS:
        for sym, word in (("✓", "OK:"), ("✗", "FAIL:"), ("!", "WARN:")):
            if line.startswith(sym):
                line = word + line[len(sym):]
    line = _fit(console, line)
    style = "bold red" if not results_ok(results) else ("yellow" if any(r.status == "warn" for r in results) else "green")
    console.print(Text(line, style=style))
