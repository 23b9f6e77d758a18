"""`fomm-doctor bench` (placeholder until its issue lands)."""
import typer


def bench() -> None:
    """Not available yet."""
    typer.echo("fomm-doctor bench is not available in this build yet.", err=True)
    raise typer.Exit(2)
