"""`fomm-doctor check`: diagnose this machine for FOMM, one row per check (the work lives in fomm_doctor.checks);
with --fix, apply the fixes the rows carry after showing them and asking (fomm_doctor.checks.fix), then check
again."""
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
    fix: bool = typer.Option(False, "--fix", help="Apply the fixes shown (after asking), then check again."),
    yes: bool = typer.Option(False, "--yes", "-y", help="With --fix: do not ask before applying them."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --fix: print the commands only; change nothing."),
    mirror: Optional[str] = typer.Option(None, "--mirror", help="With --fix: passed on to `fomm-doctor install` "
                                         "(tsinghua, auto, a mirror name or an index URL)."),
    skip: Optional[str] = typer.Option(None, "--skip", help="With --fix: rows whose fix is not run (comma list of "
                                       "check ids, e.g. checkpoints.published)."),
) -> None:
    """Diagnose this machine: Python, pip, GPU driver, torch, OpenCV, ffmpeg, disk, RAM, checkpoints, mirrors.

    Exit code 0 when nothing failed, 1 when a check failed, 2 for a usage error. With --fix, the code is that
    of the check run after the fixes.
    """
    from fomm_doctor.preflight import LANGS, default_lang

    lang = lang or default_lang()
    if lang not in LANGS:
        raise UserError(f"--lang must be one of {', '.join(LANGS)}, not {lang!r}.")
    if not 0 < timeout <= 120:
        raise UserError(f"--timeout must be between 0 and 120 seconds, not {timeout:g}.")
    _check_fix_flags(fix, yes=yes, dry_run=dry_run, mirror=mirror, skip=skip)

    from fomm_doctor.checks import run_checks

    console = None if as_json else _console()
    if console is not None and lang == "zh":
        from fomm_doctor.render import console_speaks_chinese
        if not console_speaks_chinese(console):
            lang = "en"  # a console that cannot show Chinese gets English, not question marks

    results = run_checks(offline=offline, timeout=timeout, lang=lang)
    if not fix:
        _show(results, console, _title(offline, lang), lang, verbose)
        _exit(results)
    if not as_json:
        _show(results, console, _title(offline, lang), lang, verbose)
    _fix(results, console, lang=lang, offline=offline, timeout=timeout, verbose=verbose, yes=yes, dry_run=dry_run,
         install_args=("--mirror", mirror) if mirror else (),
         skip=tuple(s.strip() for s in (skip or "").split(",") if s.strip()))


def _check_fix_flags(fix: bool, **flags) -> None:
    """--yes, --dry-run, --mirror and --skip belong to --fix; --yes and --dry-run contradict each other."""
    used = ", ".join("--" + name.replace("_", "-") for name, value in flags.items() if value)
    if used and not fix:
        raise UserError(f"{used} only go{'es' if ',' not in used else ''} with --fix.")
    if flags["yes"] and flags["dry_run"]:
        raise UserError("--yes applies the fixes and --dry-run only prints them: choose one.")


def _console():
    from rich.console import Console
    return Console()


def _title(offline: bool, lang: str, after: bool = False) -> str:
    title = "fomm-doctor check"
    if after:
        title += "（修复之后）" if lang == "zh" else " (after the fixes)"
    return title + ("（离线）" if offline and lang == "zh" else " (offline)" if offline else "")


def _show(results, console, title: str, lang: str, verbose: bool) -> None:
    """The table on a terminal, or one JSON object on stdout."""
    from fomm_doctor.report import results_to_json
    if console is None:
        typer.echo(_json(results_to_json(results)))
        return
    from fomm_doctor.render import render_table
    render_table(results, title, console, lang=lang, verbose=verbose)


def _json(data: dict) -> str:
    utf8 = (getattr(sys.stdout, "encoding", "") or "").lower().replace("-", "") == "utf8"
    return json.dumps(data, ensure_ascii=not utf8, indent=2)


def _exit(results) -> None:
    from fomm_doctor.report import results_ok
    raise typer.Exit(ExitCode.OK if results_ok(results) else ExitCode.PROBLEM)


# ---- --fix ----------------------------------------------------------------------------------------------------

def _fix(before, console, *, lang, offline, timeout, verbose, yes, dry_run, install_args, skip) -> None:
    """Show the plan; --dry-run stops there; else ask (or --yes), run, check again and say what changed."""
    from fomm_doctor.checks import fix as fixes
    from fomm_doctor.checks import run_checks
    from fomm_doctor.report import results_to_json

    plan = fixes.plan_fixes(before, install_args, skip)
    if console is not None:
        _show_plan(console, plan)
    if dry_run or not plan.runs:
        if console is None:
            typer.echo(_json({"before": results_to_json(before), "fixes": plan.to_json(), "dry_run": dry_run}))
        _exit(before)
    if not yes:
        _confirm(console, len(plan.runs), before)
    say = (lambda text: _say(console, text, "dim")) if console is not None else (
        lambda text: typer.echo(text, err=True))
    ran = fixes.run_fixes(plan, say=say, stdout=sys.stderr if console is None else None)
    after = run_checks(offline=offline, timeout=timeout, lang=lang)
    if console is None:
        typer.echo(_json(dict(results_to_json(after), before=results_to_json(before),
                              fixes=[r.to_json() for r in ran])))
    else:
        _show(after, console, _title(offline, lang, after=True), lang, verbose)
        _show_changes(console, fixes.changes(before, after))
    _exit(after)


def _say(console, text: str, style: str = "") -> None:
    """One line, never read as rich markup (a path may hold brackets) nor wrapped (a command stays whole, to copy)."""
    from rich.text import Text
    console.print(Text(text, style=style), soft_wrap=True)


def _show_plan(console, plan) -> None:
    from fomm_doctor.checks.fix import argv, shown
    if plan.runs:
        _say(console, "--fix will run, in this order:", "bold")
        for f in plan.runs:
            _say(console, f"  {shown(argv(f.command))}    ({', '.join(f.ids)})", "cyan")
    else:
        _say(console, "--fix: no fix here can be applied by a command.", "bold")
    if plan.advice:
        _say(console, "not run (do these yourself):", "bold")
        for check_id, words in plan.advice:
            _say(console, f"  {check_id}: {words}")


def _confirm(console, count: int, before) -> None:
    """Ask before changing anything; with no terminal to ask on, refuse with the flag that skips the question.
    Answering no exits with the code of the check already shown."""
    if not sys.stdin.isatty():
        raise UserError("Nothing was changed: add --yes to apply the fixes without a prompt (or --dry-run to see "
                        "the commands only).")
    if not typer.confirm(f"Run {'this command' if count == 1 else f'these {count} commands'}?", default=False):
        _say(console, "Nothing was changed.")
        _exit(before)


def _show_changes(console, changed: list) -> None:
    if not changed:
        _say(console, "No row changed.", "yellow")
        return
    _say(console, "changed:", "bold")
    for check_id, old, new in changed:
        _say(console, f"  {check_id}: {old or 'absent'} -> {new or 'absent'}")
