"""The command line: parses arguments and hands off to the modules that do the work.

Each command lives in `fomm_doctor/commands/<name>.py`; none imports torch at module level, so
`fomm-doctor --help` and `fomm-doctor check` work on a machine without torch.
"""
import sys

import typer

from fomm_doctor.commands import animate, bench, check, checkpoints, crop, demo, install, live
from fomm_doctor.errors import ExitCode, UserError
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
app.command("live")(live.live)
app.command("crop")(crop.crop)
app.command("bench")(bench.bench)
app.add_typer(checkpoints.app, name="checkpoints")


def main(argv=None) -> None:
    """Entry point of the console script and `python -m fomm_doctor`."""
    try:
        app(args=argv, prog_name="fomm-doctor", standalone_mode=True)
    except UserError as err:  # every sentence is masked here too, whatever module wrote it
        print(f"error: {redact(str(err))}", file=sys.stderr)
        sys.exit(int(err.exit_code))
    except FommError as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        sys.exit(ExitCode.USAGE)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
