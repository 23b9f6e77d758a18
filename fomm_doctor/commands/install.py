"""`fomm-doctor install` (placeholder until its issue lands)."""
import typer


def install() -> None:
    """Not available yet."""
    typer.echo("fomm-doctor install is not available in this build yet.", err=True)
    raise typer.Exit(2)
