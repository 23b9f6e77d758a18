"""`fomm-doctor checkpoints ...` (placeholder until its issue lands)."""
import typer

app = typer.Typer(help="Find, fetch, verify and register FOMM checkpoints.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """Not available yet."""
    typer.echo("fomm-doctor checkpoints is not available in this build yet.", err=True)
    raise typer.Exit(2)
