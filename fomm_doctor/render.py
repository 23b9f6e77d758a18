"""Check results on a terminal: a rich table, one row per result, and a one-line verdict.

The rows themselves and their JSON live in `report.py`.
"""
from dataclasses import dataclass

from fomm_doctor.report import results_ok


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


@dataclass(frozen=True)
class _Look:
    """What this console can show: check marks or words, Chinese or English."""
    symbols: dict
    zh: bool

    @property
    def words(self) -> bool:
        return self.symbols is _WORDS


def _look(console, lang: str) -> _Look:
    symbols = _SYMBOLS if _can_print(console, "".join(_SYMBOLS.values()) + "→中") else _WORDS
    return _Look(symbols, lang == "zh" and console_speaks_chinese(console))


def _found_cell(r, console, look: _Look, verbose: bool):
    """What was found, with the fix (and, for --verbose, the details) beneath."""
    from rich.text import Text
    found = Text(_fit(console, r.summary))
    if r.fix:
        arrow = "-> " if look.words else "→ "
        found.append("\n" + arrow + ("修复：" if look.zh else "fix: "), style="cyan")
        found.append(_fit(console, r.fix), style="bold cyan")
    if verbose and r.details:
        found.append("\n" + _fit(console, _details_text(r.details)), style="dim")
    return found


def _verdict_text(results, console, look: _Look):
    """The verdict line in the console's words, styled by the worst status."""
    from rich.text import Text
    line = verdict(results, "zh" if look.zh else "en")
    if look.words:
        for sym, word in (("✓", "OK:"), ("✗", "FAIL:"), ("!", "WARN:")):
            if line.startswith(sym):
                line = word + line[len(sym):]
    if not results_ok(results):
        style = "bold red"
    else:
        style = "yellow" if any(r.status == "warn" for r in results) else "green"
    return Text(_fit(console, line), style=style)


def new_table(console, title: str, columns: list):
    """A rich Table drawn with lines this console can print (ASCII where it cannot show box characters), its
    title and headers fitted to the console's encoding. columns: header strings, or (header, add_column options)."""
    from rich import box
    from rich.table import Table
    boxes = box.HEAVY_HEAD if _can_print(console, "┏━┳┃┡╇│└┴┘") else box.ASCII
    table = Table(title=_fit(console, title), show_lines=False, expand=False, box=boxes)
    for column in columns:
        header, options = (column, {}) if isinstance(column, str) else column
        table.add_column(_fit(console, header), **options)
    return table


def render_table(results, title, console, lang: str = "en", verbose: bool = False) -> None:
    """Print one row per result (status, id, what was found with its fix beneath) and the verdict line."""
    from rich.text import Text

    look = _look(console, lang)
    headers = ("", "检查", "结果") if look.zh else ("", "check", "found")
    table = new_table(console, title, [(headers[0], {"no_wrap": True}),
                                       (headers[1], {"no_wrap": True, "style": "bold"}),
                                       (headers[2], {"overflow": "fold"})])
    for r in results:
        table.add_row(Text(look.symbols[r.status], style=_STYLES[r.status]), _fit(console, r.id),
                      _found_cell(r, console, look, verbose))
    console.print(table)
    console.print(_verdict_text(results, console, look))
