"""`fomm-doctor live` (placeholder until its issue lands)."""
import typer


def live() -> None:
    """Not available yet."""
    typer.echo("fomm-doctor live is not available in this build yet.", err=True)
    raise typer.Exit(2)
