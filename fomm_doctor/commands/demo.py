"""`fomm-doctor demo`: prove the whole setup works with the bundled self-trained checkpoint (fomm_doctor.demo)."""
import json
import sys
from typing import Optional

import typer

from fomm_doctor.commands import options
from fomm_doctor.errors import ExitCode, UserError


def demo(
    checkpoint: Optional[str] = options.checkpoint("the bundled synthetic one"),
    config: Optional[str] = options.config(),
    device: str = options.device(),
    output: str = typer.Option("fomm-demo.mp4", "--output", "-o", help="Where to write the side-by-side video."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the table."),
) -> None:
    """Animate a held-out synthetic clip and check the result: torch, checkpoint sha256, model, L1 bar, video.

    Exit code 0 when every step passed, 1 when one failed (including a model that misses the L1 bar), 2 for a
    usage error.
    """
    from fomm_core.device import check_device
    check_device(device)
    if not output.lower().endswith(".mp4"):
        raise UserError(f"--output must be an .mp4 file, not {output!r}.")

    from fomm_doctor.demo import run_demo
    from fomm_doctor.render import render_table
    from fomm_doctor.report import results_ok, results_to_json

    results = run_demo(checkpoint=checkpoint, config=config, device=device, output=output)
    if as_json:
        utf8 = (getattr(sys.stdout, "encoding", "") or "").lower().replace("-", "") == "utf8"
        typer.echo(json.dumps(results_to_json(results), ensure_ascii=not utf8, indent=2))
    else:
        from rich.console import Console
        render_table(results, "fomm-doctor demo", Console())
    raise typer.Exit(ExitCode.OK if results_ok(results) else ExitCode.PROBLEM)
