"""`fomm-doctor check` (placeholder until its issue lands)."""
import typer


def check() -> None:
    """Not available yet."""
    typer.echo("fomm-doctor check is not available in this build yet.", err=True)
    raise typer.Exit(2)
