"""The command line: parses arguments and hands off to the modules that do the work.

Each command lives in `fomm_doctor/commands/<name>.py`; none imports torch at module level, so
`fomm-doctor --help` and `fomm-doctor check` work on a machine without torch. Exit codes: `errors.ExitCode`.
"""
import platform
import sys
from typing import Optional

import typer
import typer.main

from fomm_doctor import __version__
from fomm_doctor.commands import animate, batch, bench, check, checkpoints, crop, demo, install, live, ui
from fomm_doctor.errors import ExitCode, UserError, core_sentence
from fomm_doctor.net.redact import redact
from fomm_core.errors import FommError

app = typer.Typer(
    name="fomm-doctor",
    help="Get the First Order Motion Model running: diagnose (check), install torch (install), "
    "prove it works (demo), animate a photo (animate, live).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("check")(check.check)
app.command("install")(install.install)
app.command("demo")(demo.demo)
app.command("animate")(animate.animate)
app.command("batch")(batch.batch)
app.command("live")(live.live)
app.command("crop")(crop.crop)
app.command("bench")(bench.bench)
app.command("ui")(ui.ui)
app.add_typer(checkpoints.app, name="checkpoints")


def version_line() -> str:
    """'fomm-doctor 0.1.0, torch 2.13.0+cpu, Python 3.11.9 (64-bit, Linux)': what a bug report needs first."""
    try:
        from importlib.metadata import version
        torch = f"torch {version('torch')}"
    except Exception:  # not installed (PackageNotFoundError) or unreadable metadata
        torch = "torch not installed"
    bits = 64 if sys.maxsize > 2 ** 32 else 32
    return (f"fomm-doctor {__version__}, {torch}, Python {platform.python_version()} "
            f"({bits}-bit, {platform.system() or sys.platform})")


def _show_version(value: bool):
    if value:
        typer.echo(version_line())
        raise typer.Exit(ExitCode.OK)


@app.callback()
def _root(version: Optional[bool] = typer.Option(None, "--version", callback=_show_version, is_eager=True,
                                                 help="Show the versions of fomm-doctor, torch and Python.")):
    """Get the First Order Motion Model running: diagnose (check), install torch (install), prove it works
    (demo), animate a photo (animate, live)."""


def _hide_flag_types(command) -> None:
    """A flag takes no value, so its help row shows no `<bool>` type (typer prints one for every option)."""
    for param in getattr(command, "params", []):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    made = command.get_help_option  # --help is made per call, so its row is fixed as it is made

    def help_option(ctx, made=made):
        option = made(ctx)
        if option is not None:
            option.metavar = ""
        return option
    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        _hide_flag_types(sub)


def main(argv=None) -> None:
    """Entry point of the console script and `python -m fomm_doctor`."""
    command = typer.main.get_command(app)
    _hide_flag_types(command)
    try:
        command(args=argv, prog_name="fomm-doctor", standalone_mode=True)
    except UserError as err:  # every sentence is masked here too, whatever module wrote it
        print(f"error: {redact(str(err))}", file=sys.stderr)
        sys.exit(int(err.exit_code))
    except FommError as err:
        print(f"error: {redact(core_sentence(err))}", file=sys.stderr)
        sys.exit(ExitCode.USAGE)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
