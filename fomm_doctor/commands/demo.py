"""`fomm-doctor demo`: prove the whole setup works with the bundled self-trained checkpoint (fomm_doctor.demo)."""
import json
import sys
from typing import Optional

import typer

from fomm_doctor.errors import ExitCode, UserError


def demo(
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Checkpoint name or path (default: the bundled one)."),
    config: Optional[str] = typer.Option(None, "--config", help="Config name or YAML path (default: the checkpoint's own)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps (default: CUDA when usable)."),
    output: str = typer.Option("fomm-demo.mp4", "--output", "-o", help="Where to write the side-by-side video."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the table."),
) -> None:
    """Animate a held-out synthetic clip and check the result: torch, checkpoint sha256, model, L1 bar, video.

    Exit code 0 when every step passed, 1 when one failed (including a model that misses the L1 bar), 2 for a
    usage error.
    """
    if device is not None and not (device in ("cpu", "cuda", "mps") or (device.startswith("cuda:")
                                                                      and device[5:].isdigit())):
        raise UserError(f"--device must be cpu, cuda, cuda:N or mps, not {device!r}.")
    if not output.lower().endswith(".mp4"):
        raise UserError(f"--output must be an .mp4 file, not {output!r}.")

    from fomm_doctor.demo import run_demo
    from fomm_doctor.render import render_table, results_ok, results_to_json

    results = run_demo(checkpoint=checkpoint, config=config, device=device, output=output)
    if as_json:
        utf8 = (getattr(sys.stdout, "encoding", "") or "").lower().replace("-", "") == "utf8"
        typer.echo(json.dumps(results_to_json(results), ensure_ascii=not utf8, indent=2))
    else:
        from rich.console import Console
        render_table(results, "fomm-doctor demo", Console())
    raise typer.Exit(ExitCode.OK if results_ok(results) else ExitCode.PROBLEM)
