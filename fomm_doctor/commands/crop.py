"""`fomm-doctor crop` (placeholder until its issue lands)."""
import typer


def crop() -> None:
    """Not available yet."""
    typer.echo("fomm-doctor crop is not available in this build yet.", err=True)
    raise typer.Exit(2)
