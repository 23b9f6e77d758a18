"""The one renderer: JSON shape, table rows, verdict line, and consoles that cannot print check marks."""
import io
import json

import pytest
from rich.console import Console

from fomm_doctor.render import render_table
from fomm_doctor.report import CheckResult, results_to_json

ROWS = [CheckResult("python.version", "ok", "Python 3.11.7", {"version": "3.11.7"}),
        CheckResult("pip.version", "warn", "pip 20.0 is old", {"version": "20.0"}, "python3 -m pip install -U pip"),
        CheckResult("torch.import", "fail", "torch is not installed.", {}, "fomm-doctor install --yes"),
        CheckResult("mirror.x", "skipped", "offline", {})]


def test_json_shape():
    out = results_to_json(ROWS)
    assert out["ok"] is False
    assert [c["id"] for c in out["checks"]] == [r.id for r in ROWS]
    assert set(out["checks"][0]) == {"id", "status", "summary", "details", "fix", "run"}
    json.dumps(out)  # serialisable as is
    assert results_to_json(ROWS[:2])["ok"] is True


def test_unknown_status_is_rejected():
    with pytest.raises(ValueError):
        CheckResult("x", "maybe", "?")


def render(rows, encoding="utf-8", lang="en"):
    buf = io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors="strict")
    console = Console(file=buf, width=200, force_terminal=False, color_system=None)
    render_table(rows, "fomm-doctor check", console, lang=lang)
    buf.flush()
    return buf.buffer.getvalue().decode(encoding)


def test_table_rows_and_verdict():
    text = render(ROWS)
    for r in ROWS:
        assert r.id in text and r.summary in text
    assert "fomm-doctor install --yes" in text
    assert "✗" in text and "1 check failed, 1 warning" in text.splitlines()[-1]
    assert "All 1 checks passed" in render(ROWS[:1])


def test_chinese_table():
    text = render(ROWS, lang="zh")
    assert "修复" in text and "1 项失败" in text


def test_ascii_console_gets_words_not_symbols():
    text = render(ROWS, encoding="ascii")  # would raise UnicodeEncodeError if a check mark slipped through
    assert "FAIL" in text and "WARN" in text and "OK" in text
    assert render(ROWS, encoding="gbk", lang="zh")  # a Chinese Windows console: no crash


def test_verbose_shows_details_and_fix_sits_under_its_row():
    buf = io.StringIO()
    render_table(ROWS, "t", Console(file=buf, width=200, color_system=None), verbose=True)
    lines = buf.getvalue().splitlines()
    pip_line = next(i for i, line in enumerate(lines) if "pip.version" in line)
    assert "fix: python3 -m pip install -U pip" in lines[pip_line + 1]
    assert "version: 20.0" in buf.getvalue()
