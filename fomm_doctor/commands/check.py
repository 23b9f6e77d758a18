"""`fomm-doctor check`: diagnose this machine for FOMM, one row per check (the work lives in fomm_doctor.checks)."""
import json
import sys
from typing import Optional

import typer

from fomm_doctor.errors import ExitCode, UserError


def check(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the table."),
    offline: bool = typer.Option(False, "--offline", help="Skip the network (mirror) checks."),
    timeout: float = typer.Option(3.0, "--timeout", help="Seconds to wait for each mirror (probed all at once)."),
    lang: Optional[str] = typer.Option(None, "--lang", help="en or zh (default: from the locale)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show each check's details under its row."),
) -> None:
    """Diagnose this machine: Python, pip, GPU driver, torch, OpenCV, ffmpeg, disk, RAM, checkpoints, mirrors.

    Exit code 0 when nothing failed, 1 when a check failed, 2 for a usage error.
    """
    from fomm_doctor.preflight import LANGS, default_lang

    lang = lang or default_lang()
    if lang not in LANGS:
        raise UserError(f"--lang must be one of {', '.join(LANGS)}, not {lang!r}.")
    if not 0 < timeout <= 120:
        raise UserError(f"--timeout must be between 0 and 120 seconds, not {timeout:g}.")

    from fomm_doctor.checks import run_checks
    from fomm_doctor.render import render_table
    from fomm_doctor.report import results_ok, results_to_json

    console = None
    if not as_json:
        from rich.console import Console
        from fomm_doctor.render import console_speaks_chinese
        console = Console()
        if lang == "zh" and not console_speaks_chinese(console):
            lang = "en"  # a console that cannot show Chinese gets English, not question marks

    results = run_checks(offline=offline, timeout=timeout, lang=lang)
    if as_json:
        utf8 = (getattr(sys.stdout, "encoding", "") or "").lower().replace("-", "") == "utf8"
        typer.echo(json.dumps(results_to_json(results), ensure_ascii=not utf8, indent=2))
    else:
        title = "fomm-doctor check" + ("（离线）" if offline and lang == "zh" else " (offline)" if offline else "")
        render_table(results, title, console, lang=lang, verbose=verbose)
    raise typer.Exit(ExitCode.OK if results_ok(results) else ExitCode.PROBLEM)
